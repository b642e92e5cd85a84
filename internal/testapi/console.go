package testapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/thumbnailed/thumbnailed/webhook"
)

// OpenEvents is Events for code that must not fail a test itself (a
// goroutine, a load tool opening many streams): it returns the error, and
// the caller closes the stream. When the answer is not 200 the stream is
// nil and the answer is read.
func (c *Client) OpenEvents(ctx context.Context, id string, header http.Header) (*Stream, Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/v1/thumbnails/"+id+"/events", nil)
	if err != nil {
		cancel()
		return nil, Response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	client := *c.HTTP
	client.Timeout = 0 // a stream lasts; Close ends it
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, Response{}, err
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		r.Body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, r, nil
	}
	s := &Stream{Response: r, events: make(chan SSE, 64), cancel: cancel}
	go s.read(ctx, resp.Body)
	return s, r, nil
}

// ErrNoEvent is Recv's error when no event came in time.
var ErrNoEvent = errors.New("no event in time")

// Recv is the next event without failing a test: ok is false when the
// stream has ended, and err is ErrNoEvent when nothing came within timeout.
func (s *Stream) Recv(timeout time.Duration) (ev SSE, ok bool, err error) {
	select {
	case ev, ok := <-s.events:
		return ev, ok, nil
	case <-time.After(timeout):
		return SSE{}, true, ErrNoEvent
	}
}

// Rest reads every event until the server ends the stream and returns
// them; it fails t when the stream has not ended within timeout.
func (s *Stream) Rest(t testing.TB, timeout time.Duration) []SSE {
	t.Helper()
	var out []SSE
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("the event stream did not end within %s; events so far: %s", timeout, Describe(out))
			return out
		}
	}
}

// Describe lists events briefly ("8 status queued, 16 status processing,
// 25 delivery delivered"), for messages.
func Describe(events []SSE) string {
	var b bytes.Buffer
	for i, ev := range events {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s %s", ev.ID, ev.Event, Status(ev))
	}
	return b.String()
}

// Status is the status an event carries: the job's for a status event, the
// delivery's for a delivery event ("" when its data is not JSON with one).
func Status(ev SSE) string {
	var v struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(ev.Data, &v)
	return v.Status
}

// EventID is the event's id as a number (-1 when it is not one).
func EventID(ev SSE) int64 {
	n, err := strconv.ParseInt(ev.ID, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// Replay posts a callback another receiver got to this receiver, with the
// same body and the same webhook headers, as a receiver behind a relay
// would get it, and returns the status of the answer: the receiver verifies
// it with its own secrets like any callback.
func (rc *Receiver) Replay(t testing.TB, c Callback) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rc.URL+"/replayed", bytes.NewReader(c.Body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{webhook.HeaderID, webhook.HeaderTimestamp, webhook.HeaderSignature, "Content-Type"} {
		if v := c.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("replay callback %s: %v", c.ID, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Verified answers a callback 204 when its signature verified with one of
// the receiver's secrets and 401 otherwise, as a real receiver does: a
// Receiver given it as its Answer accepts only what it can verify.
func Verified(w http.ResponseWriter, c Callback) {
	if !c.Signed {
		http.Error(w, "signature does not verify", http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
