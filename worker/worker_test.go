package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/worker"
)

// clock is the store's time: the real time, moved on by the test when it
// needs time to have passed.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// call is one call the worker made to its deliverer.
type call struct {
	method, channel, id string
	attempt             int
	at                  time.Time
	// first: the first attempt, made by the worker as the job ended
	// (DeliverFirst), not taken from the queue; images are what it was given.
	first  bool
	images map[string][]byte
}

// deliverer stands in for the notifier (which has tests of its own): it
// records the worker's calls and does what the test says. By default an
// attempt does nothing and an interrupted attempt is recorded as the
// notifier records it: failed, the next one an hour later.
type deliverer struct {
	store       *jobs.Store
	deliver     func(ctx context.Context, channel, id string, attempt int) error
	interrupted func(ctx context.Context, channel, id string) error

	mu    sync.Mutex
	calls []call
}

func (d *deliverer) Deliver(ctx context.Context, channel, id string, attempt int) error {
	d.record(call{method: "deliver", channel: channel, id: id, attempt: attempt, at: time.Now()})
	if d.deliver == nil {
		return nil
	}
	return d.deliver(ctx, channel, id, attempt)
}

// firstAttempt marks the context of a first attempt that the transaction
// ending its job claimed (DeliverFirst): claim then has nothing to do.
type firstAttempt struct{}

// DeliverFirst is recorded as a "deliver" call of attempt 1 (marked first)
// and runs the same hook as Deliver.
func (d *deliverer) DeliverFirst(ctx context.Context, channel string, job *jobs.Job, images map[string][]byte) error {
	d.record(call{method: "deliver", channel: channel, id: job.ID, attempt: 1, at: time.Now(), first: true, images: images})
	if d.deliver == nil {
		return nil
	}
	return d.deliver(context.WithValue(ctx, firstAttempt{}, true), channel, job.ID, 1)
}

// claim claims an attempt as the notifier does: from the queue, through
// the store; a first attempt made as its job ended was claimed then.
func (d *deliverer) claim(ctx context.Context, channel, id string, attempt int) (jobs.ClaimResult, error) {
	if ctx.Value(firstAttempt{}) != nil {
		return jobs.Send, nil
	}
	_, c, _, err := d.store.Claim(ctx, id, channel, attempt)
	return c, err
}

func (d *deliverer) Interrupted(ctx context.Context, channel, id string) error {
	d.record(call{method: "interrupted", channel: channel, id: id, at: time.Now()})
	if d.interrupted != nil {
		return d.interrupted(ctx, channel, id)
	}
	_, err := d.store.Interrupt(ctx, id, channel, func(_ *jobs.Job, dl jobs.Delivery) jobs.Outcome {
		return jobs.Outcome{Message: "interrupted", Next: time.Now().Add(time.Hour),
			Log: jobs.LogEntry{Attempt: dl.Attempts, Outcome: jobs.OutcomeRetry, Error: "interrupted"}}
	})
	return err
}

func (d *deliverer) record(c call) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, c)
}

// Calls lists the calls made to method.
func (d *deliverer) Calls(method string) []call {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []call
	for _, c := range d.calls {
		if c.method == method {
			out = append(out, c)
		}
	}
	return out
}

// world is a worker on a real Redis (or miniredis), with the Redis blob
// store, the real outbound client and engine, and a fake deliverer.
type world struct {
	r         *testredis.Redis
	cfg       worker.Config
	clock     *clock
	store     *jobs.Store
	blobs     blob.Store
	deliverer *deliverer
	logs      *testlog.Buffer
	w         *worker.Worker
	stop      func()
}

// newWorld builds the worker without starting it: a test may set up the
// state a crash left before the worker looks.
func newWorld(t *testing.T, cfg worker.Config) *world {
	t.Helper()
	r := testredis.New(t)
	cfg.Namespace = r.Namespace
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = 10 * time.Second
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = 30 * time.Second
	}
	if cfg.ResultTTL == 0 {
		cfg.ResultTTL = time.Hour
	}
	if cfg.RetrySchedule == nil {
		cfg.RetrySchedule = fastRetries
	}
	cfg.MaxPixels = 50_000_000
	cfg.WakeOnEnqueue = true
	w := &world{r: r, cfg: cfg, clock: &clock{}, logs: &testlog.Buffer{}}
	w.store = jobs.NewStore(r.Pool, jobs.Options{Namespace: r.Namespace, TTL: cfg.ResultTTL, Lease: cfg.StaleAfter,
		Queue: worker.NewQueue(r.Namespace), Clock: w.clock.Now})
	blobs, err := blob.Open("", nil, r.Pool, r.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	w.blobs = blobs
	w.deliverer = &deliverer{store: w.store}
	log := slog.New(slog.NewJSONHandler(w.logs, nil))
	client := safehttp.New(safehttp.Options{AllowPrivate: true, Timeout: 5 * time.Second})
	dial := func(ctx context.Context) (redis.Conn, error) { return redis.DialURLContext(ctx, r.URL) }
	w.w = worker.New(log, cfg, worker.Redis{Pool: r.Pool, Dial: dial}, w.store, client, blobs, w.deliverer, thumbnail.Default, nil)
	return w
}

