package notifier_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
)

// Issue 15 item 5: every attempt appends an entry to the delivery's log:
// its time, duration, outcome, the HTTP status, the error, and the first
// bytes of the receiver's answer with anything secret-looking left out.
func TestEveryAttemptIsLoggedWithTheReceiversAnswer(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("1m")})
	rc := testapi.NewReceiver(t)
	var n int
	rc.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) {
		n++
		e.clock.Advance(150 * time.Millisecond) // the receiver takes its time
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"down for maintenance","api_key":"sk_live_0123456789"}`)
			return
		}
		fmt.Fprint(w, "thanks")
	})
	job := e.failedJob("job-log", "", rc.URL, "timeout", "took too long")

	start := e.clock.Now()
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	e.untilDue()
	second := e.clock.Now()
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 2))

	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Log, []jobs.LogEntry{
		{Attempt: 1, At: start, DurationMS: 150, Outcome: jobs.OutcomeRetry, StatusCode: 503,
			Error:    "the receiver answered 503 Service Unavailable",
			Response: `{"error":"down for maintenance","api_key":"[redacted]"}`},
		{Attempt: 2, At: second, DurationMS: 150, Outcome: jobs.OutcomeDelivered, StatusCode: 200, Response: "thanks"},
	})
}

// The log keeps the last 20 attempts, oldest first; the last entry of a
// delivery that gave up says so.
func TestTheLogKeepsTheLastTwentyAttempts(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule(strings.Repeat("1s,", 23) + "1s")}) // 25 attempts
	rc := testapi.NewReceiver(t)
	var n int
	rc.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) {
		n++
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "failure number %d; %s", n, strings.Repeat("more text ", 40))
	})
	job := e.failedJob("job-log-20", "", rc.URL, "timeout", "took too long")

	for attempt := 1; attempt <= 25; attempt++ {
		if attempt > 1 {
			is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: attempt}})
		}
		_ = e.deliver(jobs.ChannelCallback, job.ID, attempt)
	}
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.Attempts, 25)
	is.Equal(len(d.Log), jobs.MaxLog)
	for i, entry := range d.Log {
		is.Equal(entry.Attempt, 6+i) // the oldest five are gone
		is.Equal(entry.StatusCode, 500)
		is.True(strings.HasPrefix(entry.Response, fmt.Sprintf("failure number %d; more text", 6+i)))
		is.Equal(len(entry.Response), 256) // the first 256 bytes
		if i < len(d.Log)-1 {
			is.Equal(entry.Outcome, jobs.OutcomeRetry)
			is.Equal(d.Log[i+1].At.Sub(entry.At), time.Second)
		}
	}
	last := d.Log[len(d.Log)-1]
	is.Equal(last.Outcome, jobs.OutcomeFailed)
	is.Equal(last.Error, "gave up after 25 attempts; the last one failed: the receiver answered 500 Internal Server Error")
	is.Equal(last.Error, d.LastError)
}
