package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/webhook"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestPercentileIsNearestRank(t *testing.T) {
	is := is.New(t)
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	is.Equal(percentile(hundred, 50), 50*time.Millisecond)
	is.Equal(percentile(hundred, 95), 95*time.Millisecond)
	is.Equal(percentile(hundred, 99), 99*time.Millisecond)
	is.Equal(percentile(hundred, 100), 100*time.Millisecond)

	five := []time.Duration{10, 20, 30, 40, 50}
	is.Equal(percentile(five, 50), time.Duration(30)) // the median of an odd count
	is.Equal(percentile(five, 95), time.Duration(50)) // few values: the top one
	is.Equal(percentile(five, 1), time.Duration(10))

	is.Equal(percentile([]time.Duration{7}, 99), time.Duration(7))
	is.Equal(percentile(nil, 50), time.Duration(0))

	l := summarise([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}) // unsorted in
	is.Equal(*l, latencies{N: 3, P50: 2, P95: 3, P99: 3, Max: 3})
	is.True(summarise(nil) == nil)
}

// signedCallback is what the service sends: the event body, signed.
func signedCallback(t *testing.T, secret, eventID, jobID, status, code string) *http.Request {
	t.Helper()
	data := map[string]any{"id": jobID, "status": status}
	if code != "" {
		data["error"] = map[string]string{"code": code, "message": "it went wrong"}
	}
	body, _ := json.Marshal(map[string]any{"type": "thumbnail." + status, "timestamp": time.Now().UTC(), "data": data})
	now := time.Now()
	sig, err := webhook.Sign(secret, eventID, now, body)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, receiverPath, bytes.NewReader(body))
	req.Header.Set(webhook.HeaderID, eventID)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	return req
}

func TestReceiverVerifiesSignaturesAndKeepsTheFirstEvent(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(testSecret)
	serve := func(req *http.Request) int {
		rec := httptest.NewRecorder()
		rc.ServeHTTP(rec, req)
		return rec.Code
	}

	// A callback signed with the service's secret is taken.
	is.Equal(serve(signedCallback(t, testSecret, "msg_1", "job1", "succeeded", "")), http.StatusNoContent)
	cb, ok := rc.get("job1")
	is.True(ok)
	is.Equal(cb.status, "succeeded")

	// A failed job is remembered with its error code.
	is.Equal(serve(signedCallback(t, testSecret, "msg_2", "job2", "failed", "corrupt_image")), http.StatusNoContent)
	cb, _ = rc.get("job2")
	is.Equal(cb.code, "corrupt_image")

	// One signed with another secret is refused and counted, not recorded.
	other := "whsec_" + "c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ=="
	is.Equal(serve(signedCallback(t, other, "msg_3", "job3", "succeeded", "")), http.StatusUnauthorized)
	_, ok = rc.get("job3")
	is.True(!ok)

	// A retry (same webhook-id) is answered 2xx and changes nothing.
	first, _ := rc.get("job1")
	is.Equal(serve(signedCallback(t, testSecret, "msg_1", "job1", "succeeded", "")), http.StatusNoContent)
	again, _ := rc.get("job1")
	is.Equal(again.at, first.at)

	// A body that is not an event is refused.
	junk := httptest.NewRequest(http.MethodPost, receiverPath, strings.NewReader("not json"))
	is.Equal(newReceiver("").serveCode(junk), http.StatusBadRequest)

	bad, dup, malformed := rc.counts()
	is.Equal([3]int{bad, dup, malformed}, [3]int{1, 1, 0})
}

func (rc *receiver) serveCode(req *http.Request) int {
	rec := httptest.NewRecorder()
	rc.ServeHTTP(rec, req)
	return rec.Code
}

func TestReceiverWithoutSecretTakesUnsignedCallbacks(t *testing.T) {
	is := is.New(t)
	rc := newReceiver("")
	req := httptest.NewRequest(http.MethodPost, receiverPath, strings.NewReader(`{"type":"thumbnail.succeeded","data":{"id":"j","status":"succeeded"}}`))
	is.Equal(rc.serveCode(req), http.StatusNoContent)
	_, ok := rc.get("j")
	is.True(ok)
}

