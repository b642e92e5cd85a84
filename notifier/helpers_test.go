package notifier_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testclock"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
)

// ttl is how long the test jobs are kept.
const ttl = time.Hour

// testLinks signs the test jobs' links.
var testLinks = view.Links{Base: "https://thumbs.example.com", Secret: []byte("a link secret of 32 bytes, ok!!!")}

// testQueue writes work as JSON on one list, so a test can read what was
// queued without knowing the worker's queue format.
type testQueue struct{ list string }

func (q testQueue) Entry(w jobs.Work) jobs.Push {
	b, _ := json.Marshal(w)
	return jobs.Push{List: q.list, Payload: string(b)}
}

// env is one test's world: Redis, the store, the blob store and a notifier,
// all on one clock.
type env struct {
	t       *testing.T
	pool    *redis.Pool
	ns      string
	queue   testQueue
	clock   *testclock.Clock
	now     func() time.Time // the clock's Now, or time.Now
	store   *jobs.Store
	blobs   blob.Store
	client  *safehttp.Client
	secrets notifier.Secrets
	links   view.Links
	logs    *testlog.Buffer
	n       *notifier.Notifier
}

// newEnv makes the world with cfg, filled in with the configuration's
// defaults where a test leaves a field out (config.Load hands the notifier
// a complete Config; the notifier defaults nothing but the SMTP timeout).
// Callbacks may reach loopback receivers; blobs are in the job Redis.
func newEnv(t *testing.T, cfg notifier.Config) *env {
	t.Helper()
	return newEnvWith(t, testredis.New(t), world{}, cfg) // THUMBNAILED_TEST_REDIS_URL, or an in-process miniredis
}

// newMailEnv is newEnv mailing through a new SMTP sink, which answers each
// recipient with reply (nil accepts them all).
func newMailEnv(t *testing.T, reply func(rcpt string) error, cfg notifier.Config) (*testsmtp.Server, *env) {
	t.Helper()
	sink := testsmtp.New(t)
	sink.SetReply(reply)
	cfg.SMTP = smtpConfig(t, sink)
	return sink, newEnv(t, cfg)
}

// world is what a test may choose of its env.
type world struct {
	blobs blob.Store    // nil: the Redis blob store
	queue jobs.Queue    // nil: a testQueue
	lease time.Duration // of delivery attempts; 0: 30 s
	// realTime runs the store and the notifier on time.Now (a real worker
	// moves due work by the real time).
	realTime bool
}

