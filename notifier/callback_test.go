package notifier_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestACallbackThatFailsTwiceIsRetriedUntilAccepted(t *testing.T) {
	is := is.New(t)
	rc := receiverAnswering(t, []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusNoContent}, secret)
	e := newEnv(t, notifier.Config{WebhookSecret: secret, CallbackSchedule: schedule("10ms,10ms,10ms"), InlineMaxBytes: 1 << 20})
	img := testJPEG(t, 40, 30)
	callbackURL := rc.URL + "/hooks/thumbs?token=s3cret"
	job := e.succeededJob("job-cb", "", callbackURL, 40, 30, img)

	// The job's end queued the first attempt at once.
	is.Equal(e.queuedDeliveries(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 1}})

	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.Attempts, 1)
	is.True(d.NextAttemptAt != nil)
	is.Equal(d.LastError, "the receiver answered 503 Service Unavailable")
	is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 2}}) // 10 ms later

	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 2))
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).LastError, "the receiver answered 500 Internal Server Error")
	is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 3}})
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 3))

	final := e.get(job.ID)
	d = *final.Delivery(jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.Equal(d.Attempts, 3)
	is.Equal(d.NextAttemptAt, nil)
	is.Equal(view.Delivery(final, d).Target, rc.URL+"/hooks/thumbs") // the target never shows the query
	is.True(e.nextDue().IsZero())                                    // nothing more is scheduled

	got := rc.All()
	is.Equal(len(got), 3)
	for _, c := range got {
		// Every attempt is signed for its own timestamp and verifies with
		// the package clients use.
		is.True(c.Signed)
		is.NoErr(webhook.Verify(secret, c.Header, c.Body, time.Minute))
		is.Equal(c.ID, "msg_job-cb") // the same event on every retry
		is.Equal(c.Header.Get("Content-Type"), "application/json")
		is.Equal(c.Header.Get("User-Agent"), notifier.UserAgent)
	}

	var event view.Event
	is.NoErr(json.Unmarshal(got[2].Body, &event))
	is.Equal(event.Type, "thumbnail.succeeded")
	is.Equal(event.Timestamp, job.FinishedAt.UTC())
	is.Equal(event.Data.ID, "job-cb")
	is.Equal(event.Data.Status, "succeeded")
	verifyLink(t, e.links, job, jobs.DefaultOutput, event.Data.Result.ImageURL) // a signed link, not an API path
	is.Equal(event.Data.Result.Width, 40)
	is.Equal(event.Data.Image.ContentType, "image/jpeg")
	is.Equal(event.Data.Image.URL, event.Data.Result.ImageURL)
	decoded, err := base64.StdEncoding.DecodeString(event.Data.Image.Base64)
	is.NoErr(err)
	is.True(bytes.Equal(decoded, img))
	// The payload is the public view: no secrets of the client's own URL.
	for _, c := range got {
		mustNotContain(t, string(c.Body), "s3cret")
		mustNotContain(t, string(c.Body), "owner")
	}
	mustNotContain(t, e.logs.String(), "s3cret")
	mustNotContain(t, e.logs.String(), "MfKQ9r8")
}

func TestACallbackOfAFailedJobSaysWhyAndCarriesNoImage(t *testing.T) {
	is := is.New(t)
	rc := receiverAnswering(t, []int{http.StatusOK})
	e := newEnv(t, notifier.Config{InlineMaxBytes: 1 << 20})
	job := e.failedJob("job-cb-failed", "", rc.URL, "corrupt_image", "the image data is damaged")

	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))

	got := rc.All()
	is.Equal(len(got), 1)
	is.Equal(got[0].Header.Get("webhook-signature"), "") // no secret configured: unsigned
	is.True(got[0].Header.Get("webhook-timestamp") != "")
	var raw map[string]any
	is.NoErr(json.Unmarshal(got[0].Body, &raw))
	is.Equal(raw["type"], "thumbnail.failed")
	data := raw["data"].(map[string]any)
	is.Equal(data["error"], map[string]any{"code": "corrupt_image", "message": "the image data is damaged"})
	_, hasImage := data["image"]
	is.True(!hasImage)
	_, hasResult := data["result"]
	is.True(!hasResult)
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Status, jobs.DeliveryDelivered)
}