func (w *world) start(t *testing.T) {
	t.Helper()
	w.w.Start()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = w.w.Stop(ctx)
		})
	}
	t.Cleanup(w.stop)
}

// start builds a worker and starts it.
func start(t *testing.T, cfg worker.Config) *world {
	t.Helper()
	w := newWorld(t, cfg)
	w.start(t)
	return w
}

func (w *world) key(parts ...string) string {
	return w.r.Namespace + ":" + strings.Join(parts, ":")
}

// submit accepts a job as the API does: its upload in the blob store, then
// the record and its queue entry.
func (w *world) submit(t *testing.T, id string, req jobs.Request, upload []byte) *jobs.Job {
	t.Helper()
	ctx := context.Background()
	if upload != nil {
		if _, err := w.blobs.Put(ctx, id, jobs.UploadBlob, bytes.NewReader(upload), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	job, _, err := w.store.Submit(ctx, jobs.New(id, jobs.Owner{Client: "ip:192.0.2.1"}, req, w.clock.Now(), w.cfg.ResultTTL), nil)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func (w *world) get(t *testing.T, id string) *jobs.Job {
	t.Helper()
	job, err := w.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// run submits an upload of the photo with req and runs it once through
// Run, as a lane does but without the queue: the job as the run left it.
func (w *world) run(t *testing.T, id string, req jobs.Request) *jobs.Job {
	t.Helper()
	w.submit(t, id, req, photo(t))
	if err := w.w.Run(context.Background(), id); err != nil {
		t.Fatalf("run %s: %v", id, err)
	}
	return w.get(t, id)
}

func (w *world) waitEnded(t *testing.T, id string, within time.Duration) *jobs.Job {
	t.Helper()
	var job *jobs.Job
	if !testapi.Eventually(within, func() bool { job = w.get(t, id); return job.Status.Ended() }) {
		t.Fatalf("job %s still %s after %s", id, job.Status, within)
	}
	return job
}

func photo(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../thumbnail/testdata/photos/go-video-001.jpeg")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func outputs() []jobs.Output {
	return []jobs.Output{{Name: jobs.DefaultOutput, Width: 32, Fit: "contain", Gravity: "center", Format: "jpeg", Quality: 80}}
}

func urlRequest(url string) jobs.Request {
	return jobs.Request{Source: jobs.SourceURL, URL: url, Width: 32, Fit: "contain", Format: "jpeg", Quality: 80, Outputs: outputs()}
}

func uploadRequest() jobs.Request {
	return jobs.Request{Source: jobs.SourceUpload, Width: 32, Fit: "contain", Format: "jpeg", Quality: 80, Outputs: outputs()}
}

// callbackRequest is an upload whose outcome goes to a callback.
func callbackRequest() jobs.Request {
	req := uploadRequest()
	req.CallbackURL = "https://example.com/hook"
	return req
}

// fastRetries makes transient failures retry at once: the due set moves
// them to the queue and wakes the worker, with no wait on gocraft/work's
// polling.
var fastRetries = retry.Schedule{time.Millisecond, time.Millisecond, time.Millisecond}

func TestTransientSourceFailuresAreRetried(t *testing.T) {
	is := is.New(t)
	img := photo(t)
	var calls atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(img)
	}))
	defer src.Close()
	w := start(t, worker.Config{})
	began := time.Now()
	w.submit(t, "flaky", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "flaky", 10*time.Second)
	t.Logf("three runs in %s", time.Since(began).Round(time.Millisecond))
	is.Equal(job.Status, jobs.StatusSucceeded)
	is.Equal(job.Attempts, 3) // two 503s, then the image
	is.Equal(job.Retries, 2)
	is.Equal(job.Crashes, 0)
	is.Equal(calls.Load(), int32(3))
}

func TestTransientFailuresEndInSourceUnreachable(t *testing.T) {
	is := is.New(t)
	var calls atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer src.Close()
	w := start(t, worker.Config{})
	w.submit(t, "down", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "down", 10*time.Second)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, codes.SourceUnreachable)
	is.Equal(calls.Load(), int32(4)) // the first run and three retries
	is.Equal(job.Attempts, 4)
}

