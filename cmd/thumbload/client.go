package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// client speaks the service's v1 API. Every answer it gets is recorded in
// answers (with its operation, status and how long it took), and with
// several source addresses (-from) each request goes out from the next one.
type client struct {
	base        string
	key         string
	width       int
	height      int    // 0: not sent (the height follows the width)
	callback    string // the callback_url sent with every job; "" for none
	idempotency bool   // send a fresh Idempotency-Key with every submit

	https   []*http.Client // one per source address
	sources []string       // the source address of each ("" = the system's choice)
	next    atomic.Uint64
	answers *answerLog
}

// newHTTPClients builds one HTTP client per source address (a nil or empty
// list means one client with the system's choice), each with its own
// connection pool bound to that address.
func newHTTPClients(from []net.IP, conns int, timeout time.Duration) ([]*http.Client, []string) {
	if len(from) == 0 {
		from = []net.IP{nil}
	}
	var clients []*http.Client
	var names []string
	for _, ip := range from {
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		name := ""
		if ip != nil {
			dialer.LocalAddr = &net.TCPAddr{IP: ip}
			name = ip.String()
		}
		clients = append(clients, &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				DialContext:         dialer.DialContext,
				MaxIdleConnsPerHost: max(conns, 4),
				DisableCompression:  true,
			},
		})
		names = append(names, name)
	}
	return clients, names
}

