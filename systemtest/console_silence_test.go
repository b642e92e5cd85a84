package systemtest

import (
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// Debug log lines of the pub/sub subscriptions going down.
const (
	msgWakeLost   = "wake-up subscription lost; resubscribing"   // worker
	msgEventsLost = "event subscription lost; subscribing again" // api
)

// The pub/sub subscriptions (the workers' wake-ups, the api's job events)
// must outlive silence: on an idle service a job submitted after 15 s or
// more without any message is picked up at once (the wake-up) and its
// events reach an open stream at once.
//
// (Found by TestMeasureOpenStreams: the first job after a long idle took
// 1.2-2.4 s instead of ~10 ms. jobs.Store.Subscribe read with a 15 s
// timeout and meant to PING on it, but a redigo read that times out
// closes the connection: every 15 s of silence the subscription broke and
// was re-made a second later, and a wake-up or event published in between
// was lost. The job then waited for gocraft/work's poll.)
func TestSubscriptionsOutliveSilence(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r := startRedis(t)
	env := serviceEnv(t, r, namespace())
	env["THUMBNAILED_API_KEYS"] = apiKey
	env["THUMBNAILED_LOG_LEVEL"] = "debug"
	api := startProcess(t, "api", "api", env)
	w := startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	client := api.API().WithKey(apiKey)
	image := readTestdata(t, "go-video-001.jpeg")
	fields := map[string]string{"width": "16"}

	resp := client.Upload(t, image, fields, nil) // the last message for a while
	is.Equal(resp.Status, http.StatusAccepted)
	client.WaitEnded(t, resp.Job(t).ID, 20*time.Second)
	quietFrom := time.Now()

	// Silence: past the 15 s after which the subscription used to break;
	// the submit goes the moment it does (into the gap before it is
	// re-made), or at 16.5 s when it does not.
	testapi.Eventually(16500*time.Millisecond, func() bool { return w.count(msgWakeLost) > 0 })
	silence := time.Since(quietFrom)
	submitted := time.Now()
	resp = client.Upload(t, image, fields, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	id := resp.Job(t).ID
	s, open := client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	var learned time.Duration
	for _, ev := range s.Rest(t, 20*time.Second) {
		if ev.Event == "status" && testapi.Status(ev) == "succeeded" {
			learned = time.Since(submitted)
		}
	}
	var started time.Time
	for _, l := range w.Lines() {
		if l.str("job_id") == id && l.str("msg") == "job started" {
			started, _ = time.Parse(time.RFC3339Nano, l.str("time"))
		}
	}
	pickup := started.Sub(submitted)
	t.Logf("after %s of silence (worker: %d wake-up subscription losses, api: %d event subscription losses): picked up %s after the submit, succeeded event %s after it",
		silence.Round(time.Millisecond), w.count(msgWakeLost), api.count(msgEventsLost), pickup.Round(time.Millisecond), learned.Round(time.Millisecond))
	is.True(!started.IsZero())
	is.True(pickup < 500*time.Millisecond)        // the wake-up reached the worker (its poll takes a second or more)
	is.True(learned > 0 && learned < time.Second) // the events reached the stream
	is.Equal(w.count(msgWakeLost), 0)             // the subscriptions did not break in the silence
	is.Equal(api.count(msgEventsLost), 0)
}