func TestPermanentFailuresAreNotRetried(t *testing.T) {
	is := is.New(t)
	var calls atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.NotFound(w, r)
	}))
	defer src.Close()
	w := start(t, worker.Config{})
	w.submit(t, "missing", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "missing", 10*time.Second)
	is.Equal(job.Error.Code, codes.SourceNotFound)
	is.Equal(job.Attempts, 1)
	is.Equal(job.Retries, 0)
	// No run is scheduled or queued that could call the source again.
	is.Equal(w.r.Do(t, "ZCARD", w.key("due")), int64(0))
	is.Equal(w.r.Do(t, "LLEN", w.key("jobs", worker.TypeThumbnail)), int64(0))
	is.Equal(calls.Load(), int32(1))
}

func TestLogsDoNotCarryASourceURLsQuery(t *testing.T) {
	is := is.New(t)
	// A closed port: the connection error's text names the URL.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	w := start(t, worker.Config{})
	w.submit(t, "signed", urlRequest(closed.URL+"/cat.jpg?X-Amz-Signature=s3cr3t"), nil)
	job := w.waitEnded(t, "signed", 10*time.Second)
	w.stop()
	is.Equal(job.Error.Code, codes.SourceUnreachable)
	is.True(strings.Contains(w.logs.String(), "/cat.jpg")) // the failure is logged with its path
	is.True(!strings.Contains(w.logs.String(), "s3cr3t"))  // but not the URL's query
}

func TestAJobThatKeepsCrashingItsWorkerFails(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	w := newWorld(t, worker.Config{})
	w.submit(t, "poison", uploadRequest(), photo(t))
	// Three runs began and never finished: their processes died, and each
	// time the lease ran out.
	for range 3 {
		_, begin, err := w.store.Begin(ctx, "poison", 3)
		is.NoErr(err)
		is.Equal(begin, jobs.Run)
		w.clock.Advance(w.cfg.StaleAfter + time.Millisecond)
	}
	w.start(t)
	job := w.waitEnded(t, "poison", 10*time.Second)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, codes.WorkerCrashed)
	is.Equal(job.Crashes, 3)
	is.Equal(job.Attempts, 3) // the image was not tried a fourth time
}

func TestTheSweeperRerunsAJobWhoseWorkerDied(t *testing.T) {
	is := is.New(t)
	const staleAfter = 300 * time.Millisecond
	w := newWorld(t, worker.Config{StaleAfter: staleAfter})
	w.submit(t, "orphan", uploadRequest(), photo(t))
	// A run began on a worker that then died: the job is processing, its
	// lease is no longer renewed, and its queue entry went with the worker.
	w.r.Do(t, "DEL", w.key("jobs", worker.TypeThumbnail))
	began := time.Now()
	_, _, err := w.store.Begin(context.Background(), "orphan", 3)
	is.NoErr(err)
	w.start(t)
	job := w.waitEnded(t, "orphan", 10*time.Second)
	t.Logf("re-run and finished %s after the run died", time.Since(began).Round(time.Millisecond))
	is.Equal(job.Status, jobs.StatusSucceeded)
	is.Equal(job.Crashes, 1) // the re-run knew the run before it died
	is.Equal(job.Attempts, 2)
	is.True(time.Since(began) > staleAfter-time.Millisecond) // not before its lease ran out
}

