// Package testapi is the test kit for talking to a running Thumbnailed API:
// submit (JSON or multipart), get, wait until a job or a delivery ends, a
// signed-callback receiver, and Eventually. The cmd, server, systemtest and
// load-tool tests share it, so a change of the API changes one place.
package testapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// Eventually checks cond until it holds or timeout passes, first often and
// then less so; it reports whether cond held.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Job is a job as the API shows it.
type Job = view.JobView

// Problem is an API error.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// Field is the message about field, or "" when the problem does not name it.
func (p Problem) Field(field string) string {
	for _, e := range p.Errors {
		if e.Field == field {
			return e.Message
		}
	}
	return ""
}

// Client talks to one API.
type Client struct {
	URL  string // http://host:port
	Key  string // sent as the Bearer token when set
	HTTP *http.Client
}

// New is a client of the API at url.
func New(url string) *Client {
	return &Client{URL: strings.TrimSuffix(url, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// WithKey is the same client with an API key.
func (c *Client) WithKey(key string) *Client {
	cc := *c
	cc.Key = key
	return &cc
}

// Response is an answer, read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Job decodes the body as a job.
func (r Response) Job(t testing.TB) Job {
	t.Helper()
	var j Job
	if err := json.Unmarshal(r.Body, &j); err != nil {
		t.Fatalf("not a job (%d): %v\n%s", r.Status, err, r.Body)
	}
	return j
}

// Problem decodes the body as a problem, checking its content type.
func (r Response) Problem(t testing.TB) Problem {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("status %d with content type %q, not a problem:\n%s", r.Status, ct, r.Body)
	}
	var p Problem
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("not a problem: %v\n%s", err, r.Body)
	}
	return p
}

// Do sends a request; header may be nil. It fails the test only when no
// answer came at all.
func (c *Client) Do(t testing.TB, method, path string, body io.Reader, header http.Header) Response {
	t.Helper()
	r, err := c.Try(context.Background(), method, path, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// Try is Do that returns the error instead (for polling through outages).
func (c *Client) Try(ctx context.Context, method, path string, body io.Reader, header http.Header) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return Response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if c.Key != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// Submit posts a JSON job request (a map or a struct).
func (c *Client) Submit(t testing.TB, request any, header http.Header) Response {
	t.Helper()
	b, err := json.Marshal(request)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	for k, vs := range header {
		h[k] = vs
	}
	return c.Do(t, http.MethodPost, "/v1/thumbnails", bytes.NewReader(b), h)
}

// Upload posts image as multipart with fields.
func (c *Client) Upload(t testing.TB, image []byte, fields map[string]string, header http.Header) Response {
	t.Helper()
	body, contentType := Multipart(image, fields)
	h := http.Header{"Content-Type": {contentType}}
	for k, vs := range header {
		h[k] = vs
	}
	return c.Do(t, http.MethodPost, "/v1/thumbnails", bytes.NewReader(body), h)
}

// Multipart is a multipart/form-data body with the image in the part named
// "image" (nil: none) and fields as form values.
func Multipart(image []byte, fields map[string]string) (body []byte, contentType string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if image != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="image"; filename="image.bin"`)
		h.Set("Content-Type", "application/octet-stream")
		part, _ := mw.CreatePart(h)
		_, _ = part.Write(image)
	}
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// Get is the job id, with the status of the answer.
func (c *Client) Get(t testing.TB, id string) (Job, int) {
	t.Helper()
	r := c.Do(t, http.MethodGet, "/v1/thumbnails/"+id, nil, nil)
	if r.Status != http.StatusOK {
		return Job{}, r.Status
	}
	return r.Job(t), r.Status
}

// WaitEnded waits until job id has ended and returns it.
func (c *Client) WaitEnded(t testing.TB, id string, timeout time.Duration) Job {
	t.Helper()
	return c.WaitFor(t, id, timeout, "ended", func(j Job) bool { return j.Status == "succeeded" || j.Status == "failed" })
}

// WaitDelivered waits until job id has ended and none of its deliveries is pending.
func (c *Client) WaitDelivered(t testing.TB, id string, timeout time.Duration) Job {
	t.Helper()
	return c.WaitFor(t, id, timeout, "delivered", func(j Job) bool {
		if j.Status != "succeeded" && j.Status != "failed" {
			return false
		}
		for _, d := range j.Deliveries {
			if d.Status == "pending" {
				return false
			}
		}
		return true
	})
}

// WaitFor waits until cond holds for job id; what names it in the failure.
func (c *Client) WaitFor(t testing.TB, id string, timeout time.Duration, what string, cond func(Job) bool) Job {
	t.Helper()
	var last Job
	var lastErr error
	ok := Eventually(timeout, func() bool {
		r, err := c.Try(context.Background(), http.MethodGet, "/v1/thumbnails/"+id, nil, nil)
		if err != nil || r.Status != http.StatusOK {
			lastErr = fmt.Errorf("%v (status %d: %s)", err, r.Status, r.Body)
			return false
		}
		if err := json.Unmarshal(r.Body, &last); err != nil {
			lastErr = err
			return false
		}
		return cond(last)
	})
	if !ok {
		t.Fatalf("job %s not %s within %s: last seen %+v (last error %v)", id, what, timeout, last, lastErr)
	}
	return last
}

// Callback is one callback a Receiver got.
type Callback struct {
	ID        string // webhook-id
	Body      []byte
	Header    http.Header
	Event     Event
	Signed    bool // the signature verified with one of the receiver's secrets
	Received  time.Time
	SignError error
}

// Event is a callback's body.
type Event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		Job
		Image *struct {
			ContentType string `json:"content_type"`
			URL         string `json:"url"`
			Base64      string `json:"base64"`
		} `json:"image"`
	} `json:"data"`
}

// Receiver is a client's callback server: it verifies each callback's
// signature with its secrets (any one verifying is enough), keeps every
// callback, and answers what Answer says (204 by default).
type Receiver struct {
	*httptest.Server
	secrets []string

	mu        sync.Mutex
	callbacks []Callback
	// Answer, when set, writes the answer to a callback (after it is kept).
	Answer func(w http.ResponseWriter, c Callback)
}

// NewReceiver starts a receiver, stopped when t ends. With no secrets it
// takes unsigned callbacks.
func NewReceiver(t testing.TB, secrets ...string) *Receiver {
	rc := &Receiver{secrets: secrets}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cb := Callback{ID: r.Header.Get(webhook.HeaderID), Body: body, Header: r.Header.Clone(), Received: time.Now()}
		cb.SignError = webhook.ErrMissingHeaders
		for _, s := range rc.secrets {
			if cb.SignError = webhook.Verify(s, r.Header, body, 5*time.Minute); cb.SignError == nil {
				break
			}
		}
		cb.Signed = cb.SignError == nil && len(rc.secrets) > 0
		_ = json.Unmarshal(body, &cb.Event)
		rc.mu.Lock()
		rc.callbacks = append(rc.callbacks, cb)
		answer := rc.Answer
		rc.mu.Unlock()
		if answer != nil {
			answer(w, cb)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// SetAnswer changes how the receiver answers.
func (rc *Receiver) SetAnswer(f func(w http.ResponseWriter, c Callback)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.Answer = f
}

// All is every callback so far, in the order they came.
func (rc *Receiver) All() []Callback {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Callback(nil), rc.callbacks...)
}

// For is every callback about job id.
func (rc *Receiver) For(id string) []Callback {
	var out []Callback
	for _, c := range rc.All() {
		if c.Event.Data.ID == id || c.ID == "msg_"+id {
			out = append(out, c)
		}
	}
	return out
}

// Wait waits for n callbacks about job id and returns them.
func (rc *Receiver) Wait(t testing.TB, id string, n int, timeout time.Duration) []Callback {
	t.Helper()
	if !Eventually(timeout, func() bool { return len(rc.For(id)) >= n }) {
		t.Fatalf("%d callbacks about job %s within %s, not %d", len(rc.For(id)), id, timeout, n)
	}
	return rc.For(id)
}
