package systemtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// The measurements of issue 15 ("Measure"), figures in BENCHMARKS.md
// "Client console: events". They log figures and assert only generous
// bounds. By default they run small (a few jobs, 50 streams, a few seconds
// idle) so that the code keeps working; with THUMBNAILED_TEST_MEASURE=1 they
// run at the size (50 jobs each way; 1,000 streams, 30 s idle):
//
//	THUMBNAILED_TEST_MEASURE=1 go test -count=1 -v -run 'TestMeasure' -timeout 20m ./systemtest/
//
// They are not parallel, so the package's other tests do not run beside them.

// measuring reports whether the heavy measurements were asked for.
func measuring() bool { return os.Getenv("THUMBNAILED_TEST_MEASURE") == "1" }

// Events latency at light load: one job at a time (a real 2.5 MP photo,
// uploaded), submit -> the first processing and -> the succeeded status as
// the client learns them, through an event stream opened right after the
// 202, and by polling GET every 100 ms; alternating, api and worker in
// separate processes.
func TestMeasureEventLatency(t *testing.T) {
	is := is.New(t)
	jobsEach := 5
	if measuring() {
		jobsEach = 50
	}
	env, _, client := startKeyed(t, "api", "THUMBNAILED_LOG_LEVEL", "warn")
	startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	photo := readTestdata(t, "Storm.jpg")
	logLoad(t, "before")
	defer logLoad(t, "after")
	fields := map[string]string{"width": "256"}

	var viaEvents, viaPolling latencies
	for i := range 2 * jobsEach {
		var l latency
		if i%2 == 0 {
			l = byEvents(t, client, photo, fields)
			viaEvents.add(l)
		} else {
			l = byPolling(t, client, photo, fields, 100*time.Millisecond)
			viaPolling.add(l)
		}
	}
	t.Logf("events latency, %d jobs each way, one at a time (Storm.jpg 1920x1280 695 KB uploaded, width 256), api + 1 worker:", jobsEach)
	t.Logf("  202 (upload answered):   events p50 %s p95 %s | polling p50 %s p95 %s", p(viaEvents.accepted, 50), p(viaEvents.accepted, 95), p(viaPolling.accepted, 50), p(viaPolling.accepted, 95))
	t.Logf("  -> processing:           events p50 %s p95 %s | polling p50 %s p95 %s", p(viaEvents.processing, 50), p(viaEvents.processing, 95), p(viaPolling.processing, 50), p(viaPolling.processing, 95))
	t.Logf("  -> succeeded:            events p50 %s p95 %s | polling p50 %s p95 %s", p(viaEvents.succeeded, 50), p(viaEvents.succeeded, 95), p(viaPolling.succeeded, 50), p(viaPolling.succeeded, 95))
	t.Logf("  processing seen at all:  events %d/%d | polling %d/%d", viaEvents.sawProcessing, jobsEach, viaPolling.sawProcessing, jobsEach)
	t.Logf("  not seen because the job had ended before the stream opened / the first poll: events %d | polling %d; other misses: events %d (changes the stream coalesced) | polling %d (between two polls)",
		viaEvents.late, viaPolling.late, jobsEach-viaEvents.sawProcessing-viaEvents.late, jobsEach-viaPolling.sawProcessing-viaPolling.late)
	is.True(p(viaEvents.succeeded, 95) < 10*time.Second) // generous: a job of ~100 ms
}

// latency is when a client learned of a job's states, from the moment it
// began its submit.
type latency struct {
	accepted, processing, succeeded time.Duration
	sawProcessing                   bool
	// late: the first event (or poll) already showed the job ended, so
	// its processing state was over before the client looked.
	late bool
}

type latencies struct {
	accepted, processing, succeeded []time.Duration
	sawProcessing, late             int
}

func (ls *latencies) add(l latency) {
	ls.accepted = append(ls.accepted, l.accepted)
	ls.processing = append(ls.processing, l.processing)
	ls.succeeded = append(ls.succeeded, l.succeeded)
	if l.sawProcessing {
		ls.sawProcessing++
	}
	if l.late {
		ls.late++
	}
}

// byEvents submits a job and follows it with an event stream opened at
// once. A state the first event already shows counts as learned then.
func byEvents(t *testing.T, client *testapi.Client, image []byte, fields map[string]string) latency {
	t.Helper()
	id, start, l := submitTimed(t, client, image, fields)
	s, open := client.Events(t, id, nil)
	if open.Status != http.StatusOK {
		t.Fatalf("events: %d %s", open.Status, open.Body)
	}
	defer s.Close()
	for first := true; ; first = false {
		ev := s.Next(t, 30*time.Second)
		if ev.Event != "status" {
			continue
		}
		if testapi.Status(ev) == "failed" {
			t.Fatalf("job failed: %s", ev.Data)
		}
		if l.learn(testapi.Status(ev), time.Since(start), first) {
			return l
		}
	}
}

