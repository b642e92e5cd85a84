package testapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Ended reports whether a job has ended (succeeded or failed).
func Ended(j Job) bool { return j.Status == "succeeded" || j.Status == "failed" }

// EndAll polls every job of ids until all have ended or timeout passes. It
// keeps polling through outages: a poll that gets no answer or an error
// status (a 503 while Redis is away, an API restarting) is counted, not
// fatal. It returns the last view of every job that answered.
func (c *Client) EndAll(ids []string, timeout time.Duration) (last map[string]Job, failedPolls int, lastErr error) {
	last = map[string]Job{}
	Eventually(timeout, func() bool {
		pending := 0
		for _, id := range ids {
			if j, ok := last[id]; ok && Ended(j) {
				continue
			}
			j, err := c.poll(id)
			if err != nil {
				failedPolls++
				lastErr = err
				pending++
				continue
			}
			last[id] = j
			if !Ended(j) {
				pending++
			}
		}
		return pending == 0
	})
	return last, failedPolls, lastErr
}

// poll reads job id once, within 5 s.
func (c *Client) poll(id string) (Job, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Try(ctx, http.MethodGet, "/v1/thumbnails/"+id, nil, nil)
	if err != nil {
		return Job{}, err
	}
	if r.Status != http.StatusOK {
		return Job{}, fmt.Errorf("GET job %s: %d %s", id, r.Status, r.Body)
	}
	var j Job
	if err := json.Unmarshal(r.Body, &j); err != nil {
		return Job{}, fmt.Errorf("GET job %s: %w", id, err)
	}
	return j, nil
}

// TryUpload is Upload that returns the error instead of failing the test,
// so many goroutines can upload at once.
func (c *Client) TryUpload(ctx context.Context, image []byte, fields map[string]string, header http.Header) (Response, error) {
	body, contentType := Multipart(image, fields)
	h := http.Header{"Content-Type": {contentType}}
	for k, vs := range header {
		h[k] = vs
	}
	return c.Try(ctx, http.MethodPost, "/v1/thumbnails", bytes.NewReader(body), h)
}