// Issue 10: gocraft/work moved a job to the in-progress list of a live pool,
// and Redis died before the pool heard of it (the move stood, the reply was
// lost). The record says queued and no queue holds the job; the library's
// reaper never looks at a live pool. The sweeper puts it back within about
// twice STALE_AFTER.
func TestTheSweeperRequeuesAJobStrandedInProgress(t *testing.T) {
	is := is.New(t)
	const staleAfter = 300 * time.Millisecond
	w := newWorld(t, worker.Config{StaleAfter: staleAfter})
	w.submit(t, "stranded", uploadRequest(), photo(t))
	entry, err := redis.String(w.r.Do(t, "RPOP", w.key("jobs", worker.TypeThumbnail)), nil)
	is.NoErr(err)
	w.start(t)

	var pools []string
	is.True(testapi.Eventually(5*time.Second, func() bool {
		pools, err = redis.Strings(w.r.Do(t, "SMEMBERS", w.key("worker_pools")), nil)
		return err == nil && len(pools) > 0
	})) // the worker's pools are up
	inProgress := w.key("jobs", worker.TypeThumbnail, pools[0], "inprogress")
	w.r.Do(t, "LPUSH", inProgress, entry)
	stranded := time.Now()

	job := w.waitEnded(t, "stranded", 10*time.Second)
	t.Logf("re-queued and finished %s after it was stranded", time.Since(stranded).Round(time.Millisecond))
	is.Equal(job.Status, jobs.StatusSucceeded)
	is.Equal(job.Crashes, 0)
	is.Equal(w.r.Do(t, "LLEN", inProgress), int64(0)) // the stranded entry left the in-progress list
	is.True(strings.Contains(w.logs.String(), "re-queued queue entries stranded in progress"))
}

func TestAJobThatOverrunsItsDeadlineTimesOut(t *testing.T) {
	is := is.New(t)
	release := make(chan struct{})
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = w.Write([]byte{0xff, 0xd8})
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer src.Close()
	defer close(release)
	w := start(t, worker.Config{JobTimeout: 300 * time.Millisecond})
	w.submit(t, "slow", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "slow", 10*time.Second)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, codes.Timeout)
	is.Equal(job.Attempts, 1)
}

// Run is the thumbnail run, callable without the queue: it makes and
// stores the images, records the result, and drops the upload.
func TestRunMakesTheImagesAndDropsTheUpload(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	w := newWorld(t, worker.Config{})
	job := w.run(t, "j1", uploadRequest())
	is.Equal(job.Status, jobs.StatusSucceeded)
	is.Equal(len(job.Result.Outputs), 1)
	out := job.Result.Outputs[0]
	is.Equal(out.Name, jobs.DefaultOutput)
	is.Equal(out.Width, 32)
	is.Equal(out.ContentType, "image/jpeg")
	img, err := w.blobs.Get(ctx, "j1", out.Blob())
	is.NoErr(err)
	is.Equal(len(img), out.Bytes)
	_, err = w.blobs.Get(ctx, "j1", jobs.UploadBlob)
	is.True(errors.Is(err, blob.ErrNotFound)) // the original goes when the job ends
	// The images live at least as long as the record that shows them.
	recordTTL, err := redis.Int64(w.r.Do(t, "PTTL", w.key("record", "j1")), nil)
	is.NoErr(err)
	blobTTL, err := redis.Int64(w.r.Do(t, "PTTL", w.key("blob", "j1")), nil)
	is.NoErr(err)
	is.True(blobTTL >= recordTTL)

	// A late run of the same job (a duplicate entry, the reaper) changes nothing.
	is.NoErr(w.w.Run(ctx, "j1"))
	again := w.get(t, "j1")
	is.Equal(again.Version, job.Version)
	is.Equal(again.Attempts, 1)

	// A job erased before it ran is dropped.
	w.submit(t, "gone", uploadRequest(), photo(t))
	is.NoErr(w.store.Erase(ctx, "gone"))
	is.NoErr(w.w.Run(ctx, "gone"))
}

// A delivery attempt whose worker died while it ran holds a lease that
// nobody renews: the sweeper hands it to the deliverer as interrupted.
func TestTheSweeperTakesBackAnExpiredDeliveryLease(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	const staleAfter = 300 * time.Millisecond
	w := newWorld(t, worker.Config{StaleAfter: staleAfter})
	// The attempt claims its send and its process dies before the outcome.
	w.deliverer.deliver = func(ctx context.Context, channel, id string, attempt int) error {
		_, err := w.deliverer.claim(ctx, channel, id, attempt)
		return err
	}
	w.submit(t, "j1", callbackRequest(), photo(t))
	w.start(t)
	w.waitEnded(t, "j1", 10*time.Second)

	is.True(testapi.Eventually(5*time.Second, func() bool { return len(w.deliverer.Calls("interrupted")) > 0 }))
	deliver := w.deliverer.Calls("deliver")
	is.Equal(len(deliver), 1)
	is.Equal(deliver[0].attempt, 1)
	is.True(deliver[0].first) // made as the job ended, its claim in the same transaction
	calls := w.deliverer.Calls("interrupted")
	is.Equal(calls[0].channel, jobs.ChannelCallback)
	is.Equal(calls[0].id, "j1")
	job := w.get(t, "j1")
	d := job.Delivery(jobs.ChannelCallback)
	// Taken back once its lease ran out: the lease started with the claim,
	// which is the attempt's start (last_attempt_at), in the transaction
	// that ended the job.
	is.True(calls[0].at.Sub(*d.LastAttemptAt) > staleAfter-time.Millisecond)
	is.Equal(len(d.Log), 1) // counted as failed
	is.True(d.NextAttemptAt != nil)

	// Taken back once: the lease went with the outcome.
	leases, err := w.store.ExpiredLeases(ctx, 10)
	is.NoErr(err)
	is.Equal(len(leases), 0)
	is.Equal(len(w.deliverer.Calls("interrupted")), 1)
}