func TestParseStatusReadsRSSAndHighWaterMark(t *testing.T) {
	is := is.New(t)
	m, err := parseStatus([]byte("Name:\tthumbnailed\nVmPeak:\t 900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n"))
	is.NoErr(err)
	is.Equal(m, memStatus{rss: 100 << 20, hwm: 200 << 20})
	_, err = parseStatus([]byte("Name:\tkthreadd\n"))
	is.True(err != nil)

	self, err := readRSS(os.Getpid())
	is.NoErr(err)
	is.True(self.rss > 0 && self.hwm >= self.rss)
}

// fakeService stands in for Thumbnailed: it answers submits with 202 and,
// a few milliseconds later, POSTs a signed callback to the job's
// callback_url (when one was given), as the real service does. A few file
// names make it answer otherwise: rejected.jpg 429, busy.jpg 503 with
// Retry-After, bare503.jpg 503 without, vanish.jpg a 202 for a job it then
// forgets; and end otherwise: broken.jpg's job fails with corrupt_image,
// lost.jpg's succeeds but its callback is never sent.
type fakeService struct {
	t      *testing.T
	addr   string
	secret string
	key    string
	// stalled, when set and true, makes every request answer 503
	// storage_unavailable with Retry-After, as the service does while Redis
	// is stalled; with ghosts, a submit answered so still makes its job.
	stalled func() bool
	ghosts  bool
	// height, when set, is the height every submit must ask for.
	height string
	// created, when set, is told of every job made (before its 202).
	created func(id string)

	mu       sync.Mutex
	n        int
	status   map[string]string
	finished map[string]time.Time
	remotes  map[string]int // requests by client IP
	sent     sync.WaitGroup
}

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		http.Error(w, `{"title":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	host, _, _ := strings.Cut(r.RemoteAddr, ":")
	f.mu.Lock()
	f.remotes[host]++
	f.mu.Unlock()
	if f.stalled != nil && f.stalled() {
		if f.ghosts && r.Method == http.MethodPost {
			f.newJob("", "", false, false) // written, but the answer is a 503
		}
		f.problem(w, http.StatusServiceUnavailable, "storage_unavailable", true)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/thumbnails":
		f.create(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/thumbnails":
		f.mu.Lock()
		var items []map[string]string
		for id, st := range f.status {
			items = append(items, map[string]string{"id": id, "status": st})
		}
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/thumbnails/"):
		id, image := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/thumbnails/"), "/image")
		f.mu.Lock()
		st, ok := f.status[id]
		finished, ended := f.finished[id]
		f.mu.Unlock()
		switch {
		case !ok:
			f.problem(w, http.StatusNotFound, "not_found", false)
		case image && st != "succeeded":
			f.problem(w, http.StatusConflict, "not_ready", true)
		case image:
			_, _ = w.Write([]byte("\xff\xd8\xff a thumbnail"))
		default:
			created := time.Now().Add(-time.Second)
			started := created.Add(3 * time.Millisecond)
			job := map[string]any{"id": id, "status": st, "created_at": created, "started_at": started}
			if ended {
				job["finished_at"] = finished
			}
			_ = json.NewEncoder(w).Encode(job)
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeService) problem(w http.ResponseWriter, status int, code string, retryAfter bool) {
	if retryAfter {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(status), "status": status, "code": code})
}

func (f *fakeService) create(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		http.Error(w, `{"title":"Bad Request","detail":"not multipart"}`, http.StatusBadRequest)
		return
	}
	file, header, err := r.FormFile("image")
	if err != nil {
		http.Error(w, `{"title":"Bad Request","detail":"no image"}`, http.StatusBadRequest)
		return
	}
	data, _ := io.ReadAll(file)
	if r.FormValue("width") != "64" || r.FormValue("height") != f.height || len(data) == 0 {
		http.Error(w, `{"title":"Unprocessable"}`, http.StatusUnprocessableEntity)
		return
	}
	switch header.Filename {
	case "rejected.jpg":
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"title":"Too Many Requests","detail":"slow down"}`)
		return
	case "busy.jpg":
		f.problem(w, http.StatusServiceUnavailable, "uploads_busy", true)
		return
	case "bare503.jpg":
		f.problem(w, http.StatusServiceUnavailable, "storage_unavailable", false)
		return
	}
	code := ""
	if header.Filename == "broken.jpg" {
		code = "corrupt_image"
	}
	id := f.newJob(code, r.FormValue("callback_url"), header.Filename == "lost.jpg", header.Filename == "vanish.jpg")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "queued"})
}

