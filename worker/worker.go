// Package worker runs the gocraft/work pool: the thumbnail job and, through
// the notifier, the delivery jobs. Every worker process registers every job
// type, because gocraft/work sends a job of a type its pool does not know to
// the dead set.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// Config is what the worker needs from the service configuration.
type Config struct {
	Concurrency   int
	JobTimeout    time.Duration
	StaleAfter    time.Duration
	MaxPixels     int64
	WakeOnEnqueue bool
	// RetrySchedule spaces the runs of a thumbnail job that failed
	// transiently (a source answering 5xx, a dropped connection); nil
	// means DefaultRetrySchedule. gocraft/work counts in whole seconds.
	RetrySchedule retry.Schedule
}

// DefaultRetrySchedule: a transient failure is tried again after 2 s, 10 s
// and 30 s before the job fails with source_unreachable.
var DefaultRetrySchedule = retry.Schedule{2 * time.Second, 10 * time.Second, 30 * time.Second}

// Fetcher downloads a source image (safehttp.Client in production).
type Fetcher interface {
	Fetch(ctx context.Context, rawURL string) ([]byte, error)
}

// Notifier pushes a finished job to the client and delivers it.
type Notifier interface {
	JobEnded(ctx context.Context, job *jobs.Job) error
	DeliverEmail(j *work.Job) error
	DeliverCallback(j *work.Job) error
}

// maxCrashes is how many runs of one job may die before the job fails with
// worker_crashed instead of taking down worker after worker.
const maxCrashes = 3

// Worker is one worker process: Concurrency lanes, each a gocraft/work pool
// of one worker, so that a wake-up reaches every idle lane at once. (A pool's
// Drain returns only when all its workers have found the queue empty: with
// one pool of N workers, a busy worker held the drain and the idle ones slept
// through the wake-ups that came meanwhile, for up to 5 s.)
type Worker struct {
	log      *slog.Logger
	cfg      Config
	store    *jobs.Store
	fetcher  Fetcher
	notifier Notifier
	engine   thumbnail.Engine
	metrics  *metrics.Metrics
	lanes    []*lane

	sweeper *sweeper
	stopBg  context.CancelFunc
	bgDone  sync.WaitGroup
}

// lane is one gocraft/work pool of one worker.
type lane struct {
	pool *work.WorkerPool
	// draining guards against overlapping drains of the pool, which gocraft/work
	// does not survive (a drain may then wait for good); woken records a
	// wake-up that came during a drain, so the lane drains once more after it.
	draining, woken atomic.Bool
}

// New builds the pool and registers every job type.
func New(logger *slog.Logger, cfg Config, store *jobs.Store, queue Enqueuer, fetcher Fetcher, notifier Notifier, engine thumbnail.Engine, m *metrics.Metrics) *Worker {
	w := &Worker{log: logger, cfg: cfg, store: store, fetcher: fetcher, notifier: notifier, engine: engine, metrics: m}
	w.sweeper = &sweeper{log: logger, store: store, queue: queue, staleAfter: cfg.StaleAfter, id: newSweeperID(),
		orphans: &orphans{pool: store.Pool(), ns: store.Namespace(), staleAfter: cfg.StaleAfter, idle: w.idle,
			jobTypes: []string{jobs.TypeThumbnail, jobs.TypeDeliverEmail, jobs.TypeDeliverCallback}}}
	if w.cfg.RetrySchedule == nil {
		w.cfg.RetrySchedule = DefaultRetrySchedule
	}
	for range max(cfg.Concurrency, 1) {
		pool := work.NewWorkerPool(struct{}{}, 1, store.Namespace(), store.Pool())
		pool.JobWithOptions(jobs.TypeThumbnail, work.JobOptions{
			MaxFails: uint(w.cfg.RetrySchedule.Attempts()),
			Backoff:  w.backoff,
		}, w.handleThumbnail)
		// Deliveries schedule their own retries with EnqueueIn; a delivery
		// handler fails its gocraft job only when the delivery has finally
		// failed, so it lands in the dead set at once.
		pool.JobWithOptions(jobs.TypeDeliverEmail, work.JobOptions{MaxFails: 1}, notifier.DeliverEmail)
		pool.JobWithOptions(jobs.TypeDeliverCallback, work.JobOptions{MaxFails: 1}, notifier.DeliverCallback)
		w.lanes = append(w.lanes, &lane{pool: pool})
	}
	return w
}