func newEnvWith(t *testing.T, r *testredis.Redis, w world, cfg notifier.Config) *env {
	t.Helper()
	e := &env{t: t, pool: r.Pool, ns: r.Namespace, clock: testclock.New(), blobs: w.blobs,
		links: testLinks, logs: &testlog.Buffer{}}
	if e.blobs == nil {
		blobs, err := blob.Open("", nil, r.Pool, r.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		e.blobs = blobs
	}
	e.queue = testQueue{list: r.Namespace + ":test-queue"}
	queue := w.queue
	if queue == nil {
		queue = e.queue
	}
	if w.lease == 0 {
		w.lease = 30 * time.Second
	}
	e.now = e.clock.Now
	if w.realTime {
		e.now = time.Now
	}
	e.store = jobs.NewStore(r.Pool, jobs.Options{Namespace: r.Namespace, TTL: ttl, Lease: w.lease, Queue: queue, Clock: e.now})
	if testredis.Real() {
		t.Cleanup(func() { dropNamespace(t, r) }) // before the pool closes
	}
	e.client = safehttp.New(safehttp.Options{AllowPrivate: true})
	e.start(cfg)
	return e
}

// dropNamespace deletes the test's keys from a shared real Redis (the
// queue and the due set do not expire on their own).
func dropNamespace(t *testing.T, r *testredis.Redis) {
	conn := r.Pool.Get()
	defer conn.Close()
	keys, err := redis.Strings(conn.Do("KEYS", r.Namespace+":*"))
	if err != nil {
		t.Logf("could not list the test's keys: %v", err)
		return
	}
	for _, k := range keys {
		_, _ = conn.Do("DEL", k)
	}
}

// start (re)makes the notifier with cfg on the same Redis, blob store and clock.
func (e *env) start(cfg notifier.Config) {
	e.t.Helper()
	if cfg.OutboxDir == "" && cfg.SMTP == nil {
		cfg.OutboxDir = e.t.TempDir()
	}
	if cfg.MailFrom == "" {
		cfg.MailFrom = config.DefaultMailFrom
	}
	if cfg.CallbackTimeout == 0 {
		cfg.CallbackTimeout = config.DefaultCallbackTimeout
	}
	if cfg.CallbackSchedule == nil {
		cfg.CallbackSchedule = schedule(config.DefaultCallbackSchedule)
	}
	if cfg.EmailSchedule == nil {
		cfg.EmailSchedule = schedule(config.DefaultEmailSchedule)
	}
	if cfg.EmailPerRecipientPerHour == 0 {
		cfg.EmailPerRecipientPerHour = config.DefaultEmailPerRecipientHour
	}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, e.t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := notifier.New(logger, cfg, e.store, e.blobs, e.client, e.secrets, e.links, nil)
	if err != nil {
		e.t.Fatalf("notifier.New: %v", err)
	}
	n.SetClock(e.now)
	e.n = n
}

// output is one image of a succeeded test job.
type output struct {
	name, format  string
	width, height int
	data          []byte
}

// jobSpec is a test job: succeeded with its outputs, or failed with code
// and message when it has none.
type jobSpec struct {
	id, keyName   string
	email, hook   string
	source        string // jobs.SourceURL (default) or jobs.SourceUpload
	outputs       []output
	code, message string
	// direct: the channels whose first attempt the ending claims for the
	// caller, as a worker does for a callback (DeliverFirst sends it).
	direct []string
}

// end submits the job the way the API does (jobs.New, Submit) and ends it
// the way a worker does: its images in the blob store, then Succeed, or
// Fail. Ending queues the first attempt of every delivery.
func (e *env) end(s jobSpec) *jobs.Job {
	e.t.Helper()
	ctx := context.Background()
	req := jobs.Request{Source: jobs.SourceURL, URL: "https://example.com/photos/cat.jpg?X-Amz-Signature=abc",
		Width: 64, Fit: "contain", Format: "jpeg", Quality: 80, Email: s.email, CallbackURL: s.hook}
	if s.source == jobs.SourceUpload {
		req.Source, req.URL = jobs.SourceUpload, ""
	}
	for _, o := range s.outputs {
		req.Outputs = append(req.Outputs, jobs.Output{Name: o.name, Width: o.width, Fit: "contain", Gravity: "center", Format: o.format, Quality: 80})
	}
	if len(req.Outputs) == 0 {
		req.Outputs = []jobs.Output{{Name: jobs.DefaultOutput, Width: 64, Fit: "contain", Gravity: "center", Format: "jpeg", Quality: 80}}
	}
	job := jobs.New(s.id, jobs.Owner{KeyName: s.keyName}, req, e.now(), ttl)
	if _, created, err := e.store.Submit(ctx, job, nil); err != nil || !created {
		e.t.Fatalf("submit %q: created %v, %v", s.id, created, err)
	}
	e.clock.Advance(time.Second) // the run takes a while
	var ended *jobs.Job
	var err error
	if len(s.outputs) > 0 {
		var result jobs.Result
		for _, o := range s.outputs {
			r := jobs.OutputResult{Name: o.name, Width: o.width, Height: o.height, Format: o.format,
				ContentType: "image/" + o.format, Bytes: len(o.data), ETag: etag(o.data)}
			if _, err := e.blobs.Put(ctx, s.id, r.Blob(), bytes.NewReader(o.data), job.ExpiresAt); err != nil {
				e.t.Fatalf("put %s: %v", r.Blob(), err)
			}
			result.Outputs = append(result.Outputs, r)
		}
		result.Engine = "go test"
		ended, _, err = e.store.Succeed(ctx, s.id, result, s.direct...)
	} else {
		ended, _, err = e.store.Fail(ctx, s.id, s.code, s.message, s.direct...)
	}
	if err != nil {
		e.t.Fatalf("end job %q: %v", s.id, err)
	}
	return ended
}

func etag(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// succeededJob is a job that made one JPEG, w x h, named "default".
func (e *env) succeededJob(id, email, hook string, w, h int, img []byte) *jobs.Job {
	e.t.Helper()
	return e.end(jobSpec{id: id, email: email, hook: hook, outputs: []output{{jobs.DefaultOutput, "jpeg", w, h, img}}})
}

// failedJob is a job of an upload that failed with code and message.
func (e *env) failedJob(id, email, hook, code, message string) *jobs.Job {
	e.t.Helper()
	return e.end(jobSpec{id: id, email: email, hook: hook, source: jobs.SourceUpload, code: code, message: message})
}

func (e *env) get(id string) *jobs.Job {
	e.t.Helper()
	job, err := e.store.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("get %s: %v", id, err)
	}
	return job
}

func (e *env) delivery(id, channel string) jobs.Delivery {
	e.t.Helper()
	d := e.get(id).Delivery(channel)
	if d == nil {
		e.t.Fatalf("job %s has no %s delivery", id, channel)
	}
	return *d
}

// deliver runs one attempt the way the worker's queue handler does.
func (e *env) deliver(channel, id string, attempt int) error {
	return e.n.Deliver(context.Background(), channel, id, attempt)
}

// queued takes the work waiting on the queue now, oldest first.
func (e *env) queued() []jobs.Work {
	e.t.Helper()
	conn := e.pool.Get()
	defer conn.Close()
	payloads, err := redis.Strings(conn.Do("LRANGE", e.queue.list, 0, -1))
	if err != nil {
		e.t.Fatalf("queue: %v", err)
	}
	if _, err := conn.Do("DEL", e.queue.list); err != nil {
		e.t.Fatalf("queue: %v", err)
	}
	var out []jobs.Work
	for i := len(payloads) - 1; i >= 0; i-- { // LPUSH: the newest is first
		var w jobs.Work
		if err := json.Unmarshal([]byte(payloads[i]), &w); err != nil {
			e.t.Fatalf("queue entry %q: %v", payloads[i], err)
		}
		out = append(out, w)
	}
	return out
}

// queuedDeliveries is the delivery work queued now (the thumbnail runs that
// Submit queued are left out).
func (e *env) queuedDeliveries() []jobs.Work {
	e.t.Helper()
	var out []jobs.Work
	for _, w := range e.queued() {
		if w.Kind != jobs.KindThumbnail {
			out = append(out, w)
		}
	}
	return out
}

// nextDue is when the earliest scheduled work is due (zero: none is). It
// moves any work already due onto the queue.
func (e *env) nextDue() time.Time {
	e.t.Helper()
	_, next, err := e.store.MoveDue(context.Background())
	if err != nil {
		e.t.Fatalf("move due: %v", err)
	}
	return next
}

// untilDue moves the clock to the next scheduled work's time and returns
// the work that then moved onto the queue. It fails the test when nothing
// is scheduled, or when the work moves a millisecond early.
func (e *env) untilDue() []jobs.Work {
	e.t.Helper()
	e.queuedDeliveries() // what was queued before does not count
	next := e.nextDue()
	if next.IsZero() {
		e.t.Fatal("nothing is scheduled")
	}
	e.clock.Advance(next.Sub(e.clock.Now()) - time.Millisecond)
	if early := e.nextDue(); !early.Equal(next) || len(e.queuedDeliveries()) != 0 {
		e.t.Fatalf("work due at %s moved a millisecond early", next)
	}
	e.clock.Advance(time.Millisecond)
	e.nextDue()
	return e.queuedDeliveries()
}

func schedule(s string) retry.Schedule { return retry.MustParse(s) }

// testJPEG is a w x h JPEG.
func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testPNG is a w x h PNG.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gradient(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 4), 128, 255})
		}
	}
	return img
}