func TestA410StopsTheCallbackAtOnce(t *testing.T) {
	is := is.New(t)
	rc := receiverAnswering(t, []int{http.StatusGone})
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("10ms,10ms")})
	job := e.failedJob("job-gone", "", rc.URL, "timeout", "took too long")

	err := e.deliver(jobs.ChannelCallback, job.ID, 1)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed)) // the worker sends it to the dead set
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.CallbackGone)
	is.Equal(d.Attempts, 1)
	mustContain(t, d.LastError, "410 Gone")
	is.True(e.nextDue().IsZero())
	is.Equal(e.queuedDeliveries(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 1}}) // only the first, ever
	is.Equal(len(rc.All()), 1)
}

func TestAReceiverThatHangsPastTheTimeoutIsRetried(t *testing.T) {
	is := is.New(t)
	release := make(chan struct{})
	rc := testapi.NewReceiver(t)
	rc.SetAnswer(func(http.ResponseWriter, testapi.Callback) { <-release })
	defer close(release) // before the receiver closes, which waits for its handlers
	e := newEnv(t, notifier.Config{CallbackTimeout: 200 * time.Millisecond, CallbackSchedule: schedule("10ms")})
	job := e.failedJob("job-hang", "", rc.URL, "timeout", "took too long")

	start := time.Now()
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	is.True(time.Since(start) < 5*time.Second) // the attempt did not wait for the receiver

	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.LastError, "the receiver did not answer within 200ms")

	// And when the schedule runs out, the delivery fails with the last error.
	is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 2}})
	err := e.deliver(jobs.ChannelCallback, job.ID, 2)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed))
	d = e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.RetriesExhausted)
	is.Equal(d.LastError, "gave up after 2 attempts; the last one failed: the receiver did not answer within 200ms")
	mustContain(t, err.Error(), "retries_exhausted")
}

func TestACallbackIsNotRedirected(t *testing.T) {
	is := is.New(t)
	elsewhere := testapi.NewReceiver(t)
	rc := testapi.NewReceiver(t)
	rc.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) {
		w.Header().Set("Location", elsewhere.URL+"/steal")
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("1m")})
	job := e.failedJob("job-redirect", "", rc.URL, "timeout", "took too long")

	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	is.Equal(len(rc.All()), 1)
	is.Equal(len(elsewhere.All()), 0) // the signed payload went nowhere else
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	mustContain(t, d.LastError, "307 Temporary Redirect")
	mustContain(t, d.LastError, "do not follow redirects")
}

func TestACallbackToAForbiddenAddressIsNeverSent(t *testing.T) {
	is := is.New(t)
	rc := testapi.NewReceiver(t) // on loopback
	_, port, _ := net.SplitHostPort(rc.Listener.Addr().String())
	e := newEnv(t, notifier.Config{})
	e.client = safehttp.New(safehttp.Options{}) // the production rule: no private networks
	e.start(notifier.Config{CallbackSchedule: schedule("10ms,10ms")})

	// A loopback literal (as if the rule had changed since submit).
	literal := e.failedJob("job-loopback", "", rc.URL+"/hook", "timeout", "took too long")
	err := e.deliver(jobs.ChannelCallback, literal.ID, 1)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed))
	d := e.delivery(literal.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.CallbackForbidden)
	is.Equal(d.Attempts, 1)

	// A public-looking name whose DNS now answers with a loopback address:
	// refused when the connection is made.
	e.client = safehttp.New(safehttp.Options{Resolver: fixedResolver{"hooks.example.com": "127.0.0.1"}})
	e.start(notifier.Config{CallbackSchedule: schedule("10ms,10ms")})
	rebound := e.failedJob("job-rebound", "", "http://hooks.example.com:"+port+"/hook?token=s3cret", "timeout", "took too long")
	err = e.deliver(jobs.ChannelCallback, rebound.ID, 1)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed))
	d = e.delivery(rebound.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.CallbackForbidden)
	mustContain(t, d.LastError, "127.0.0.1")
	mustNotContain(t, d.LastError, "s3cret")

	is.Equal(len(rc.All()), 0) // no request ever reached the receiver
	is.True(e.nextDue().IsZero())
}