// The first attempt of a callback is made by the worker as the job ends:
// claimed in the transaction that ends the job (so there is no queue entry
// and no claim of its own), with the images just made, not read back.
func TestTheFirstCallbackAttemptIsMadeAsTheJobEnds(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	w := newWorld(t, worker.Config{})
	w.run(t, "j1", callbackRequest())

	var calls []call
	is.True(testapi.Eventually(5*time.Second, func() bool { calls = w.deliverer.Calls("deliver"); return len(calls) == 1 }))
	is.True(calls[0].first)
	is.Equal(calls[0].attempt, 1)
	job := w.get(t, "j1")
	out := job.Result.Outputs[0]
	stored, err := w.blobs.Get(ctx, "j1", out.Blob())
	is.NoErr(err)
	is.Equal(calls[0].images[out.Name], stored) // the bytes that were stored, handed over
	d := job.Delivery(jobs.ChannelCallback)
	is.Equal(d.Attempts, 1) // claimed
	is.Equal(*d.LastAttemptAt, *job.FinishedAt)
	is.Equal(w.r.Do(t, "LLEN", w.key("jobs", worker.TypeDeliverCallback)), int64(0)) // nothing queued
	alive, err := redis.Int64(w.r.Do(t, "ZSCORE", w.key("leases"), "callback:j1"), nil)
	is.NoErr(err)
	is.True(alive > time.Now().UnixMilli()) // the attempt holds its lease

	// A job without a callback queues its email as before.
	email := uploadRequest()
	email.Email = "someone@example.com"
	w.run(t, "j2", email)
	is.Equal(w.r.Do(t, "LLEN", w.key("jobs", worker.TypeDeliverEmail)), int64(1))
}

// At most Concurrency first attempts run outside the queue at once: past
// that, a job's first attempt is queued as before, so a slow receiver holds
// no more than the worker's share.
func TestFirstAttemptsPastConcurrencyAreQueued(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	w := newWorld(t, worker.Config{Concurrency: 1})
	hold := make(chan struct{})
	w.deliverer.deliver = func(ctx context.Context, channel, id string, attempt int) error {
		<-hold // the receiver takes its time
		return nil
	}
	req := callbackRequest()
	w.submit(t, "slow", req, photo(t))
	w.submit(t, "next", req, photo(t))
	is.NoErr(w.w.Run(ctx, "slow"))
	is.True(testapi.Eventually(5*time.Second, func() bool { return len(w.deliverer.Calls("deliver")) == 1 }))
	is.NoErr(w.w.Run(ctx, "next"))

	is.Equal(w.r.Do(t, "LLEN", w.key("jobs", worker.TypeDeliverCallback)), int64(1)) // queued
	is.Equal(w.get(t, "next").Delivery(jobs.ChannelCallback).Attempts, 0)            // not claimed
	close(hold)
	calls := w.deliverer.Calls("deliver")
	is.Equal(len(calls), 1)
	is.Equal(calls[0].id, "slow")
}

