package notifier_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/view"
)

// env is one test's world: Redis, the store, the queue and a notifier.
type env struct {
	t      *testing.T
	pool   *redis.Pool
	ns     string
	store  *jobs.Store
	queue  *jobs.Queue
	n      *notifier.Notifier
	logs   *testlog.Buffer
	client *safehttp.Client
}

func newEnv(t *testing.T, cfg notifier.Config) *env {
	t.Helper()
	r := testredis.New(t) // THUMBNAILED_TEST_REDIS_URL, or an in-process miniredis
	store := jobs.NewStore(r.Pool, r.Namespace, time.Hour)
	e := &env{t: t, pool: r.Pool, ns: r.Namespace, store: store, queue: jobs.NewQueue(store), logs: &testlog.Buffer{}}
	e.client = safehttp.New(safehttp.Options{AllowPrivate: cfg.AllowPrivateNetworks})
	e.start(cfg)
	return e
}

// start (re)makes the notifier with cfg on the same Redis.
func (e *env) start(cfg notifier.Config) {
	e.t.Helper()
	if cfg.OutboxDir == "" && cfg.SMTPURL == "" {
		cfg.OutboxDir = e.t.TempDir()
	}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, e.t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := notifier.New(logger, cfg, e.store, e.queue, e.client, nil)
	if err != nil {
		e.t.Fatalf("notifier.New: %v", err)
	}
	e.n = n
}

// createEnded stores a job and ends it: succeeded with img when the job has
// a Result, failed with its Error otherwise.
func (e *env) createEnded(job *jobs.Job, img []byte) *jobs.Job {
	e.t.Helper()
	ctx := context.Background()
	result, jobErr := job.Result, job.Error
	job.Status, job.Result, job.Error = jobs.StatusQueued, nil, nil
	if job.CreatedAt.IsZero() {
		job.CreatedAt = time.Now().UTC().Add(-time.Second)
	}
	if err := e.store.Create(ctx, job, nil); err != nil {
		e.t.Fatalf("create: %v", err)
	}
	var ended *jobs.Job
	var err error
	if result != nil {
		ended, _, err = e.store.Succeed(ctx, job.ID, *result, img)
	} else {
		ended, _, err = e.store.Fail(ctx, job.ID, jobErr.Code, jobErr.Message)
	}
	if err != nil {
		e.t.Fatalf("end job: %v", err)
	}
	return ended
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

// scheduled lists the delivery jobs waiting in gocraft/work's scheduled set.
func (e *env) scheduled() []*work.ScheduledJob {
	e.t.Helper()
	list, _, err := work.NewClient(e.ns, e.pool).ScheduledJobs(1)
	if err != nil {
		e.t.Fatalf("scheduled jobs: %v", err)
	}
	return list
}

// queued counts jobs of a type waiting to run now.
func (e *env) queued(jobType string) int64 {
	e.t.Helper()
	queues, err := work.NewClient(e.ns, e.pool).Queues()
	if err != nil {
		e.t.Fatalf("queues: %v", err)
	}
	for _, q := range queues {
		if q.JobName == jobType {
			return q.Count
		}
	}
	return 0
}

// attempt is the gocraft/work job of a delivery attempt, as the queue makes it.
func attempt(jobType, id string, n int) *work.Job {
	return &work.Job{Name: jobType, ID: "gocraft-" + id + "-" + strconv.Itoa(n),
		Args: map[string]interface{}{jobs.ArgJobID: id, jobs.ArgAttempt: strconv.Itoa(n)}}
}

func emailAttempt(id string, n int) *work.Job    { return attempt(jobs.TypeDeliverEmail, id, n) }
func callbackAttempt(id string, n int) *work.Job { return attempt(jobs.TypeDeliverCallback, id, n) }

func schedule(s string) retry.Schedule { return retry.MustParse(s) }

// testJPEG is a w x h JPEG.
func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 4), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func succeededJob(id, email, callbackURL string, w, h int, img []byte) *jobs.Job {
	job := &jobs.Job{ID: id,
		Request: jobs.Request{Source: jobs.SourceURL, URL: "https://example.com/photos/cat.jpg?X-Amz-Signature=abc",
			Width: w, Fit: "contain", Format: "jpeg", Quality: 80, Email: email, CallbackURL: callbackURL},
		Result: &jobs.Result{Width: w, Height: h, Format: "jpeg", ContentType: "image/jpeg", Bytes: len(img)},
	}
	addDeliveries(job)
	return job
}

func failedJob(id, email, callbackURL, code, message string) *jobs.Job {
	job := &jobs.Job{ID: id,
		Request: jobs.Request{Source: jobs.SourceUpload, Width: 100, Fit: "contain", Format: "png", Quality: 80,
			Email: email, CallbackURL: callbackURL},
		Error: &jobs.Error{Code: code, Message: message},
	}
	addDeliveries(job)
	return job
}

// addDeliveries does what the API does at submit.
func addDeliveries(job *jobs.Job) {
	if job.Request.Email != "" {
		job.Deliveries = append(job.Deliveries, jobs.Delivery{Channel: jobs.ChannelEmail, Target: view.MaskEmail(job.Request.Email), Status: jobs.DeliveryPending})
	}
	if job.Request.CallbackURL != "" {
		job.Deliveries = append(job.Deliveries, jobs.Delivery{Channel: jobs.ChannelCallback, Target: view.MaskURL(job.Request.CallbackURL), Status: jobs.DeliveryPending})
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
