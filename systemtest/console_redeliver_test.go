package systemtest

import (
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// Issue 15: redeliver after retries_exhausted, through the real binary. A
// receiver answers 500 until the callback fails for good (three attempts:
// THUMBNAILED_CALLBACK_RETRY_SCHEDULE=100ms,100ms); each redelivery while
// it is still down is a new series of three, and the attempts go on
// counting; once the receiver is fixed, a redelivery arrives with the same
// webhook-id, a valid signature and the same body bytes as every attempt
// before it, and the log holds the last 20 attempts, oldest first.
func TestRedeliverAfterRetriesExhausted(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r := startRedis(t)
	env := serviceEnv(t, r, namespace())
	env["THUMBNAILED_API_KEYS"] = apiKey
	env["THUMBNAILED_CALLBACK_RETRY_SCHEDULE"] = "100ms,100ms"
	rcv := testapi.NewReceiver(t, webhookSecret)
	down := func(w http.ResponseWriter, _ testapi.Callback) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("receiver down for maintenance"))
	}
	rcv.SetAnswer(down)
	svc := startProcess(t, "all", "all", env)
	client := svc.API().WithKey(apiKey)

	resp := client.Upload(t, readTestdata(t, "go-video-001.jpeg"), map[string]string{"width": "16", "callback_url": rcv.URL + "/hook"}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	id := resp.Job(t).ID
	failedAfter := func(attempts int) testapi.Delivery {
		t.Helper()
		job := client.WaitFor(t, id, 20*time.Second, "callback failed after the series", func(j testapi.Job) bool {
			return len(j.Deliveries) == 1 && j.Deliveries[0].Status == "failed" && j.Deliveries[0].Attempts == attempts
		})
		d := job.Deliveries[0]
		is.Equal(d.ErrorCode, "retries_exhausted")
		return d
	}
	d := failedAfter(3)
	is.Equal(len(rcv.For(id)), 3)

	// Not a channel of this job, or no channel at all: 404.
	is.Equal(client.Redeliver(t, id, "email").Status, http.StatusNotFound)
	is.Equal(client.Redeliver(t, id, "sms").Status, http.StatusNotFound)

	// Redelivered while still down: each a new series of three attempts.
	for series := 2; d.Attempts < 21; series++ {
		resp := client.Redeliver(t, id, "callback")
		is.Equal(resp.Status, http.StatusAccepted)
		after := resp.Job(t).Deliveries[0]
		is.Equal(after.Status, "pending")    // a new series has begun
		is.Equal(after.Attempts, d.Attempts) // the count is not reset
		is.Equal(after.ErrorCode, "")        // nor is it failed any more
		if series == 2 {                     // while the series runs (200 ms at least):
			again := client.Redeliver(t, id, "callback")
			is.Equal(again.Status, http.StatusConflict) // 409
			is.Equal(again.Problem(t).Code, "delivery_pending")
		}
		d = failedAfter(d.Attempts + 3)
	}
	is.Equal(d.Attempts, 21)

	// The receiver is fixed: redeliver once more.
	rcv.SetAnswer(nil) // 204
	resp = client.Redeliver(t, id, "callback")
	is.Equal(resp.Status, http.StatusAccepted)
	job := client.WaitDelivered(t, id, 20*time.Second)
	d = job.Deliveries[0]
	is.Equal(d.Status, "delivered")
	is.Equal(d.Attempts, 22)
	is.Equal(d.ErrorCode, "")
	is.Equal(len(d.Log), 20) // the last 20 attempts, oldest first: 3..22
	for i, e := range d.Log {
		attempt := 3 + i
		if e.Attempt != attempt {
			t.Fatalf("log entry %d is attempt %d, want %d: %+v", i, e.Attempt, attempt, d.Log)
		}
		switch {
		case attempt == 22:
			is.Equal(e.Outcome, "delivered")
			is.Equal(e.StatusCode, http.StatusNoContent)
		case attempt%3 == 0: // the last of a series
			is.Equal(e.Outcome, "failed")
			is.Equal(e.StatusCode, http.StatusInternalServerError)
			is.Equal(e.Response, "receiver down for maintenance")
		default:
			is.Equal(e.Outcome, "retry")
			is.Equal(e.StatusCode, http.StatusInternalServerError)
		}
		if i > 0 && e.At.Before(d.Log[i-1].At) {
			t.Errorf("log entry %d at %s is before entry %d at %s", i, e.At, i-1, d.Log[i-1].At)
		}
	}

	// Every attempt, the redelivered one too: same webhook-id, signed
	// (with its own timestamp), same bytes.
	cbs := rcv.For(id)
	is.Equal(len(cbs), 22)
	sameEvent(t, id, cbs)
	is.True(cbs[21].Header.Get("webhook-timestamp") != "")
	t.Logf("22 attempts in 8 series; first callback at %s, the redelivered one at %s",
		cbs[0].Received.Format(time.TimeOnly), cbs[21].Received.Format(time.TimeOnly))
}