// newJob queues a job that ends 5 ms later with code ("" succeeds) and, when
// callbackURL is given and not drop, calls back. A job that vanishes gets
// an id and nothing else.
func (f *fakeService) newJob(code, callbackURL string, drop, vanish bool) string {
	f.mu.Lock()
	f.n++
	id := fmt.Sprintf("job%d", f.n)
	if !vanish {
		f.status[id] = "queued"
	}
	f.mu.Unlock()
	if f.created != nil {
		f.created(id)
	}
	f.sent.Add(1)
	go func() {
		defer f.sent.Done()
		time.Sleep(5 * time.Millisecond)
		status := "succeeded"
		if code != "" {
			status = "failed"
		}
		f.mu.Lock()
		_, exists := f.status[id]
		if exists {
			f.status[id] = status
			f.finished[id] = time.Now()
		}
		f.mu.Unlock()
		if !exists || drop || callbackURL == "" {
			return
		}
		req := signedCallback(f.t, f.secret, "msg_"+id, id, status, code)
		post, _ := http.NewRequest(http.MethodPost, callbackURL, req.Body)
		post.Header = req.Header
		resp, err := http.DefaultClient.Do(post)
		if err != nil {
			f.t.Errorf("callback for %s: %v", id, err)
			return
		}
		resp.Body.Close()
	}()
	return id
}

func startFake(t *testing.T) *fakeService {
	f := &fakeService{t: t, secret: testSecret, key: "test-key-0123456789",
		status: map[string]string{}, finished: map[string]time.Time{}, remotes: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		f.sent.Wait()
		srv.Close()
	})
	f.addr = srv.URL
	return f
}

// load runs thumbload against the fake: its address, its key and the width
// it insists on, then args.
func (f *fakeService) load(args ...string) (stdout string, err error) {
	return thumbload(append([]string{"-addr", f.addr, "-key", f.key, "-width", "64"}, args...)...)
}

// thumbload runs the tool with the command line args (after its name) and
// returns what it wrote to stdout.
func thumbload(args ...string) (stdout string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"thumbload"}, args...), &out, &errOut)
	return out.String(), err
}

// images writes files named names into a directory and returns it.
func images(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("\xff\xd8\xff not really a JPEG"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// lastJSON decodes the -json line, the last line of stdout.
func lastJSON(t *testing.T, stdout string) summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var s summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("last line is not the JSON summary: %v\n%s", err, stdout)
	}
	return s
}

// failedRun checks that the run ended with the error want and returns its
// -json summary.
func failedRun(t *testing.T, stdout string, err error, want string) summary {
	t.Helper()
	if err == nil || err.Error() != want {
		t.Fatalf("the run ended with %v, want %q", err, want)
	}
	return lastJSON(t, stdout)
}

