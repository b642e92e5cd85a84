package systemtest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---------------------------------------------------------------- sources

// sourceServer serves an image slowly: GET /img?ms=1500&n=7 sends the
// headers at once, then trickles the body over ms milliseconds, so a job
// stays in its fetch stage that long. n only makes URLs distinct.
type sourceServer struct {
	*httptest.Server
	image []byte
}

func newSourceServer(t *testing.T, image []byte) *sourceServer {
	s := &sourceServer{image: image}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Length", strconv.Itoa(len(s.image)))
		w.WriteHeader(http.StatusOK)
		const chunks = 10
		step := (len(s.image) + chunks - 1) / chunks
		pause := time.Duration(ms) * time.Millisecond / chunks
		fl, _ := w.(http.Flusher)
		for off := 0; off < len(s.image); off += step {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(pause):
			}
			end := min(off+step, len(s.image))
			if _, err := w.Write(s.image[off:end]); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// URL of a source that takes d to download.
func (s *sourceServer) slow(d time.Duration, n int) string {
	return fmt.Sprintf("%s/img?ms=%d&n=%d", s.Server.URL, d.Milliseconds(), n)
}

// ---------------------------------------------------------------- redis

// describeJob tells what Redis holds about a job: its record, its leases,
// its scheduled work, where gocraft/work has it, and its blobs. For the
// report when a job is stuck.
func describeJob(r *redisServer, ns, id string) string {
	c, err := r.Conn()
	if err != nil {
		return "redis: " + err.Error()
	}
	defer c.Close()
	var b strings.Builder
	rec, err := c.Do("GET", ns+":record:"+id)
	if rb, ok := rec.([]byte); ok {
		fmt.Fprintf(&b, "record: %s\n", rb)
	} else {
		fmt.Fprintf(&b, "record: %v %v\n", rec, err)
	}
	for _, kind := range []string{"thumbnail", "email", "callback"} {
		if score, _ := redis.Int64(c.Do("ZSCORE", ns+":leases", kind+":"+id)); score != 0 {
			fmt.Fprintf(&b, "lease %s: until %s\n", kind, time.UnixMilli(score).Format(time.RFC3339Nano))
		}
	}
	due, _ := redis.Strings(c.Do("ZRANGE", ns+":due", 0, -1))
	for _, d := range due {
		if strings.Contains(d, id) {
			fmt.Fprintf(&b, "due: %q\n", d)
		}
	}
	fields, _ := redis.Strings(c.Do("HKEYS", ns+":blob:"+id))
	fmt.Fprintf(&b, "blobs: %v\n", fields)
	keys, _ := redis.Strings(c.Do("KEYS", ns+":jobs:*"))
	for _, key := range append(keys, ns+":dead", ns+":retry", ns+":scheduled") {
		typ, _ := redis.String(c.Do("TYPE", key))
		var members [][]byte
		switch typ {
		case "list":
			members, _ = redis.ByteSlices(c.Do("LRANGE", key, 0, -1))
		case "zset":
			members, _ = redis.ByteSlices(c.Do("ZRANGE", key, 0, -1))
		}
		for _, m := range members {
			if bytes.Contains(m, []byte(id)) {
				fmt.Fprintf(&b, "gocraft %s: %s\n", key, m)
			}
		}
	}
	return b.String()
}

// gocraftSummary lists the sizes of gocraft/work's lists and sets, and of
// our leases and due work.
func gocraftSummary(r *redisServer, ns string) string {
	c, err := r.Conn()
	if err != nil {
		return "redis: " + err.Error()
	}
	defer c.Close()
	var lines []string
	for _, pattern := range []string{ns + ":jobs:*", ns + ":retry", ns + ":scheduled", ns + ":dead", ns + ":leases", ns + ":due"} {
		keys, _ := redis.Strings(c.Do("KEYS", pattern))
		for _, key := range keys {
			typ, _ := redis.String(c.Do("TYPE", key))
			var n any
			switch typ {
			case "list":
				n, _ = c.Do("LLEN", key)
			case "zset":
				n, _ = c.Do("ZCARD", key)
			default:
				continue
			}
			lines = append(lines, fmt.Sprintf("%s=%v", strings.TrimPrefix(key, ns+":"), n))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, " ")
}

// blobs lists the blob hashes in Redis ({ns}:blob:{job}) with their fields.
func blobs(t *testing.T, r *redisServer, ns string) map[string][]string {
	t.Helper()
	c, err := r.Conn()
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	defer c.Close()
	keys, err := redis.Strings(c.Do("KEYS", ns+":blob:*"))
	if err != nil {
		t.Fatalf("redis KEYS: %v", err)
	}
	out := map[string][]string{}
	for _, k := range keys {
		fields, _ := redis.Strings(c.Do("HKEYS", k))
		out[strings.TrimPrefix(k, ns+":blob:")] = fields
	}
	return out
}
