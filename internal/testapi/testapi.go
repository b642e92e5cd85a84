// Package testapi is the test kit for talking to a running Thumbnailed API:
// submit (JSON or multipart), get, wait until a job or a delivery ends, a
// signed-callback receiver, and Eventually. The cmd, server, systemtest and
// load-tool tests share it, so a change of the API changes one place.
package testapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
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

// Post posts body as it is, with contentType, to /v1/thumbnails: for
// bodies Submit cannot make (malformed JSON, other content types).
func (c *Client) Post(t testing.TB, contentType string, body []byte, header http.Header) Response {
	t.Helper()
	h := http.Header{"Content-Type": {contentType}}
	for k, vs := range header {
		h[k] = vs
	}
	return c.Do(t, http.MethodPost, "/v1/thumbnails", bytes.NewReader(body), h)
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

// Delivery is a job's delivery as the API shows it.
type Delivery = view.DeliveryView

// From is the same client connecting from the local address ip (on Linux
// every 127.0.0.0/8 address is this machine's), so one test can be several
// clients of a service that tells clients apart by address.
func (c *Client) From(ip string) *Client {
	cc := *c
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	cc.HTTP = &http.Client{Timeout: c.HTTP.Timeout, Transport: &http.Transport{Proxy: nil, DialContext: dialer.DialContext}}
	return &cc
}

// Open GETs a link the service handed out (a signed link: a path, or an
// absolute URL when THUMBNAILED_PUBLIC_URL is set), without the API key, as
// a person who was sent the link would. method is GET or HEAD.
func (c *Client) Open(t testing.TB, method, link string) Response {
	t.Helper()
	cc := c.WithKey("")
	if strings.HasPrefix(link, "http://") || strings.HasPrefix(link, "https://") {
		cc.URL = ""
	}
	return cc.Do(t, method, link, nil, nil)
}

// Delete erases job id.
func (c *Client) Delete(t testing.TB, id string) Response {
	t.Helper()
	return c.Do(t, http.MethodDelete, "/v1/thumbnails/"+id, nil, nil)
}

// Page is one page of GET /v1/thumbnails.
type Page struct {
	Items      []Job  `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// List is one page of the caller's jobs; query holds status, limit and
// cursor (nil: the first page with the defaults). The page is empty unless
// the answer is 200.
func (c *Client) List(t testing.TB, query url.Values) (Page, Response) {
	t.Helper()
	path := "/v1/thumbnails"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	r := c.Do(t, http.MethodGet, path, nil, nil)
	var p Page
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatalf("not a page of jobs: %v\n%s", err, r.Body)
		}
	}
	return p, r
}

// ListAll follows next_cursor from the first page to the last, limit jobs a
// page, and returns every page.
func (c *Client) ListAll(t testing.TB, query url.Values) []Page {
	t.Helper()
	var pages []Page
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	for {
		p, r := c.List(t, q)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /v1/thumbnails?%s: %d %s", q.Encode(), r.Status, r.Body)
		}
		pages = append(pages, p)
		if p.NextCursor == "" {
			return pages
		}
		if len(pages) > 1000 {
			t.Fatal("more than 1000 pages: the cursor does not move on")
		}
		q.Set("cursor", p.NextCursor)
	}
}

// Redeliver asks for a delivery of job id again.
func (c *Client) Redeliver(t testing.TB, id, channel string) Response {
	t.Helper()
	return c.Do(t, http.MethodPost, "/v1/thumbnails/"+id+"/deliveries/"+channel+"/redeliver", nil, nil)
}

// SSE is one server-sent event.
type SSE struct {
	ID    string
	Event string
	Data  []byte
}

// Job decodes a status event's data.
func (e SSE) Job(t testing.TB) Job {
	t.Helper()
	return decodeEvent[Job](t, e, "status")
}

// Delivery decodes a delivery event's data.
func (e SSE) Delivery(t testing.TB) Delivery {
	t.Helper()
	return decodeEvent[Delivery](t, e, "delivery")
}

func decodeEvent[T any](t testing.TB, e SSE, event string) T {
	t.Helper()
	var v T
	if e.Event != event {
		t.Fatalf("event %q (id %s), not a %s event: %s", e.Event, e.ID, event, e.Data)
	}
	if err := json.Unmarshal(e.Data, &v); err != nil {
		t.Fatalf("%s event %s: %v\n%s", event, e.ID, err, e.Data)
	}
	return v
}

// Stream is an open event stream of one job.
type Stream struct {
	Response Response // status and header; the body is read as events
	events   chan SSE
	cancel   context.CancelFunc
	mu       sync.Mutex
	comments int
}

// Events opens GET /v1/thumbnails/{id}/events with header (Last-Event-ID,
// say). When the answer is not 200 it returns nil and the answer, read.
// The stream closes when t ends.
func (c *Client) Events(t testing.TB, id string, header http.Header) (*Stream, Response) {
	t.Helper()
	s, r, err := c.OpenEvents(context.Background(), id, header)
	if err != nil {
		t.Fatalf("GET events of %s: %v", id, err)
	}
	if s != nil {
		t.Cleanup(s.Close)
	}
	return s, r
}

func (s *Stream) read(ctx context.Context, body io.ReadCloser) {
	defer close(s.events)
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev SSE
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || len(data) > 0 {
				ev.Data = []byte(strings.Join(data, "\n"))
				select {
				case s.events <- ev:
				case <-ctx.Done():
					return
				}
			}
			ev, data = SSE{}, nil
		case strings.HasPrefix(line, ":"):
			s.mu.Lock()
			s.comments++
			s.mu.Unlock()
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Event = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// Next is the next event; it fails the test when none comes within timeout
// or the stream has ended.
func (s *Stream) Next(t testing.TB, timeout time.Duration) SSE {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %s", timeout)
	}
	return SSE{}
}

// Ends reports whether the server closes the stream, with no further event,
// within timeout.
func (s *Stream) Ends(t testing.TB, timeout time.Duration) bool {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if ok {
			t.Errorf("another event before the end: %s %s %s", ev.ID, ev.Event, ev.Data)
		}
		return !ok
	case <-time.After(timeout):
		return false
	}
}

// Comments is how many comment lines (": keep-alive") the stream has had.
func (s *Stream) Comments() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.comments
}

// Close hangs up.
func (s *Stream) Close() { s.cancel() }