// A last attempt that died mid-way fails the delivery for good; the
// sweeper then puts it into gocraft/work's dead set, as a handler that
// fails does, so the web UI shows it and its retry redelivers.
func TestAnInterruptedLastAttemptGoesToTheDeadSet(t *testing.T) {
	is := is.New(t)
	w := newWorld(t, worker.Config{StaleAfter: 300 * time.Millisecond})
	w.deliverer.deliver = func(ctx context.Context, channel, id string, attempt int) error {
		_, err := w.deliverer.claim(ctx, channel, id, attempt)
		return err
	}
	w.deliverer.interrupted = func(ctx context.Context, channel, id string) error {
		done, err := w.store.Interrupt(ctx, id, channel, func(_ *jobs.Job, dl jobs.Delivery) jobs.Outcome {
			return jobs.Outcome{Final: true, Code: "retries_exhausted", Message: "gave up",
				Log: jobs.LogEntry{Attempt: dl.Attempts, Outcome: jobs.OutcomeFailed, Error: "interrupted"}}
		})
		if err != nil || !done {
			return err
		}
		return fmt.Errorf("%s delivery of job %s: %w: retries_exhausted", channel, id, jobs.ErrDeliveryFailed)
	}
	w.submit(t, "j1", callbackRequest(), photo(t))
	w.start(t)
	w.waitEnded(t, "j1", 10*time.Second)

	var dead []*work.DeadJob
	is.True(testapi.Eventually(5*time.Second, func() bool {
		dead, _, _ = work.NewClient(w.r.Namespace, w.r.Pool).DeadJobs(1)
		return len(dead) == 1
	}))
	is.Equal(dead[0].Name, worker.TypeDeliverCallback)
	is.Equal(dead[0].ArgString("job_id"), "j1")
	is.Equal(dead[0].ArgString("attempt"), "1")
	is.Equal(dead[0].ArgString("redeliver"), "1") // its retry redelivers
	is.True(strings.Contains(dead[0].LastErr, "retries_exhausted"))
	is.Equal(w.get(t, "j1").Delivery(jobs.ChannelCallback).Status, jobs.DeliveryFailed)
	time.Sleep(time.Second) // more sweeps: the delivery is buried once
	dead, _, err := work.NewClient(w.r.Namespace, w.r.Pool).DeadJobs(1)
	is.NoErr(err)
	is.Equal(len(dead), 1)
}

// A slow receiver is not a dead worker: the worker renews the lease of an
// attempt while it runs, so the sweeper leaves it alone however long it
// takes.
func TestASlowDeliveryKeepsItsLease(t *testing.T) {
	is := is.New(t)
	const staleAfter = 600 * time.Millisecond
	w := newWorld(t, worker.Config{StaleAfter: staleAfter})
	recorded := make(chan error, 1)
	w.deliverer.deliver = func(ctx context.Context, channel, id string, attempt int) error {
		claim, err := w.deliverer.claim(ctx, channel, id, attempt)
		if err != nil || claim != jobs.Send {
			return err
		}
		time.Sleep(3*staleAfter + staleAfter/2) // the receiver takes its time
		_, err = w.store.Record(ctx, id, channel, attempt, jobs.Outcome{Delivered: true,
			Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeDelivered}})
		recorded <- err
		return err
	}
	w.submit(t, "slow", callbackRequest(), photo(t))
	w.start(t)
	select {
	case err := <-recorded:
		is.NoErr(err) // the outcome was the attempt's to write
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery did not run")
	}
	is.Equal(len(w.deliverer.Calls("interrupted")), 0)
	is.Equal(w.get(t, "slow").Delivery(jobs.ChannelCallback).Status, jobs.DeliveryDelivered)
}

// The same for a thumbnail run: a source that takes several leases' time
// to answer does not make the sweeper take its job for orphaned.
func TestASlowRunKeepsItsLease(t *testing.T) {
	is := is.New(t)
	const staleAfter = 600 * time.Millisecond
	img := photo(t)
	var calls atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(3*staleAfter + staleAfter/2) // the source takes its time
		_, _ = w.Write(img)
	}))
	defer src.Close()
	w := start(t, worker.Config{StaleAfter: staleAfter})
	w.submit(t, "slow", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "slow", 10*time.Second)
	is.Equal(job.Status, jobs.StatusSucceeded)
	is.Equal(job.Crashes, 0) // never taken back
	is.Equal(job.Attempts, 1)
	is.Equal(calls.Load(), int32(1))
}