// byPolling submits a job and polls GET every interval until it succeeded.
func byPolling(t *testing.T, client *testapi.Client, image []byte, fields map[string]string, interval time.Duration) latency {
	t.Helper()
	id, start, l := submitTimed(t, client, image, fields)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	first := true
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); <-tick.C {
		job, code := client.Get(t, id)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", id, code)
		}
		if job.Status == "failed" {
			t.Fatalf("job failed: %+v", job.Error)
		}
		if l.learn(job.Status, time.Since(start), first) {
			return l
		}
		first = false
	}
	t.Fatalf("job %s did not succeed within 30s", id)
	return l
}

// submitTimed uploads a job for byEvents or byPolling: its id, when the
// submit began, and its latency so far (the 202).
func submitTimed(t *testing.T, client *testapi.Client, image []byte, fields map[string]string) (string, time.Time, latency) {
	t.Helper()
	start := time.Now()
	resp := client.Upload(t, image, fields, nil)
	if resp.Status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", resp.Status, resp.Body)
	}
	l := latency{accepted: time.Since(start)}
	return resp.Job(t).ID, start, l
}

// learn records that the client saw status at (from the submit), on its
// first look at the job or a later one, and reports whether the job has
// succeeded. A job seen succeeded before it was seen processing counts as
// learned processing then too, and late if that was the first look.
func (l *latency) learn(status string, at time.Duration, first bool) bool {
	switch status {
	case "processing":
		l.sawProcessing = true
		if l.processing == 0 {
			l.processing = at
		}
	case "succeeded":
		if l.processing == 0 {
			l.processing = at
			l.late = !l.sawProcessing && first
		}
		l.succeeded = at
		return true
	}
	return false
}

