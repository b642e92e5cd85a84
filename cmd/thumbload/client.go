package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// client speaks the service's v1 API.
type client struct {
	base     string
	key      string
	width    int
	callback string
	http     *http.Client
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
}

// submitError is a submit the service did not accept.
type submitError struct {
	kind   string // the HTTP status, or "transport"
	detail string
}

func (e *submitError) Error() string { return e.kind + ": " + e.detail }

// body builds one request body for src; uploads are multipart with the file
// in the part named image.
func (c *client) body(src source) (contentType string, body []byte, err error) {
	if src.url != "" {
		b, err := json.Marshal(map[string]any{"url": src.url, "width": c.width, "callback_url": c.callback})
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
	for _, kv := range [][2]string{{"width", strconv.Itoa(c.width)}, {"callback_url", c.callback}} {
		if err := mw.WriteField(kv[0], kv[1]); err != nil {
			return "", nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return "", nil, err
	}
	return mw.FormDataContentType(), buf.Bytes(), nil
}

// submit posts one prepared body and returns the job id of a 202.
func (c *client) submit(ctx context.Context, contentType string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/thumbnails", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", &submitError{kind: "transport", detail: err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		return "", &submitError{kind: strconv.Itoa(resp.StatusCode), detail: problemDetail(raw)}
	}
	var job jobStatus
	if err := json.Unmarshal(raw, &job); err != nil || job.ID == "" {
		return "", &submitError{kind: "bad_response", detail: fmt.Sprintf("202 without a job id: %.200s", raw)}
	}
	return job.ID, nil
}

// status fetches a job; rateLimited reports a 429 (the poll goes on).
func (c *client) status(ctx context.Context, id string) (job jobStatus, rateLimited bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/thumbnails/"+url.PathEscape(id), nil)
	if err != nil {
		return job, false, err
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return job, false, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		err = json.Unmarshal(raw, &job)
		return job, false, err
	case http.StatusTooManyRequests:
		return job, true, nil
	default:
		return job, false, fmt.Errorf("GET status answered %d: %s", resp.StatusCode, problemDetail(raw))
	}
}

func (c *client) authorize(req *http.Request) {
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
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