// receiverAnswering is a testapi.Receiver (checking signatures with secrets,
// if any) that answers the callbacks it gets with statuses in turn; the last
// one repeats.
func receiverAnswering(t *testing.T, statuses []int, secrets ...string) *testapi.Receiver {
	rc := testapi.NewReceiver(t, secrets...)
	var n atomic.Int64
	rc.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) {
		i := int(n.Add(1)) - 1
		w.WriteHeader(statuses[min(i, len(statuses)-1)])
	})
	return rc
}

// verifyLink checks that link is the signed link of output name of job id,
// expiring with the job, and returns its path.
func verifyLink(t *testing.T, links view.Links, job *jobs.Job, name, link string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("link %q: %v", link, err)
	}
	if want := links.Base + view.OutputPath(job.ID, name); u.Scheme+"://"+u.Host+u.EscapedPath() != want {
		t.Fatalf("link %q is not to %s", link, want)
	}
	q := u.Query()
	if want := job.ExpiresAt.Unix(); q.Get("expires") != strconv.FormatInt(want, 10) {
		t.Fatalf("link %q expires at %s, not with the job (%d)", link, q.Get("expires"), want)
	}
	if err := links.Verify(job.ID, name, q.Get("expires"), q.Get("signature"), time.Now()); err != nil {
		t.Fatalf("link %q: %v", link, err)
	}
	other := view.Links{Base: links.Base, Secret: []byte("another secret, not the service's")}
	if other.Verify(job.ID, name, q.Get("expires"), q.Get("signature"), time.Now()) == nil {
		t.Fatalf("link %q verifies with any secret", link)
	}
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

func mustNotContain(t *testing.T, s, sub string) {
	t.Helper()
	if strings.Contains(s, sub) {
		t.Fatalf("%q contains %q", s, sub)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// testLogger discards what it is told.
func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