// jobStatus is the part of GET /v1/thumbnails/{id} thumbload reads.
type jobStatus struct {
	ID         string     `json:"id"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Error      *struct {
		Code string `json:"code"`
	} `json:"error"`
	Deliveries []struct {
		Channel string `json:"channel"`
		Status  string `json:"status"`
	} `json:"deliveries"`
}

// ended reports a job that has succeeded or failed.
func (j jobStatus) ended() bool { return j.Status == "succeeded" || j.Status == "failed" }

// settled reports an ended job none of whose deliveries is still pending:
// nothing more will be written for it.
func (j jobStatus) settled() bool {
	if !j.ended() {
		return false
	}
	for _, d := range j.Deliveries {
		if d.Status == "pending" {
			return false
		}
	}
	return true
}

// submitError is a submit the service did not accept.
type submitError struct {
	kind       string // the HTTP status, or "transport"
	detail     string
	retryAfter bool // the answer had a Retry-After header
}

func (e *submitError) Error() string { return e.kind + ": " + e.detail }

// refused reports the service's answer to "not now": a 503 with
// Retry-After (uploads past THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES, storage
// unavailable).
func (e *submitError) refused() bool { return e.kind == "503" && e.retryAfter }

// body builds one request body for src; uploads are multipart with the file
// in the part named image.
func (c *client) body(src source) (contentType string, body []byte, err error) {
	if src.url != "" {
		fields := map[string]any{"url": src.url, "width": c.width}
		if c.height > 0 {
			fields["height"] = c.height
		}
		if c.callback != "" {
			fields["callback_url"] = c.callback
		}
		b, err := json.Marshal(fields)
		return "application/json", b, err
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("image", src.name)
	if err != nil {
		return "", nil, err
	}
	if _, err := fw.Write(src.data); err != nil {
		return "", nil, err
	}
	fields := [][2]string{{"width", strconv.Itoa(c.width)}}
	if c.height > 0 {
		fields = append(fields, [2]string{"height", strconv.Itoa(c.height)})
	}
	if c.callback != "" {
		fields = append(fields, [2]string{"callback_url", c.callback})
	}
	for _, kv := range fields {
		if err := mw.WriteField(kv[0], kv[1]); err != nil {
			return "", nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return "", nil, err
	}
	return mw.FormDataContentType(), buf.Bytes(), nil
}

// reply is one answer, read.
type reply struct {
	status     int
	body       []byte
	retryAfter bool
}

// do sends req from the next source address, reads up to limit bytes of the
// answer and records it as op.
func (c *client) do(req *http.Request, op string, limit int64) (reply, error) {
	c.authorize(req)
	i := int((c.next.Add(1) - 1) % uint64(len(c.https)))
	start := time.Now()
	resp, err := c.https[i].Do(req)
	if err != nil {
		c.answers.add(answer{op: op, source: c.sources[i], start: start, took: time.Since(start), err: err.Error()})
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	r := reply{status: resp.StatusCode, body: raw, retryAfter: resp.Header.Get("Retry-After") != ""}
	a := answer{op: op, source: c.sources[i], start: start, took: time.Since(start),
		status: r.status, retryAfter: r.retryAfter, code: problemCode(raw)}
	if err != nil {
		a.err = "reading the answer: " + err.Error()
	}
	c.answers.add(a)
	return r, err
}

// submit posts one prepared body and returns the job id of a 202.
func (c *client) submit(ctx context.Context, contentType string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/thumbnails", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	if c.idempotency {
		req.Header.Set("Idempotency-Key", strings.ToLower(rand.Text()))
	}
	r, err := c.do(req, opSubmit, 1<<20)
	if err != nil && r.status == 0 {
		return "", &submitError{kind: "transport", detail: err.Error()}
	}
	if r.status != http.StatusAccepted {
		return "", &submitError{kind: strconv.Itoa(r.status), detail: problemDetail(r.body), retryAfter: r.retryAfter}
	}
	var job jobStatus
	if err := json.Unmarshal(r.body, &job); err != nil || job.ID == "" {
		return "", &submitError{kind: "bad_response", detail: fmt.Sprintf("202 without a job id: %.200s", r.body)}
	}
	return job.ID, nil
}

// status fetches a job; rateLimited reports a 429 (the poll goes on), gone a
// 404 (the job does not exist).
func (c *client) status(ctx context.Context, id string) (job jobStatus, answer reply, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/thumbnails/"+url.PathEscape(id), nil)
	if err != nil {
		return job, reply{}, err
	}
	r, err := c.do(req, opGet, 1<<20)
	if err != nil {
		return job, r, err
	}
	switch r.status {
	case http.StatusOK:
		err = json.Unmarshal(r.body, &job)
		return job, r, err
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusNotFound:
		return job, r, nil // the caller decides
	default:
		return job, r, fmt.Errorf("GET status answered %d: %s", r.status, problemDetail(r.body))
	}
}

// image fetches a job's first output (GET /v1/thumbnails/{id}/image).
func (c *client) image(ctx context.Context, id string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/thumbnails/"+url.PathEscape(id)+"/image", nil)
	if err != nil {
		return reply{}, err
	}
	return c.do(req, opImage, 64<<20)
}

// list returns the ids of every job GET /v1/thumbnails lists for the
// client at source (its jobs are its IP's when the service has no keys).
func (c *client) list(ctx context.Context, source int) ([]string, error) {
	var ids []string
	cursor := ""
	for {
		u := c.base + "/v1/thumbnails?limit=100"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		c.authorize(req)
		resp, err := c.https[source].Do(req)
		if err != nil {
			return nil, err
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET /v1/thumbnails answered %d: %s", resp.StatusCode, problemDetail(raw))
		}
		var page struct {
			Items      []jobStatus `json:"items"`
			NextCursor string      `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, fmt.Errorf("GET /v1/thumbnails: %w", err)
		}
		for _, j := range page.Items {
			ids = append(ids, j.ID)
		}
		if page.NextCursor == "" {
			return ids, nil
		}
		cursor = page.NextCursor
	}
}

func (c *client) authorize(req *http.Request) {
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
}

// problemCode is the code of a problem+json answer, or "".
func problemCode(raw []byte) string {
	if len(raw) == 0 || raw[0] != '{' {
		return ""
	}
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(raw, &p)
	return p.Code
}

// problemDetail shortens a problem+json answer to what a person needs.
func problemDetail(raw []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(raw, &p) != nil || (p.Title == "" && p.Detail == "") {
		return strings.TrimSpace(fmt.Sprintf("%.200s", raw))
	}
	s := p.Title
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	for _, e := range p.Errors {
		s += fmt.Sprintf(" [%s %s]", e.Field, e.Message)
	}
	return s
}

// bodies makes the submit body of every source once, before any is sent.
func (c *client) bodies(sources []source) ([]prepared, error) {
	bodies := make([]prepared, len(sources))
	for i, src := range sources {
		ct, b, err := c.body(src)
		if err != nil {
			return nil, err
		}
		bodies[i] = prepared{ct, b}
	}
	return bodies, nil
}