func TestLoadRunAgainstAFakeService(t *testing.T) {
	is := is.New(t)
	fake := startFake(t)
	fake.height = "48" // a box: the answer is refused unless -height is sent

	stdout, err := fake.load("-secret", testSecret, "-n", "9", "-c", "3", "-height", "48",
		"-images", images(t, "a.jpg", "b.jpg", "broken.jpg"),
		"-pid", strconv.Itoa(os.Getpid()), "-timeout", "10s", "-json")

	// Three of the nine jobs failed: the run says so, and reports everything.
	s := failedRun(t, stdout, err, "3 jobs failed")
	is.Equal(s.Mode, "load")
	is.Equal([5]int{s.Submitted, s.Accepted, s.Succeeded, s.Failed, s.Missing}, [5]int{9, 9, 6, 3, 0})
	is.Equal(s.FailedByCode, map[string]int{"corrupt_image": 3})
	is.True(s.SignaturesChecked)
	is.Equal(s.BadSignatures, 0)
	is.Equal(s.Latency.N, 6)
	is.True(s.Latency.P50 >= 5 && s.Latency.P50 <= s.Latency.P95 && s.Latency.P99 <= s.Latency.Max)
	is.True(s.JobsPerSecond > 0)
	is.Equal(len(s.RSS.Processes), 1)
	is.True(s.RSS.Processes[0].PeakMiB > 0)
	is.True(strings.Contains(stdout, "failed job corrupt_image x3"))
	is.True(s.CPU != nil && s.CPU.WallSeconds > 0) // CPU over the run is reported
	is.Equal(len(s.CPU.Processes), 1)
}

func TestLoadRunCountsRefusedSubmitsAndMissingCallbacks(t *testing.T) {
	is := is.New(t)
	stdout, err := startFake(t).load("-secret", testSecret, "-n", "3", "-c", "1",
		"-images", images(t, "ok.jpg", "lost.jpg", "rejected.jpg"), "-timeout", "300ms", "-json")

	s := failedRun(t, stdout, err, "1 submits not accepted, 1 callbacks missing after -timeout")
	is.Equal([4]int{s.Submitted, s.Accepted, s.Succeeded, s.Missing}, [4]int{3, 2, 1, 1})
	is.Equal(s.SubmitErrors, map[string]int{"429": 1})
	is.True(strings.Contains(stdout, "submit error 429 x1: Too Many Requests: slow down"))
}

func TestLoadRunNoticesForgedCallbacks(t *testing.T) {
	is := is.New(t)
	f := startFake(t)
	f.secret = "whsec_" + "c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ==" // not the one thumbload checks

	_, err := f.load("-secret", testSecret, "-n", "2", "-images", images(t, "a.jpg"), "-timeout", "300ms")

	is.True(err != nil)
	is.Equal(err.Error(), "2 callbacks missing after -timeout, 2 callbacks with a bad signature")
}

func TestIdleRunTimesOneJobByCallbackAndByPolling(t *testing.T) {
	is := is.New(t)
	stdout, err := startFake(t).load("-secret", testSecret, "-idle", "20ms", "-repeat", "3",
		"-images", images(t, "small.jpg"), "-timeout", "5s", "-json")

	is.NoErr(err)
	s := lastJSON(t, stdout)
	is.Equal(s.Mode, "idle")
	is.Equal([3]int{s.Submitted, s.Succeeded, s.Missing}, [3]int{3, 3, 0})
	is.Equal(s.Latency.N, 3)
	is.Equal(len(s.Idle.CallbackMS), 3)
	is.Equal(len(s.Idle.PollMS), 3)
	is.Equal(s.Idle.Poll.N, 3)
	for _, p := range s.Idle.PollMS {
		is.True(p >= 5) // the fake finishes a job 5 ms after its submit
	}
	is.Equal(s.Idle.Pickup.P50, 3.0) // the fake's started_at - created_at
	is.Equal(s.Idle.RateLimitedPolls, 0)
}

func TestFlagsAreCheckedTogether(t *testing.T) {
	is := is.New(t)
	_, err := thumbload("-n", "0", "-secret", "nope!", "-pids", "x")
	is.True(err != nil)
	for _, want := range []string{"give exactly one of -images, -url and -serve", "-n must be at least 1", "-secret:", `-pids: "x"`} {
		is.True(strings.Contains(err.Error(), want)) // every mistake at once
	}
}
