package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// redisInterval is how often Redis's used_memory is sampled during a run.
const redisInterval = 50 * time.Millisecond

// redisMemory is what Redis held at one moment: INFO memory, DBSIZE, and
// the service's keys (those of -namespace) grouped by shape.
type redisMemory struct {
	UsedMemory     int64 `json:"used_memory"`
	UsedMemoryPeak int64 `json:"used_memory_peak"`    // since Redis started (or CONFIG RESETSTAT)
	Dataset        int64 `json:"used_memory_dataset"` // used_memory less Redis's overhead (clients, buffers, the key tables' own)
	Clients        int64 `json:"mem_clients_normal"`  // the clients' buffers: grows with the service's connections, not its jobs
	// LatencyHistograms is how many commands have a latency histogram (INFO
	// latencystats): with latency-tracking on (Redis 7's default) each
	// command's first use allocates one (~25 KB), counted in used_memory
	// and used_memory_dataset although no key holds it.
	LatencyHistograms int        `json:"latency_histograms"`
	Keys              int64      `json:"keys"` // DBSIZE: every key of the database
	Census            []keyGroup `json:"census"`
}

// keyGroup is the keys of one shape: the key with its job ids, hex ids and
// numbers replaced ("thumbnailed:record:{id}").
type keyGroup struct {
	Shape   string `json:"shape"`
	Type    string `json:"type"`
	Keys    int64  `json:"keys"`
	Members int64  `json:"members"` // hash fields, list/set/sorted-set members; 1 per string
	Bytes   int64  `json:"bytes"`   // MEMORY USAGE ... SAMPLES 0, summed (0 where refused)
}

// redisReport compares Redis before and after a run, with the peak seen
// during it.
type redisReport struct {
	Before          *redisMemory `json:"before"`
	After           *redisMemory `json:"after"`
	PeakSampledUsed int64        `json:"peak_sampled_used_memory"`
	Samples         int          `json:"samples"`
	Jobs            int          `json:"jobs"`                                  // the accepted jobs the delta is divided by
	PerJob          float64      `json:"used_memory_per_job,omitempty"`         // (after - before) / jobs
	DatasetPerJob   float64      `json:"used_memory_dataset_per_job,omitempty"` // the same for used_memory_dataset
}

// dialRedis connects to the service's Redis with deadlines on every call.
func dialRedis(url string) (redis.Conn, error) {
	return redis.DialURL(url, redis.DialConnectTimeout(2*time.Second),
		redis.DialReadTimeout(10*time.Second), redis.DialWriteTimeout(2*time.Second))
}

// infoMemory reads INFO memory.
func infoMemory(conn redis.Conn) (redisMemory, error) {
	s, err := redis.String(conn.Do("INFO", "memory"))
	if err != nil {
		return redisMemory{}, err
	}
	return parseInfoMemory(s)
}

// parseInfoMemory reads used_memory and used_memory_peak (required),
// used_memory_dataset and mem_clients_normal (when there).
func parseInfoMemory(s string) (redisMemory, error) {
	var m redisMemory
	found := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "used_memory":
			dst = &m.UsedMemory
			found++
		case "used_memory_peak":
			dst = &m.UsedMemoryPeak
			found++
		case "used_memory_dataset":
			dst = &m.Dataset
		case "mem_clients_normal":
			dst = &m.Clients
		default:
			continue
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return m, fmt.Errorf("INFO memory: %s:%s", name, value)
		}
		*dst = n
	}
	if found < 2 {
		return m, fmt.Errorf("INFO memory has no used_memory/used_memory_peak")
	}
	return m, nil
}

// snapshot reads INFO memory, DBSIZE and the census of namespace's keys.
func snapshot(conn redis.Conn, namespace string) (*redisMemory, error) {
	m, err := infoMemory(conn)
	if err != nil {
		return nil, err
	}
	keys, err := redis.Int64(conn.Do("DBSIZE"))
	if err != nil {
		return nil, err
	}
	if stats, err := redis.String(conn.Do("INFO", "latencystats")); err == nil {
		m.LatencyHistograms = strings.Count(stats, "latency_percentiles_usec_")
	}
	census, err := takeCensus(conn, namespace+":*")
	if err != nil {
		return nil, err
	}
	m.Keys, m.Census = keys, census
	return &m, nil
}

