package notifier_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a client's callback endpoint: it keeps every request and
// answers with the next of its replies (the last one repeats).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []receivedRequest
	replies  []func(w http.ResponseWriter, r *http.Request)
}

type receivedRequest struct {
	header http.Header
	body   []byte
	at     time.Time
}

func newReceiver(t *testing.T, replies ...func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{replies: replies}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.requests)
		rc.requests = append(rc.requests, receivedRequest{header: r.Header.Clone(), body: body, at: time.Now()})
		reply := rc.replies[min(n, len(rc.replies)-1)]
		rc.mu.Unlock()
		reply(w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() []receivedRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedRequest(nil), rc.requests...)
}

func status(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

func TestACallbackThatFailsTwiceIsRetriedUntilAccepted(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(t, status(http.StatusServiceUnavailable), status(http.StatusInternalServerError), status(http.StatusNoContent))
	e := newEnv(t, notifier.Config{WebhookSecret: secret, CallbackSchedule: schedule("10ms,10ms,10ms"), AllowPrivateNetworks: true})
	img := testJPEG(t, 40, 30)
	callbackURL := rc.URL + "/hooks/thumbs?token=s3cret"
	job := e.createEnded(succeededJob("job-cb", "", callbackURL, 40, 30, img), img)

	is.NoErr(e.n.JobEnded(context.Background(), job))
	is.Equal(e.queued(jobs.TypeDeliverCallback), int64(1))

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.Attempts, 1)
	is.True(d.NextAttemptAt != nil)
	is.Equal(d.LastError, "the receiver answered 503 Service Unavailable")
	next := e.scheduled()
	is.Equal(len(next), 1)
	is.Equal(next[0].Name, jobs.TypeDeliverCallback)
	is.Equal(next[0].ArgString(jobs.ArgAttempt), "2")

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 2)))
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).LastError, "the receiver answered 500 Internal Server Error")
	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 3)))

	d = e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.Equal(d.Attempts, 3)
	is.Equal(d.NextAttemptAt, nil)
	is.Equal(d.Target, rc.URL+"/hooks/thumbs") // the target never shows the query

	got := rc.received()
	is.Equal(len(got), 3)
	for _, r := range got {
		// Every attempt is signed for its own timestamp and verifies with
		// the package clients use.
		is.NoErr(webhook.Verify(secret, r.header, r.body, time.Minute))
		is.Equal(r.header.Get("webhook-id"), "msg_job-cb") // the same event on every retry
		is.Equal(r.header.Get("Content-Type"), "application/json")
		is.Equal(r.header.Get("User-Agent"), notifier.UserAgent)
	}

	var event view.Event
	is.NoErr(json.Unmarshal(got[2].body, &event))
	is.Equal(event.Type, "thumbnail.succeeded")
	is.Equal(event.Timestamp, job.FinishedAt.UTC())
	is.Equal(event.Data.ID, "job-cb")
	is.Equal(event.Data.Status, "succeeded")
	is.Equal(event.Data.Result.ImageURL, "/v1/thumbnails/job-cb/image")
	is.Equal(event.Data.Result.Width, 40)
	is.Equal(event.Data.Image.ContentType, "image/jpeg")
	decoded, err := base64.StdEncoding.DecodeString(event.Data.Image.Base64)
	is.NoErr(err)
	is.True(bytes.Equal(decoded, img))
	// The payload is the public view: no secrets of the client's own URL.
	for _, r := range got {
		mustNotContain(t, string(r.body), "s3cret")
		mustNotContain(t, string(r.body), "owner")
	}
	mustNotContain(t, e.logs.String(), "s3cret")
	mustNotContain(t, e.logs.String(), "MfKQ9r8")
}

func TestACallbackOfAFailedJobSaysWhyAndCarriesNoImage(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(t, status(http.StatusOK))
	e := newEnv(t, notifier.Config{AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-cb-failed", "", rc.URL, "corrupt_image", "the image data is damaged"), nil)

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))

	got := rc.received()
	is.Equal(len(got), 1)
	is.Equal(got[0].header.Get("webhook-signature"), "") // no secret configured: unsigned
	is.True(got[0].header.Get("webhook-timestamp") != "")
	var raw map[string]any
	is.NoErr(json.Unmarshal(got[0].body, &raw))
	is.Equal(raw["type"], "thumbnail.failed")
	data := raw["data"].(map[string]any)
	is.Equal(data["error"], map[string]any{"code": "corrupt_image", "message": "the image data is damaged"})
	_, hasImage := data["image"]
	is.True(!hasImage)
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Status, jobs.DeliveryDelivered)
}

func TestA410StopsTheCallbackAtOnce(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(t, status(http.StatusGone))
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("10ms,10ms"), AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-gone", "", rc.URL, "timeout", "took too long"), nil)

	err := e.n.DeliverCallback(callbackAttempt(job.ID, 1))
	is.True(err != nil) // into the dead set
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, notifier.CodeCallbackGone)
	is.Equal(d.Attempts, 1)
	mustContain(t, d.LastError, "410 Gone")
	is.Equal(len(e.scheduled()), 0)
	is.Equal(len(rc.received()), 1)
}

