package systemtest

import (
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// Issue 15: GET /v1/thumbnails/{id}/events through the real binary, the
// api and the worker in separate processes (the stream follows the job
// through Redis pub/sub). A client that opens the stream right after the
// submit sees queued -> processing -> succeeded and then the callback's
// delivery event with status delivered, in that order, with growing ids,
// and the stream ends. A second client hangs up while the job is queued
// and comes back with Last-Event-ID while it is processing: it gets the
// current status at once, then the rest. The 11th stream of one key is 429.
func TestEventsFollowAJobAcrossProcesses(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r := startRedis(t)
	env := serviceEnv(t, r, namespace())
	env["THUMBNAILED_API_KEYS"] = apiKey
	rcv := testapi.NewReceiver(t, webhookSecret)
	src := newGateSource(t, readTestdata(t, "go-video-001.jpeg"))
	source, arrived, release := src.Gate(t)
	api := startProcess(t, "api", "api", env)
	client := api.API().WithKey(apiKey)

	resp := client.Submit(t, map[string]any{"url": source, "width": 16, "callback_url": rcv.URL + "/hook"}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	id := resp.Job(t).ID
	first, open := client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	is.Equal(open.Header.Get("Content-Type"), "text/event-stream")
	is.Equal(open.Header.Get("Cache-Control"), "no-store")
	var seen1 []testapi.SSE
	ev := first.Next(t, 5*time.Second)
	seen1 = append(seen1, ev)
	is.Equal(ev.Job(t).Status, "queued") // the current status on connect
	is.Equal(ev.Job(t).ID, id)

	second, open := client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	ev = second.Next(t, 5*time.Second)
	seen2 := []testapi.SSE{ev}
	is.Equal(ev.Job(t).Status, "queued")

	// The per-key limit: 10 streams, the 11th is 429.
	var extra []*testapi.Stream
	for range 8 {
		s, open := client.Events(t, id, nil)
		is.Equal(open.Status, http.StatusOK)
		extra = append(extra, s)
	}
	s, refused := client.Events(t, id, nil)
	is.True(s == nil)
	is.Equal(refused.Status, http.StatusTooManyRequests)
	is.Equal(refused.Problem(t).Code, "too_many_streams")
	is.True(refused.Header.Get("Retry-After") != "")
	for _, s := range extra {
		s.Close()
	}

	second.Close() // the second client hangs up while the job is queued
	lastID := ev.ID

	w := startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	awaitHeld(t, arrived, "the source request") // the job is processing, held in its fetch
	ev = first.Next(t, 10*time.Second)
	seen1 = append(seen1, ev)
	is.Equal(ev.Job(t).Status, "processing")

	// Back with Last-Event-ID: the current status at once. (The hung-up
	// streams are counted off once the api has seen them close.)
	var again *testapi.Stream
	var reconnected time.Time
	is.True(testapi.Eventually(5*time.Second, func() bool {
		var open testapi.Response
		reconnected = time.Now()
		again, open = client.Events(t, id, http.Header{"Last-Event-ID": {lastID}})
		return open.Status == http.StatusOK
	}))
	ev = again.Next(t, 2*time.Second)
	atOnce := time.Since(reconnected)
	seen2 = append(seen2, ev)
	is.Equal(ev.Job(t).Status, "processing") // the current status, not a replay
	last, _ := strconv.ParseInt(lastID, 10, 64)
	is.True(testapi.EventID(ev) > last) // and its id follows the last one the client saw

	release() // the source answers: the job succeeds and its callback goes
	seen1 = append(seen1, first.Rest(t, 20*time.Second)...)
	seen2 = append(seen2, again.Rest(t, 20*time.Second)...)
	t.Logf("first client: %s", testapi.Describe(seen1))
	t.Logf("second client: %s (current status %s after the reconnect)", testapi.Describe(seen2), atOnce.Round(time.Millisecond))

	for _, c := range []struct {
		name   string
		events []testapi.SSE
		want   []string
	}{
		{"first", seen1, []string{"queued", "processing", "succeeded"}},
		{"second", seen2, []string{"queued", "processing", "succeeded"}},
	} {
		increasing(t, 0, c.events)
		if got := statuses(c.events); !slices.Equal(got, c.want) {
			t.Errorf("%s client: statuses %v, want %v", c.name, got, c.want)
		}
		// The last event is the callback's delivery, delivered, after the
		// job succeeded; the stream then ended (Rest).
		end := c.events[len(c.events)-1]
		if end.Event != "delivery" {
			t.Fatalf("%s client: the last event is %s %s, not the delivery", c.name, end.Event, end.ID)
		}
		d := end.Delivery(t)
		is.Equal(d.Channel, "callback")
		is.Equal(d.Status, "delivered")
		is.Equal(d.Attempts, 1)
		is.Equal(len(d.Log), 1) // the delivery event carries its log
		is.Equal(d.Log[0].Outcome, "delivered")
		is.Equal(d.Log[0].StatusCode, http.StatusNoContent)
		succeededAt := -1
		for i, ev := range c.events {
			if ev.Event == "status" && testapi.Status(ev) == "succeeded" && succeededAt < 0 {
				succeededAt = i
			}
			if ev.Event == "delivery" && testapi.Status(ev) == "delivered" && (succeededAt < 0 || i < succeededAt) {
				t.Errorf("%s client: delivered before succeeded: %s", c.name, testapi.Describe(c.events))
			}
		}
	}
	is.Equal(len(rcv.For(id)), 1)
	is.True(w.Said(id, "job succeeded"))
	// After the end a new stream gets the final status and ends at once.
	s, open = client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	final := s.Rest(t, 5*time.Second)
	is.Equal(len(final), 1)
	is.Equal(final[0].Job(t).Status, "succeeded")
}