type fixedResolver map[string]string

func (r fixedResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if ip, ok := r[host]; ok {
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// Issue 13 item 8: Retry-After used to be honoured only up to the
// schedule's gap and "Retry-After: 0" brought attempts forward (all 8 in
// 34 s). Now it can only postpone an attempt, up to 24 h; it never brings
// one earlier than the schedule.
func TestRetryAfterOnlyPostponesTheNextAttempt(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter func(now time.Time) string
		want       time.Duration
	}{
		{"sooner than the schedule", fixed("120"), 10 * time.Minute},
		{"zero", fixed("0"), 10 * time.Minute},
		{"later than the schedule", fixed("7200"), 2 * time.Hour},
		{"as an HTTP date", func(now time.Time) string { return now.Add(3 * time.Hour).Format(http.TimeFormat) }, 3 * time.Hour},
		{"an HTTP date in the past", func(now time.Time) string { return now.Add(-time.Hour).Format(http.TimeFormat) }, 10 * time.Minute},
		{"past the 24 h cap", fixed("259200"), 24 * time.Hour},
		{"garbage", fixed("soon"), 10 * time.Minute},
		{"negative", fixed("-5"), 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			e := newEnv(t, notifier.Config{CallbackSchedule: schedule("10m,10m")})
			rc := testapi.NewReceiver(t)
			rc.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) {
				w.Header().Set("Retry-After", tc.retryAfter(e.clock.Now()))
				w.WriteHeader(http.StatusTooManyRequests)
			})
			job := e.failedJob("job-ra", "", rc.URL, "timeout", "took too long")

			is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
			d := e.delivery(job.ID, jobs.ChannelCallback)
			is.Equal(d.LastError, "the receiver answered 429 Too Many Requests")
			wait := d.NextAttemptAt.Sub(*d.LastAttemptAt)
			is.True(wait > tc.want-time.Second && wait <= tc.want) // an HTTP date counts whole seconds
			// The attempt is queued at that time, not a millisecond earlier.
			is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 2}})
			is.Equal(e.clock.Now(), *d.NextAttemptAt)
		})
	}
}

func fixed(v string) func(time.Time) string { return func(time.Time) string { return v } }

// The reproduction: a receiver answering "Retry-After: 0" to every
// attempt meets each one at the schedule's time, and the delivery gives up
// only when the schedule has run out.
func TestRetryAfterZeroKeepsTheSchedule(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("2s,4s,1h")})
	rc := testapi.NewReceiver(t)
	rc.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	job := e.failedJob("job-ra0", "", rc.URL, "timeout", "took too long")
	first := e.clock.Now()

	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	for _, step := range []struct {
		attempt int
		at      time.Duration // since the first attempt
	}{{2, 2 * time.Second}, {3, 6 * time.Second}, {4, time.Hour + 6*time.Second}} {
		is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: step.attempt}})
		is.Equal(e.clock.Now().Sub(first), step.at)
		err := e.deliver(jobs.ChannelCallback, job.ID, step.attempt)
		if step.attempt < 4 {
			is.NoErr(err)
		} else {
			is.True(errors.Is(err, jobs.ErrDeliveryFailed))
		}
	}
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.RetriesExhausted)
	is.Equal(len(rc.All()), 4)
	var at []time.Duration
	for _, entry := range d.Log {
		at = append(at, entry.At.Sub(first))
	}
	is.Equal(at, []time.Duration{0, 2 * time.Second, 6 * time.Second, time.Hour + 6*time.Second})
}

func TestAnUnreachableReceiverIsRetried(t *testing.T) {
	is := is.New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	addr := l.Addr().String()
	l.Close()
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("10ms")})
	job := e.failedJob("job-refused", "", "http://"+addr+"/hook?token=s3cret", "timeout", "took too long")

	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	mustContain(t, d.LastError, "could not reach the receiver")
	mustContain(t, d.LastError, "connection refused")
	mustNotContain(t, d.LastError, "s3cret") // not the URL that *url.Error quotes
	is.True(!strings.Contains(e.logs.String(), "s3cret"))
	is.Equal(d.Log[0].StatusCode, 0) // no answer, no status
	is.Equal(d.Log[0].Error, d.LastError)
}