// takeCensus groups every key matching pattern by shape and type, with
// their member counts and memory.
func takeCensus(conn redis.Conn, pattern string) ([]keyGroup, error) {
	type gk struct{ shape, typ string }
	groups := map[gk]*keyGroup{}
	cursor := "0"
	for {
		reply, err := redis.Values(conn.Do("SCAN", cursor, "MATCH", pattern, "COUNT", 1000))
		if err != nil {
			return nil, fmt.Errorf("SCAN: %w", err)
		}
		if len(reply) != 2 {
			return nil, fmt.Errorf("SCAN: unexpected reply")
		}
		cursor, _ = redis.String(reply[0], nil)
		keys, _ := redis.Strings(reply[1], nil)
		for _, k := range keys {
			typ, err := redis.String(conn.Do("TYPE", k))
			if err != nil {
				return nil, fmt.Errorf("TYPE %s: %w", k, err)
			}
			if typ == "none" {
				continue // gone since SCAN saw it
			}
			members, err := memberCount(conn, typ, k)
			if err != nil {
				return nil, err
			}
			// MEMORY USAGE is not everywhere (miniredis, some managed services).
			size, _ := redis.Int64(conn.Do("MEMORY", "USAGE", k, "SAMPLES", 0))
			g := groups[gk{shapeOf(k), typ}]
			if g == nil {
				g = &keyGroup{Shape: shapeOf(k), Type: typ}
				groups[gk{g.Shape, typ}] = g
			}
			g.Keys++
			g.Members += members
			g.Bytes += size
		}
		if cursor == "0" {
			break
		}
	}
	out := make([]keyGroup, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Shape != out[j].Shape {
			return out[i].Shape < out[j].Shape
		}
		return out[i].Type < out[j].Type
	})
	return out, nil
}

func memberCount(conn redis.Conn, typ, key string) (int64, error) {
	var cmd string
	switch typ {
	case "hash":
		cmd = "HLEN"
	case "list":
		cmd = "LLEN"
	case "set":
		cmd = "SCARD"
	case "zset":
		cmd = "ZCARD"
	case "stream":
		cmd = "XLEN"
	default:
		return 1, nil
	}
	n, err := redis.Int64(conn.Do(cmd, key))
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", cmd, key, err)
	}
	return n, nil
}

var (
	jobIDPart  = regexp.MustCompile(`^[a-z2-7]{26}$`)  // a job id (and thumbload's idempotency keys)
	hexPart    = regexp.MustCompile(`^[0-9a-f]{16,}$`) // digests, gocraft/work ids
	numberPart = regexp.MustCompile(`^[0-9][0-9.]*$`)  // counts, hours, IPv4 addresses
)

// shapeOf is key with the parts that differ from job to job replaced:
// {id} for a job id, {hex} for a digest or id in hex, {n} for a number or
// an address. The first part (the namespace) is kept.
func shapeOf(key string) string {
	parts := strings.Split(key, ":")
	for i := 1; i < len(parts); i++ {
		switch p := parts[i]; {
		case jobIDPart.MatchString(p):
			parts[i] = "{id}"
		case hexPart.MatchString(p):
			parts[i] = "{hex}"
		case numberPart.MatchString(p):
			parts[i] = "{n}"
		}
	}
	return strings.Join(parts, ":")
}

// redisSampler samples used_memory every redisInterval until stopped.
type redisSampler struct {
	conn    redis.Conn
	stop    chan struct{}
	done    sync.WaitGroup
	peak    int64
	samples int
}

func startRedisSampler(conn redis.Conn) *redisSampler {
	s := &redisSampler{conn: conn, stop: make(chan struct{})}
	sampleEvery(redisInterval, s.stop, &s.done, s.sample)
	return s
}

func (s *redisSampler) sample() {
	m, err := infoMemory(s.conn)
	if err != nil {
		return
	}
	s.peak = max(s.peak, m.UsedMemory)
	s.samples++
}

// finish stops sampling; the connection is free again afterwards.
func (s *redisSampler) finish() (peak int64, samples int) {
	close(s.stop)
	s.done.Wait()
	s.sample()
	return s.peak, s.samples
}

// perJob fills the per-job figure from before, after and jobs.
func (r *redisReport) perJob() {
	if r.Before != nil && r.After != nil && r.Jobs > 0 {
		r.PerJob = float64(r.After.UsedMemory-r.Before.UsedMemory) / float64(r.Jobs)
		r.DatasetPerJob = float64(r.After.Dataset-r.Before.Dataset) / float64(r.Jobs)
	}
}