// Issue 13 item 8: scheduled attempts ran up to ~5 s late. A 2 s / 4 s
// schedule is kept within 1 s: the due set moves each attempt to the queue
// at its time and wakes the worker.
func TestDueWorkRunsWithinASecondOfItsTime(t *testing.T) {
	is := is.New(t)
	w := newWorld(t, worker.Config{})
	gaps := []time.Duration{2 * time.Second, 4 * time.Second}
	var mu sync.Mutex
	due := map[int]time.Time{} // attempt -> when it was scheduled for
	w.deliverer.deliver = func(ctx context.Context, channel, id string, attempt int) error {
		claim, err := w.deliverer.claim(ctx, channel, id, attempt)
		if err != nil || claim != jobs.Send {
			return err
		}
		o := jobs.Outcome{Delivered: true, Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeDelivered}}
		if attempt <= len(gaps) {
			next := time.Now().Add(gaps[attempt-1])
			mu.Lock()
			due[attempt+1] = next
			mu.Unlock()
			o = jobs.Outcome{Message: "503", Next: next, Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeRetry}}
		}
		_, err = w.store.Record(ctx, id, channel, attempt, o)
		return err
	}
	w.submit(t, "j1", callbackRequest(), photo(t))
	w.start(t)
	is.True(testapi.Eventually(15*time.Second, func() bool {
		return w.get(t, "j1").Delivery(jobs.ChannelCallback).Status == jobs.DeliveryDelivered
	}))
	calls := w.deliverer.Calls("deliver")
	is.Equal(len(calls), 3)
	mu.Lock()
	defer mu.Unlock()
	for _, c := range calls[1:] {
		late := c.at.Sub(due[c.attempt])
		t.Logf("attempt %d ran %s after its time", c.attempt, late.Round(time.Millisecond))
		is.True(late > -time.Millisecond) // never early (the due set counts whole milliseconds)
		is.True(late < time.Second)       // and within a second
	}
}

// Issue 13 item 5: every delivery that failed for good adds an entry to
// gocraft/work's dead set, which the library never removes. The sweeper
// trims it to the result TTL.
func TestTheDeadSetIsTrimmedToTheResultTTL(t *testing.T) {
	is := is.New(t)
	w := newWorld(t, worker.Config{StaleAfter: 300 * time.Millisecond, ResultTTL: time.Hour})
	q := worker.NewQueue(w.r.Namespace)
	now := time.Now()
	entry := func(id string) string {
		return q.Entry(jobs.Work{Kind: jobs.ChannelCallback, JobID: id, Attempt: 8}).Payload
	}
	dead := w.key("dead")
	w.r.Do(t, "ZADD", dead, now.Add(-2*time.Hour).Unix(), entry("old"))
	w.r.Do(t, "ZADD", dead, now.Add(-time.Hour-time.Minute).Unix(), entry("older than the ttl"))
	w.r.Do(t, "ZADD", dead, now.Add(-50*time.Minute).Unix(), entry("recent"))
	w.r.Do(t, "ZADD", dead, now.Unix(), entry("new"))
	w.start(t)
	is.True(testapi.Eventually(5*time.Second, func() bool { return w.r.Do(t, "ZCARD", dead) == int64(2) }))
	kept, err := redis.Strings(w.r.Do(t, "ZRANGE", dead, 0, -1), nil)
	is.NoErr(err)
	is.True(strings.Contains(kept[0], `"recent"`))
	is.True(strings.Contains(kept[1], `"new"`))
}

// A delivery that failed for good goes to gocraft/work's dead set marked
// for redelivery: the web UI's retry of it sends the delivery again, as a
// new series.
func TestRetryingADeadDeliveryRedelivers(t *testing.T) {
	is := is.New(t)
	w := newWorld(t, worker.Config{})
	w.deliverer.deliver = func(ctx context.Context, channel, id string, attempt int) error {
		claim, err := w.deliverer.claim(ctx, channel, id, attempt)
		if err != nil || claim != jobs.Send {
			return err
		}
		o := jobs.Outcome{Delivered: true, Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeDelivered}}
		if attempt == 1 {
			o = jobs.Outcome{Final: true, Code: codes.CallbackGone, Message: "410",
				Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeFailed}}
		}
		if _, err := w.store.Record(ctx, id, channel, attempt, o); err != nil {
			return err
		}
		if o.Final {
			return fmt.Errorf("callback: %w", jobs.ErrDeliveryFailed)
		}
		return nil
	}
	w.submit(t, "j1", callbackRequest(), photo(t))
	w.start(t)
	dead := w.key("dead")
	is.True(testapi.Eventually(10*time.Second, func() bool { return w.r.Do(t, "ZCARD", dead) == int64(1) }))
	is.Equal(w.get(t, "j1").Delivery(jobs.ChannelCallback).Status, jobs.DeliveryFailed)
	client := work.NewClient(w.r.Namespace, w.r.Pool)
	entries, _, err := client.DeadJobs(1)
	is.NoErr(err)
	is.Equal(len(entries), 1)
	is.Equal(entries[0].Name, worker.TypeDeliverCallback)
	is.Equal(entries[0].Args["redeliver"], "1")

	// The web UI's retry puts the entry back on its queue (gocraft/work's
	// poll finds it within 5 s; a wake-up, as every enqueue of ours sends,
	// makes it at once).
	is.NoErr(client.RetryDeadJob(entries[0].DiedAt, entries[0].ID))
	w.r.Do(t, "PUBLISH", w.key("wake"), "1")
	is.True(testapi.Eventually(10*time.Second, func() bool {
		return w.get(t, "j1").Delivery(jobs.ChannelCallback).Status == jobs.DeliveryDelivered
	}))
	calls := w.deliverer.Calls("deliver")
	is.Equal(len(calls), 2)
	is.Equal(calls[1].attempt, 2) // a new attempt
	d := w.get(t, "j1").Delivery(jobs.ChannelCallback)
	is.Equal(d.SeriesStart, 2) // starting a new series
	is.Equal(len(d.Log), 2)
}