// idle reports whether the work a queued job names has not started: a
// thumbnail still queued, or a delivery attempt not yet claimed.
func (w *Worker) idle(ctx context.Context, jobType string, args map[string]any) (bool, error) {
	id, _ := args[jobs.ArgJobID].(string)
	job, err := w.store.Get(ctx, id)
	if err != nil {
		return false, err
	}
	if jobType == jobs.TypeThumbnail {
		return job.Status == jobs.StatusQueued, nil
	}
	attempt, _ := strconv.Atoi(fmt.Sprint(args[jobs.ArgAttempt]))
	channel := map[string]string{jobs.TypeDeliverEmail: jobs.ChannelEmail, jobs.TypeDeliverCallback: jobs.ChannelCallback}[jobType]
	d := job.Delivery(channel)
	return d != nil && d.Status == jobs.DeliveryPending && d.Attempts < attempt, nil
}

// backoff is the wait before the next run of a job that failed j.Fails times.
func (w *Worker) backoff(j *work.Job) int64 {
	d, ok := w.cfg.RetrySchedule.Delay(int(j.Fails))
	if !ok {
		d = w.cfg.RetrySchedule[len(w.cfg.RetrySchedule)-1]
	}
	return int64(d / time.Second)
}

// Start begins taking jobs, listens for wake-ups from enqueuers, and
// sweeps for jobs whose worker died.
func (w *Worker) Start() {
	for _, l := range w.lanes {
		l.pool.Start()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stopBg = cancel
	if w.cfg.WakeOnEnqueue {
		w.bgDone.Add(1)
		go func() {
			defer w.bgDone.Done()
			w.listenForWakeUps(ctx)
		}()
	}
	w.bgDone.Add(1)
	go func() {
		defer w.bgDone.Done()
		w.sweeper.run(ctx)
	}()
	w.log.Info("worker started", "concurrency", w.cfg.Concurrency, "wake_on_enqueue", w.cfg.WakeOnEnqueue, "engine", w.engine.Name(), "engine_version", w.engine.Version())
}

// Stop stops taking jobs and waits for the ones in flight until ctx ends.
// gocraft/work's own Stop waits without bound, so it runs in the background
// and a job still running at the deadline is left to the crash recovery.
func (w *Worker) Stop(ctx context.Context) error {
	if w.stopBg != nil {
		w.stopBg()
		w.bgDone.Wait()
	}
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, l := range w.lanes {
			wg.Go(l.pool.Stop)
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		w.log.Info("worker stopped")
		return nil
	case <-ctx.Done():
		w.log.Warn("worker stop deadline passed with jobs still running; they will be re-run elsewhere")
		return ctx.Err()
	}
}

// listenForWakeUps drains the lanes whenever an enqueuer publishes on
// the wake channel: Drain resets every idle worker's poll timer, so a job
// submitted to an idle service starts in milliseconds instead of up to 5 s.
func (w *Worker) listenForWakeUps(ctx context.Context) {
	for ctx.Err() == nil {
		if err := w.subscribe(ctx); err != nil && ctx.Err() == nil {
			w.log.Debug("wake-up subscription lost; resubscribing", "error", err)
			sleep(ctx, time.Second)
		}
	}
}

// subscribe receives wake-ups until the connection breaks or ctx ends.
func (w *Worker) subscribe(ctx context.Context) error {
	conn, err := w.store.Pool().GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	psc := redis.PubSubConn{Conn: conn}
	if err := psc.Subscribe(jobs.WakeChannel(w.store.Namespace())); err != nil {
		return err
	}
	for {
		switch v := psc.ReceiveContext(ctx).(type) {
		case redis.Message:
			w.wake()
		case error:
			return v
		}
	}
}

// wake drains every lane, so idle ones poll the queue now. A lane already
// draining (busy with a job, or working through the queue) notes the
// wake-up and drains again when it is done.
func (w *Worker) wake() {
	for _, l := range w.lanes {
		l.wake()
	}
}

func (l *lane) wake() {
	l.woken.Store(true)
	if !l.draining.CompareAndSwap(false, true) {
		return
	}
	go func() {
		for l.woken.Swap(false) {
			l.pool.Drain()
		}
		l.draining.Store(false)
		// A wake-up between the last Swap and the Store above found the
		// lane draining and left it to this goroutine: take it up.
		if l.woken.Load() {
			l.wake()
		}
	}()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