func (r *redisReport) print(w io.Writer) {
	if r.Before == nil || r.After == nil {
		return
	}
	fmt.Fprintf(w, "redis used_memory: before %s, after %s, peak sampled every 50 ms %s, used_memory_peak %s (since Redis started)\n",
		bytesMiB(r.Before.UsedMemory), bytesMiB(r.After.UsedMemory), bytesMiB(r.PeakSampledUsed), bytesMiB(r.After.UsedMemoryPeak))
	fmt.Fprintf(w, "redis used_memory_dataset: before %s, after %s; mem_clients_normal: before %s, after %s\n",
		bytesMiB(r.Before.Dataset), bytesMiB(r.After.Dataset), bytesMiB(r.Before.Clients), bytesMiB(r.After.Clients))
	fmt.Fprintf(w, "redis keys (DBSIZE): before %d, after %d\n", r.Before.Keys, r.After.Keys)
	if n := r.After.LatencyHistograms - r.Before.LatencyHistograms; n > 0 {
		fmt.Fprintf(w, "NOTE: Redis made %d command latency histograms during the run (%d -> %d; ~25 KB each, in used_memory and the dataset, not in any key):\n"+
			"  for per-job figures run Redis with --latency-tracking no\n", n, r.Before.LatencyHistograms, r.After.LatencyHistograms)
	}
	if r.Jobs > 0 {
		fmt.Fprintf(w, "redis per accepted job (%d jobs): used_memory %.0f bytes, used_memory_dataset %.0f bytes\n", r.Jobs, r.PerJob, r.DatasetPerJob)
	}
	fmt.Fprintf(w, "  %-44s %-6s %15s %17s %19s", "key shape", "type", "keys", "members", "bytes (MEMORY USAGE)")
	if r.Jobs > 0 {
		fmt.Fprintf(w, " %12s", "bytes/job")
	}
	fmt.Fprintln(w)
	for _, d := range diffCensus(r.Before.Census, r.After.Census) {
		fmt.Fprintf(w, "  %-44s %-6s %15s %17s %19s", d.shape, d.typ,
			fmt.Sprintf("%d -> %d", d.before.Keys, d.after.Keys),
			fmt.Sprintf("%d -> %d", d.before.Members, d.after.Members),
			fmt.Sprintf("%d -> %d", d.before.Bytes, d.after.Bytes))
		if r.Jobs > 0 {
			fmt.Fprintf(w, " %12.1f", float64(d.after.Bytes-d.before.Bytes)/float64(r.Jobs))
		}
		fmt.Fprintln(w)
	}
}

type censusDiff struct {
	shape, typ    string
	before, after keyGroup
}

// diffCensus pairs the groups of two censuses by shape and type.
func diffCensus(before, after []keyGroup) []censusDiff {
	type gk struct{ shape, typ string }
	byKey := map[gk]*censusDiff{}
	var order []gk
	for i, list := range [][]keyGroup{before, after} {
		for _, g := range list {
			k := gk{g.Shape, g.Type}
			d := byKey[k]
			if d == nil {
				d = &censusDiff{shape: g.Shape, typ: g.Type}
				byKey[k] = d
				order = append(order, k)
			}
			if i == 0 {
				d.before = g
			} else {
				d.after = g
			}
		}
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].shape != order[j].shape {
			return order[i].shape < order[j].shape
		}
		return order[i].typ < order[j].typ
	})
	out := make([]censusDiff, len(order))
	for i, k := range order {
		out[i] = *byKey[k]
	}
	return out
}

func bytesMiB(b int64) string {
	return fmt.Sprintf("%d B (%.2f MiB)", b, float64(b)/(1<<20))
}

// redisWatch measures Redis around a run (-redis): a snapshot before, the
// used_memory sampled during, a snapshot after -settle.
type redisWatch struct {
	conn      redis.Conn
	namespace string
	before    *redisMemory
	sampler   *redisSampler
}

// startRedisWatch takes the "before" snapshot and starts sampling; it
// returns nil without -redis.
func startRedisWatch(o options) (*redisWatch, error) {
	if o.redisURL == "" {
		return nil, nil
	}
	conn, err := dialRedis(o.redisURL)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	before, err := snapshot(conn, o.namespace)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("-redis: %w", err)
	}
	return &redisWatch{conn: conn, namespace: o.namespace, before: before, sampler: startRedisSampler(conn)}, nil
}

// finish stops sampling, waits settle (for the service's last writes:
// leases released, delivery outcomes recorded) and takes the "after"
// snapshot into s.Redis, per accepted job.
func (w *redisWatch) finish(ctx context.Context, s *summary, settle time.Duration) error {
	if w == nil {
		return nil
	}
	defer w.conn.Close()
	peak, samples := w.sampler.finish()
	sleep(ctx, settle)
	after, err := snapshot(w.conn, w.namespace)
	if err != nil {
		return fmt.Errorf("-redis: after the run: %w", err)
	}
	s.Redis = &redisReport{Before: w.before, After: after, PeakSampledUsed: max(peak, after.UsedMemory),
		Samples: samples, Jobs: s.Accepted}
	s.Redis.perJob()
	return nil
}