// The images of a job whose record expired, or that was erased, are
// deleted by the sweeper; a live job's stay.
func TestTheSweeperDeletesTheImagesOfExpiredJobs(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	w := newWorld(t, worker.Config{StaleAfter: 300 * time.Millisecond})
	for _, id := range []string{"expired", "erased", "live"} {
		w.run(t, id, uploadRequest())
	}
	name := w.get(t, "live").Result.Outputs[0].Blob()
	for _, id := range []string{"expired", "erased", "live"} {
		_, err := w.blobs.Get(ctx, id, name)
		is.NoErr(err)
	}
	is.NoErr(w.store.Erase(ctx, "erased"))
	// "expired" outlives its TTL: Redis deletes its record (the blob store's
	// own expiry is later, and an S3 store has none).
	w.clock.Advance(w.cfg.ResultTTL + time.Minute)
	w.r.Do(t, "DEL", w.key("record", "expired"))
	w.start(t)

	gone := func(id string) bool {
		_, err := w.blobs.Get(ctx, id, name)
		return errors.Is(err, blob.ErrNotFound)
	}
	is.True(testapi.Eventually(5*time.Second, func() bool { return gone("expired") && gone("erased") }))
	_, err := w.blobs.Get(ctx, "live", name)
	is.NoErr(err) // its record still shows it (the store's clock ran ahead of Redis's)
	ids, err := w.store.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(len(ids), 0) // collected, and marked so
}

// Issue 13 item 7: a worker hung at start when Redis accepted connections
// and never answered, and did not stop when told to. Start returns at once
// and Stop keeps its deadline, whatever Redis does.
func TestStopKeepsItsDeadlineWhenRedisNeverAnswers(t *testing.T) {
	is := is.New(t)
	addr, accepted := testnet.Stalled(t)
	// Dialled as the service dials: reads without a context have a deadline.
	pool := &redis.Pool{MaxIdle: 8, DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", addr, redis.DialConnectTimeout(time.Second),
			redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second))
	}}
	t.Cleanup(func() { pool.Close() })
	cfg := worker.Config{Namespace: "hung", Concurrency: 2, JobTimeout: time.Second, StaleAfter: time.Second,
		ResultTTL: time.Hour, WakeOnEnqueue: true, MaxPixels: 50_000_000}
	store := jobs.NewStore(pool, jobs.Options{Namespace: cfg.Namespace, TTL: cfg.ResultTTL, Lease: cfg.StaleAfter, Queue: worker.NewQueue(cfg.Namespace)})
	blobs, err := blob.Open("", nil, pool, cfg.Namespace)
	is.NoErr(err)
	dial := func(ctx context.Context) (redis.Conn, error) { return redis.DialContext(ctx, "tcp", addr) }
	log := slog.New(slog.NewJSONHandler(&testlog.Buffer{}, nil))
	w := worker.New(log, cfg, worker.Redis{Pool: pool, Dial: dial}, store, safehttp.New(safehttp.Options{}), blobs,
		&deliverer{store: store}, thumbnail.Default, nil)

	began := time.Now()
	w.Start()
	is.True(time.Since(began) < 500*time.Millisecond) // Start never waits on Redis (a read would wait its 1 s deadline)
	// The lanes, the sweeper, the lease keeper and the due mover are all
	// waiting on Redis now.
	is.True(testapi.Eventually(5*time.Second, func() bool { return accepted() >= 3 }))

	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	stopping := time.Now()
	err = w.Stop(ctx)
	took := time.Since(stopping)
	t.Logf("Stop returned after %s: %v", took.Round(time.Millisecond), err)
	is.True(took < deadline+time.Second) // Stop keeps its deadline (margin for a loaded machine), where it used to hang for good
	is.True(err == nil || errors.Is(err, context.DeadlineExceeded))
}
