package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thumbnailed/thumbnailed/webhook"
)

var httpClient = &http.Client{Timeout: 10 * time.Second}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---------------------------------------------------------------- the API

// jobJSON is the part of GET /v1/thumbnails/{id} these tests read.
type jobJSON struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Deliveries []struct {
		Channel  string `json:"channel"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
	} `json:"deliveries"`
}

func (j jobJSON) ended() bool { return j.Status == "succeeded" || j.Status == "failed" }

// submitURL posts a url job; it returns the status code and the job.
func submitURL(t *testing.T, api, source, callback string, width int) (int, jobJSON) {
	t.Helper()
	body := map[string]any{"url": source, "width": width}
	if callback != "" {
		body["callback_url"] = callback
	}
	b, _ := json.Marshal(body)
	resp, err := httpClient.Post(api+"/v1/thumbnails", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("submit %s: %v", source, err)
	}
	return decodeJob(t, resp)
}

// multipartBody builds an upload request body.
func multipartBody(image []byte, fields map[string]string) (body []byte, contentType string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		_ = mw.WriteField(k, fields[k])
	}
	fw, _ := mw.CreateFormFile("image", "photo.jpg")
	_, _ = fw.Write(image)
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// submitUpload posts an upload job. It does not fail the test on a
// transport error (it returns it), so it can run from many goroutines.
func submitUpload(api string, image []byte, fields map[string]string) (int, jobJSON, error) {
	body, ct := multipartBody(image, fields)
	resp, err := httpClient.Post(api+"/v1/thumbnails", ct, bytes.NewReader(body))
	if err != nil {
		return 0, jobJSON{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var j jobJSON
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(b, &j); err != nil {
			return resp.StatusCode, j, fmt.Errorf("decode %q: %w", b, err)
		}
	} else {
		return resp.StatusCode, j, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return resp.StatusCode, j, nil
}

func decodeJob(t *testing.T, resp *http.Response) (int, jobJSON) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var j jobJSON
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatalf("decode job from %q: %v", b, err)
		}
	} else {
		t.Logf("answer %d: %s", resp.StatusCode, b)
	}
	return resp.StatusCode, j
}

// getJob reads a job; an error (Redis away, the API restarting) is returned, not fatal.
func getJob(api, id string) (jobJSON, error) {
	resp, err := httpClient.Get(api + "/v1/thumbnails/" + id)
	if err != nil {
		return jobJSON{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return jobJSON{}, fmt.Errorf("GET job %s: %d %s", id, resp.StatusCode, bytes.TrimSpace(b))
	}
	var j jobJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return j, fmt.Errorf("decode job %s: %w", id, err)
	}
	return j, nil
}

// waitEnded polls every job until all have ended or timeout passes. It
// returns the last view of each job and how many polls failed (5xx while
// Redis is away, for example).
func waitEnded(api string, ids []string, timeout time.Duration) (jobsByID map[string]jobJSON, pollErrors int, lastErr error) {
	jobsByID = map[string]jobJSON{}
	deadline := time.Now().Add(timeout)
	for {
		pending := 0
		for _, id := range ids {
			if j, ok := jobsByID[id]; ok && j.ended() {
				continue
			}
			j, err := getJob(api, id)
			if err != nil {
				pollErrors++
				lastErr = err
				pending++
				continue
			}
			jobsByID[id] = j
			if !j.ended() {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return jobsByID, pollErrors, lastErr
		}
		time.Sleep(100 * time.Millisecond)
	}
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

// ---------------------------------------------------------------- callbacks

// receiver is a callback endpoint: it verifies each signature and counts
// deliveries by webhook-id.
type receiver struct {
	*httptest.Server

	mu       sync.Mutex
	count    map[string]int       // webhook-id -> deliveries
	events   map[string]eventJSON // webhook-id -> first body
	firstAt  map[string]time.Time
	badSig   []string
	received int
}

type eventJSON struct {
	Type string  `json:"type"`
	Data jobJSON `json:"data"`
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{count: map[string]int{}, events: map[string]eventJSON{}, firstAt: map[string]time.Time{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := req.Header.Get(webhook.HeaderID)
		var ev eventJSON
		jsonErr := json.Unmarshal(body, &ev)
		sigErr := webhook.Verify(webhookSecret, req.Header, body, time.Minute)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.received++
		if sigErr != nil || jsonErr != nil {
			r.badSig = append(r.badSig, fmt.Sprintf("%s: signature %v, json %v", id, sigErr, jsonErr))
		}
		if r.count[id] == 0 {
			r.events[id] = ev
			r.firstAt[id] = time.Now()
		}
		r.count[id]++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

// eventID is the webhook-id of a job's event.
func eventID(jobID string) string { return "msg_" + jobID }

// Count is how many times the event of job id arrived.
func (r *receiver) Count(jobID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[eventID(jobID)]
}

// Distinct is how many different events arrived.
func (r *receiver) Distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.count)
}

// WaitAll waits until the event of every job has arrived at least once.
func (r *receiver) WaitAll(ids []string, timeout time.Duration) bool {
	return eventually(timeout, 50*time.Millisecond, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range ids {
			if r.count[eventID(id)] == 0 {
				return false
			}
		}
		return true
	})
}

// Check reports every way the deliveries of jobs differ from "each job's
// event arrived exactly once, signed, as thumbnail.succeeded", plus events
// for jobs not in ids.
func (r *receiver) Check(ids []string) (problems []string, duplicates int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[string]bool{}
	for _, id := range ids {
		want[eventID(id)] = true
		n := r.count[eventID(id)]
		switch {
		case n == 0:
			problems = append(problems, "no callback for job "+id)
		case n > 1:
			duplicates += n - 1
			problems = append(problems, fmt.Sprintf("job %s: callback delivered %d times", id, n))
		}
		if ev, ok := r.events[eventID(id)]; ok && (ev.Type != "thumbnail.succeeded" || ev.Data.ID != id || ev.Data.Status != "succeeded") {
			problems = append(problems, fmt.Sprintf("job %s: event %s for job %s status %s", id, ev.Type, ev.Data.ID, ev.Data.Status))
		}
	}
	for id := range r.count {
		if !want[id] {
			problems = append(problems, "callback for an unknown event "+id)
		}
	}
	problems = append(problems, r.badSig...)
	return problems, duplicates
}

// LastAt is when the last first-delivery of ids arrived.
func (r *receiver) LastAt(ids []string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, id := range ids {
		if at := r.firstAt[eventID(id)]; at.After(last) {
			last = at
		}
	}
	return last
}

// ---------------------------------------------------------------- redis

// describeJob tells what Redis holds about a job: its record and where
// gocraft/work has it. For the report when a job is stuck.
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
	score, _ := c.Do("ZSCORE", ns+":processing", id)
	fmt.Fprintf(&b, "processing zset score: %s\n", score)
	keys, _ := c.Do("KEYS", ns+":jobs:*")
	if ks, ok := keys.([]any); ok {
		for _, k := range ks {
			key := string(k.([]byte))
			typ, _ := c.Do("TYPE", key)
			var members []any
			switch fmt.Sprint(typ) {
			case "list":
				v, _ := c.Do("LRANGE", key, 0, -1)
				members, _ = v.([]any)
			case "zset":
				v, _ := c.Do("ZRANGE", key, 0, -1)
				members, _ = v.([]any)
			default:
				continue
			}
			for _, m := range members {
				if bytes.Contains(m.([]byte), []byte(id)) {
					fmt.Fprintf(&b, "gocraft %s: %s\n", key, m)
				}
			}
		}
	}
	return b.String()
}

// gocraftSummary lists the sizes of gocraft/work's lists and sets.
func gocraftSummary(r *redisServer, ns string) string {
	c, err := r.Conn()
	if err != nil {
		return "redis: " + err.Error()
	}
	defer c.Close()
	var lines []string
	for _, pattern := range []string{ns + ":jobs:*", ns + ":retry", ns + ":scheduled", ns + ":dead"} {
		keys, _ := c.Do("KEYS", pattern)
		ks, _ := keys.([]any)
		for _, k := range ks {
			key := string(k.([]byte))
			typ, _ := c.Do("TYPE", key)
			var n any
			switch fmt.Sprint(typ) {
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

// probeCtx bounds one probe of an endpoint.
func probeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}