func TestAReceiverThatHangsPastTheTimeoutIsRetried(t *testing.T) {
	is := is.New(t)
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	e := newEnv(t, notifier.Config{CallbackTimeout: 200 * time.Millisecond, CallbackSchedule: schedule("10ms"), AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-hang", "", rc.URL, "timeout", "took too long"), nil)

	start := time.Now()
	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	is.True(time.Since(start) < 5*time.Second) // the handler did not wait for the receiver

	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.LastError, "the receiver did not answer within 200ms")

	// And when the schedule runs out, the delivery fails with the last error.
	err := e.n.DeliverCallback(callbackAttempt(job.ID, 2))
	is.True(err != nil)
	d = e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, notifier.CodeRetriesExhausted)
	is.Equal(d.LastError, "gave up after 2 attempts; the last one failed: the receiver did not answer within 200ms")
	mustContain(t, err.Error(), "retries_exhausted")
}

func TestACallbackIsNotRedirected(t *testing.T) {
	is := is.New(t)
	elsewhere := newReceiver(t, status(http.StatusOK))
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	})
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("1m"), AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-redirect", "", rc.URL, "timeout", "took too long"), nil)

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	is.Equal(len(rc.received()), 1)
	is.Equal(len(elsewhere.received()), 0) // the signed payload went nowhere else
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	mustContain(t, d.LastError, "307 Temporary Redirect")
	mustContain(t, d.LastError, "do not follow redirects")
}

func TestACallbackToAForbiddenAddressIsNeverSent(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(t, status(http.StatusOK)) // on loopback
	_, port, _ := net.SplitHostPort(rc.Listener.Addr().String())
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("10ms,10ms")}) // production rule: no private networks

	// A loopback literal (as if the rule had changed since submit).
	literal := e.createEnded(failedJob("job-loopback", "", rc.URL+"/hook", "timeout", "took too long"), nil)
	err := e.n.DeliverCallback(callbackAttempt(literal.ID, 1))
	is.True(err != nil)
	d := e.delivery(literal.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, notifier.CodeCallbackForbidden)
	is.Equal(d.Attempts, 1)

	// A public-looking name whose DNS now answers with a loopback address:
	// refused when the connection is made.
	e.client = safehttp.New(safehttp.Options{Resolver: fixedResolver{"hooks.example.com": "127.0.0.1"}})
	e.start(notifier.Config{CallbackSchedule: schedule("10ms,10ms")})
	rebound := e.createEnded(failedJob("job-rebound", "", "http://hooks.example.com:"+port+"/hook?token=s3cret", "timeout", "took too long"), nil)
	err = e.n.DeliverCallback(callbackAttempt(rebound.ID, 1))
	is.True(err != nil)
	d = e.delivery(rebound.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, notifier.CodeCallbackForbidden)
	mustContain(t, d.LastError, "127.0.0.1")
	mustNotContain(t, d.LastError, "s3cret")

	is.Equal(len(rc.received()), 0) // no request ever reached the receiver
	is.Equal(len(e.scheduled()), 0)
}

type fixedResolver map[string]string

func (r fixedResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if ip, ok := r[host]; ok {
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestRetryAfterIsHonouredUpToTheScheduledGap(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"sooner than the schedule", "120", 2 * time.Minute},
		{"later than the schedule", "7200", 10 * time.Minute},
		{"as an HTTP date", time.Now().Add(3 * time.Minute).UTC().Format(http.TimeFormat), 3 * time.Minute},
		{"zero", "0", time.Second},
		{"garbage", "soon", 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", tc.retryAfter)
				w.WriteHeader(http.StatusTooManyRequests)
			})
			e := newEnv(t, notifier.Config{CallbackSchedule: schedule("10m"), AllowPrivateNetworks: true})
			job := e.createEnded(failedJob("job-ra", "", rc.URL, "timeout", "took too long"), nil)

			is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
			d := e.delivery(job.ID, jobs.ChannelCallback)
			wait := d.NextAttemptAt.Sub(*d.LastAttemptAt)
			is.True(wait > tc.want-2*time.Second && wait < tc.want+2*time.Second) // within the HTTP date's second
			is.Equal(d.LastError, "the receiver answered 429 Too Many Requests")
		})
	}
}

func TestAnUnreachableReceiverIsRetried(t *testing.T) {
	is := is.New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	addr := l.Addr().String()
	l.Close()
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("10ms"), AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-refused", "", "http://"+addr+"/hook?token=s3cret", "timeout", "took too long"), nil)

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	mustContain(t, d.LastError, "could not reach the receiver")
	mustContain(t, d.LastError, "connection refused")
	mustNotContain(t, d.LastError, "s3cret") // not the URL that *url.Error quotes
	is.True(!strings.Contains(e.logs.String(), "s3cret"))
}