// 1,000 open event streams on one api process (100 API keys x 10 streams,
// the per-key limit), each on a job that has succeeded while its callback
// waits a day (the receiver answered 503 with Retry-After: 86400), so no
// stream ends and none has anything to say: the api's RSS and CPU while
// they idle, against the same process idle without them, and the latency
// of another job's events with them open.
func TestMeasureOpenStreams(t *testing.T) {
	is := is.New(t)
	keys, idle, probes := 5, time.Second, 3
	if measuring() {
		keys, idle, probes = 100, 30*time.Second, 10
	}
	const perKey = 10 // server.MaxStreamsPerClient
	var all []string
	for i := range keys + 1 { // the last key is the probe's
		all = append(all, fmt.Sprintf("st-measure-%03d-%s", i, randText(12)))
	}
	env := newEnv(t, "THUMBNAILED_API_KEYS", strings.Join(all, ","), "THUMBNAILED_LOG_LEVEL", "warn")
	rcv := testapi.NewReceiver(t, webhookSecret)
	rcv.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) {
		w.Header().Set("Retry-After", "86400")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	api := startProcess(t, "api", "api", env)
	startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "2")
	image := readTestdata(t, "go-video-001.jpeg")
	logLoad(t, "before")
	defer logLoad(t, "after")

	// One job per key; each ends succeeded with its callback due in a day.
	ids := make([]string, keys)
	for k := range keys {
		resp := api.API().WithKey(all[k]).Upload(t, image, map[string]string{"width": "16", "callback_url": rcv.URL + "/hook"}, nil)
		is.Equal(resp.Status, http.StatusAccepted)
		ids[k] = resp.Job(t).ID
	}
	for k, id := range ids {
		api.API().WithKey(all[k]).WaitFor(t, id, 60*time.Second, "succeeded with its callback a day away", func(j testapi.Job) bool {
			return j.Status == "succeeded" && len(j.Deliveries) == 1 && j.Deliveries[0].Attempts == 1 &&
				j.Deliveries[0].NextAttemptAt != nil && time.Until(*j.Deliveries[0].NextAttemptAt) > time.Hour
		})
	}
	probe := api.API().WithKey(all[keys])
	var before latencies
	for range probes {
		before.add(byEvents(t, probe, image, map[string]string{"width": "16"}))
	}

	pid := api.cmd.Process.Pid
	quiet := sampleProc(t, pid)
	time.Sleep(idle) // the measurement window: the api idle, no streams
	quietEnd := sampleProc(t, pid)

	// Open the streams: every one answers 200 and its first event.
	openStart := time.Now()
	var streams []*testapi.Stream
	defer func() {
		for _, s := range streams {
			s.Close()
		}
	}()
	for k := range keys {
		c := api.API().WithKey(all[k])
		for range perKey {
			s, resp, err := c.OpenEvents(context.Background(), ids[k], nil)
			if err != nil || resp.Status != http.StatusOK {
				t.Fatalf("stream %d: %v %d %s", len(streams)+1, err, resp.Status, resp.Body)
			}
			streams = append(streams, s)
			ev, ok, err := s.Recv(10 * time.Second)
			if err != nil || !ok || testapi.Status(ev) != "succeeded" {
				t.Fatalf("stream %d: first event %s %s (%v, open %v)", len(streams), ev.Event, ev.Data, err, ok)
			}
		}
	}
	opened := time.Since(openStart)
	busy := sampleProc(t, pid)
	time.Sleep(idle) // the measurement window: the streams open and idle
	busyEnd := sampleProc(t, pid)
	open, comments := 0, 0
	for _, s := range streams {
		if _, ok, err := s.Recv(time.Millisecond); ok && errors.Is(err, testapi.ErrNoEvent) {
			open++ // nothing came, and the stream is still open
		}
		comments += s.Comments()
	}
	var after latencies
	for range probes {
		after.add(byEvents(t, probe, image, map[string]string{"width": "16"}))
	}
	goroutines, fds := metric(t, api, "go_goroutines"), metric(t, api, "process_open_fds")
	final := sampleProc(t, pid)

	n := len(streams)
	t.Logf("open event streams on one api process: %d (%d keys x %d), opened in %s (%s each, first event included)",
		n, keys, perKey, opened.Round(time.Millisecond), (opened / time.Duration(n)).Round(time.Microsecond))
	t.Logf("  api RSS: %s idle without streams -> %s with them (%s a stream); VmHWM %s at the end",
		mib(quietEnd.rssKB), mib(busyEnd.rssKB), kib(float64(busyEnd.rssKB-quietEnd.rssKB)/float64(n)), mib(final.hwmKB))
	t.Logf("  api CPU over %s idle: %s without streams (%.2f%% of a core), %s with them (%.2f%% of a core)",
		idle, (quietEnd.cpu - quiet.cpu), 100*(quietEnd.cpu-quiet.cpu).Seconds()/idle.Seconds(),
		(busyEnd.cpu - busy.cpu), 100*(busyEnd.cpu-busy.cpu).Seconds()/idle.Seconds())
	t.Logf("  api with the streams open: %.0f goroutines, %.0f open fds; %d of %d streams still open after the idle, %d keep-alive comments received",
		goroutines, fds, open, n, comments)
	t.Logf("  another job's events, each probe -> succeeded: %v without the streams, %v with them", rounded(before.succeeded), rounded(after.succeeded))
	t.Logf("  another job's events (%d probes, go-video-001.jpeg width 16): processing p50 %s / succeeded p50 %s without the streams, %s / %s with them (p95 %s / %s)",
		probes, p(before.processing, 50), p(before.succeeded, 50), p(after.processing, 50), p(after.succeeded, 50), p(after.processing, 95), p(after.succeeded, 95))

	is.Equal(n, keys*perKey)
	is.Equal(open, n)                                         // no stream ended while idle
	is.True(busyEnd.rssKB < 1<<20)                            // generous: under 1 GiB
	is.True((busyEnd.cpu - busy.cpu) < idle/5)                // generous: under 20 % of a core while idle
	is.True(p(after.succeeded, 50) < 5*time.Second)           // the probe's events still come
	is.True(idle < 15*time.Second || comments >= n)           // a keep-alive every 15 s on every stream
	is.True(len(rcv.All()) == keys && rcv.Distinct() == keys) // one attempt per job, postponed for a day
}

// logLoad logs the machine's load average: other work on the machine
// shows in the figures.
func logLoad(t *testing.T, when string) {
	b, _ := os.ReadFile("/proc/loadavg")
	t.Logf("machine load average %s: %s", when, strings.TrimSpace(string(b)))
}

// procSample is what /proc says of a process at one moment.
type procSample struct {
	rssKB, hwmKB int64
	cpu          time.Duration // utime + stime
}

// sampleProc reads VmRSS and VmHWM from /proc/<pid>/status, and utime and
// stime (clock ticks, 100 a second) from /proc/<pid>/stat.
func sampleProc(t *testing.T, pid int) procSample {
	t.Helper()
	var s procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch name {
		case "VmRSS":
			s.rssKB = kb
		case "VmHWM":
			s.hwmKB = kb
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // getconf CLK_TCK
	s.cpu = time.Duration(utime+stime) * time.Second / ticks
	return s
}

// metric is the value of an unlabelled metric on the process's /metrics.
func metric(t *testing.T, p *process, name string) float64 {
	t.Helper()
	code, body, err := p.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return math.NaN()
}

// rounded is ds to 0.1 ms, for logs.
func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Microsecond)
	}
	return out
}

// p is the pth percentile (nearest rank) of ds.
func p(ds []time.Duration, pct float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(pct/100*float64(len(s)))) - 1
	return s[max(i, 0)].Round(100 * time.Microsecond)
}

func mib(kb int64) string   { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
func kib(kb float64) string { return fmt.Sprintf("%.1f KiB", kb) }
func randText(n int) string { return strings.ToLower(rand.Text()[:n]) }
