// Package worker runs the work: it is the only package that talks to
// gocraft/work. It registers every job type, turns each gocraft/work job
// into a plain call (Run for a thumbnail, Deliver for a delivery attempt),
// keeps the leases of running work alive, and runs the one sweeper that takes
// back work whose process died and moves scheduled work to the queue.
package worker

import (
	"context"
	"errors"
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

// Config is what the worker needs, ready to use (config.Load fills it).
type Config struct {
	Namespace   string
	Concurrency int
	JobTimeout  time.Duration
	// StaleAfter is the lease of running work: renewed every third of it,
	// taken back by the sweeper once it runs out.
	StaleAfter time.Duration
	MaxPixels  int64
	// WakeOnEnqueue makes idle lanes start new work at once (a Redis pub/sub
	// nudge) instead of within gocraft/work's polling delay of up to 5 s.
	WakeOnEnqueue bool
	// RetrySchedule spaces the runs of a thumbnail job that failed
	// transiently (a source answering 5xx, a dropped connection).
	RetrySchedule retry.Schedule
	// ResultTTL bounds how long gocraft/work's dead set keeps an entry.
	ResultTTL time.Duration
}

// DefaultRetrySchedule: a transient failure is tried again after 2 s, 10 s
// and 30 s before the job fails with source_unreachable.
var DefaultRetrySchedule = retry.Schedule{2 * time.Second, 10 * time.Second, 30 * time.Second}

// Deliverer makes delivery attempts (the notifier).
type Deliverer interface {
	// Deliver makes attempt number attempt of the job's delivery on channel.
	// It returns an error wrapping jobs.ErrDeliveryFailed when the delivery
	// has failed for good, and other errors when it could not run now.
	Deliver(ctx context.Context, channel, id string, attempt int) error
	// Interrupted records the attempt whose lease ran out as failed, and
	// schedules the next one.
	Interrupted(ctx context.Context, channel, id string) error
	// DeliverFirst makes the first attempt of the job's delivery on channel,
	// claimed for this worker in the transaction that ended the job, with
	// the images just made (nil: none, or read them). It returns what
	// Deliver returns.
	DeliverFirst(ctx context.Context, channel string, job *jobs.Job, images map[string][]byte) error
}

// directChannel is the delivery whose first attempt a worker makes itself as
// a job ends, rather than queueing it: a callback, whose receiver answers in
// milliseconds. Emails stay on the queue.
const directChannel = jobs.ChannelCallback

// Redis is how the worker reaches Redis: Pool for gocraft/work and its own
// reads and writes (every call with a deadline), Dial for a subscription,
// which blocks on reads and so needs a connection without one.
type Redis struct {
	Pool *redis.Pool
	Dial func(context.Context) (redis.Conn, error)
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
	log       *slog.Logger
	cfg       Config
	redis     Redis
	store     *jobs.Store
	fetcher   Fetcher
	blobs     Blobs
	deliverer Deliverer
	engine    thumbnail.Engine
	metrics   *metrics.Metrics
	lanes     []*lane
	buffers   sourceBuffers
	// direct holds a token for every first attempt being made outside the
	// queue (at most Concurrency at once; past that, they are queued), and
	// directs waits for them at Stop.
	direct  chan struct{}
	directs sync.WaitGroup
	queue   Queue
	leases  *leases
	sweeper *sweeper

	stopBg context.CancelFunc
	bgDone sync.WaitGroup
}

// lane is one gocraft/work pool of one worker.
type lane struct {
	pool *work.WorkerPool
	// draining guards against overlapping drains of the pool, which gocraft/work
	// does not survive (a drain may then wait for good); woken records a
	// wake-up that came during a drain, so the lane drains once more after it.
	draining, woken atomic.Bool
}

// New builds the lanes and registers every job type.
func New(logger *slog.Logger, cfg Config, r Redis, store *jobs.Store, fetcher Fetcher, blobs Blobs, deliverer Deliverer, engine thumbnail.Engine, m *metrics.Metrics) *Worker {
	if cfg.RetrySchedule == nil {
		cfg.RetrySchedule = DefaultRetrySchedule
	}
	w := &Worker{log: logger, cfg: cfg, redis: r, store: store, fetcher: fetcher, blobs: blobs,
		deliverer: deliverer, engine: engine, metrics: m, queue: NewQueue(cfg.Namespace),
		buffers: make(sourceBuffers, max(cfg.Concurrency, 1)), direct: make(chan struct{}, max(cfg.Concurrency, 1))}
	w.leases = newLeases(store, cfg.StaleAfter, logger)
	w.sweeper = newSweeper(w)
	for range max(cfg.Concurrency, 1) {
		pool := work.NewWorkerPool(struct{}{}, 1, cfg.Namespace, r.Pool)
		// A handler's error means Redis could not record the work's state:
		// the library retries it a few seconds later. Outcomes of the work
		// itself (retries of a source, of a delivery) are scheduled by the
		// job store, not by the library.
		opts := work.JobOptions{MaxFails: infraRetries, Backoff: infraBackoff}
		pool.JobWithOptions(TypeThumbnail, opts, w.handleThumbnail)
		pool.JobWithOptions(TypeDeliverEmail, opts, w.handleDelivery)
		pool.JobWithOptions(TypeDeliverCallback, opts, w.handleDelivery)
		w.lanes = append(w.lanes, &lane{pool: pool})
	}
	return w
}

// infraRetries bounds the library's retries of a handler that could not
// reach Redis: about an hour of outage, then the entry goes to the dead set
// (the record's lease or the sweeper's orphan search still finds the work).
const infraRetries = 400

func infraBackoff(j *work.Job) int64 { return min(1+j.Fails, 10) }

// handleThumbnail adapts a gocraft/work job to Run.
func (w *Worker) handleThumbnail(j *work.Job) error {
	id := j.ArgString(argJobID)
	if err := j.ArgError(); err != nil || id == "" {
		w.log.Error("thumbnail job without a job id; dropping it", "gocraft_job_id", j.ID)
		return nil
	}
	return w.Run(context.Background(), id)
}

// handleDelivery adapts a gocraft/work job to Deliver. A delivery that
// failed for good goes to the dead set, marked so that the web UI's retry
// of it redelivers.
func (w *Worker) handleDelivery(j *work.Job) error {
	channel := kindOfType[j.Name]
	id := j.ArgString(argJobID)
	attempt, aerr := strconv.Atoi(j.ArgString(argAttempt))
	if err := j.ArgError(); err != nil || id == "" || aerr != nil || attempt < 1 {
		w.log.Error("delivery job with bad arguments; dropping it", "gocraft_job_id", j.ID, "args", fmt.Sprint(j.Args))
		return nil
	}
	ctx := context.Background()
	if j.ArgString(argRedeliver) != "" {
		// Argument errors of an optional argument do not count.
		_, err := w.store.Redeliver(ctx, id, channel)
		switch {
		case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrNoDelivery), errors.Is(err, jobs.ErrDeliveryPending):
			w.log.Info("redelivery from the dead set not needed", "job_id", id, "channel", channel, "reason", err.Error())
			return nil
		case err != nil:
			return err
		}
		w.log.Info("redelivery queued from the dead set", "job_id", id, "channel", channel)
		return nil
	}
	// The attempt's lease (taken when the deliverer claims it) is renewed
	// while it runs, so a slow receiver is not taken for a dead worker.
	release := w.leases.hold(channel, id)
	defer release()
	err := w.deliverer.Deliver(ctx, channel, id, attempt)
	if errors.Is(err, jobs.ErrDeliveryFailed) {
		j.Args[argRedeliver] = "1"
		j.Fails = infraRetries - 1 // the failure that follows is the last: to the dead set now
	}
	return err
}

// Start begins taking work in the background and returns at once: a Redis
// that does not answer cannot hold up the process (its health endpoint,
// its shutdown). The lanes start, the leases are kept, wake-ups are
// listened for, and the sweeper and the due mover run.
func (w *Worker) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.stopBg = cancel
	w.bgDone.Go(func() {
		// gocraft/work's Start writes to Redis before it returns; with a
		// Redis that never answers it returns once the pool's deadlines pass.
		for _, l := range w.lanes {
			if ctx.Err() != nil {
				return
			}
			l.pool.Start()
		}
		w.log.Info("worker started", "concurrency", len(w.lanes), "wake_on_enqueue", w.cfg.WakeOnEnqueue,
			"engine", w.engine.Name(), "engine_version", w.engine.Version())
		if w.cfg.WakeOnEnqueue {
			w.listenForWakeUps(ctx) // a lane that has not started cannot be drained
		}
	})
	w.bgDone.Go(func() { w.leases.run(ctx) })
	w.bgDone.Go(func() { w.sweeper.run(ctx) })
	w.bgDone.Go(func() { w.sweeper.moveDue(ctx) })
}

// Stop stops taking work and waits for the work in flight until ctx ends.
// gocraft/work's own Stop waits without bound, so it runs in the background
// and work still running at the deadline is left to the sweeper, which
// takes it back once its lease runs out.
func (w *Worker) Stop(ctx context.Context) error {
	if w.stopBg == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		w.stopBg()
		w.bgDone.Wait() // the lanes have all started, or Start gave up
		var wg sync.WaitGroup
		for _, l := range w.lanes {
			wg.Go(l.pool.Stop)
		}
		wg.Wait()
		w.directs.Wait() // first attempts the last jobs started
		close(done)
	}()
	select {
	case <-done:
		w.log.Info("worker stopped")
		return nil
	case <-ctx.Done():
		w.log.Warn("worker stop deadline passed with work still running; it will be taken back once its lease runs out")
		return ctx.Err()
	}
}

// listenForWakeUps drains the lanes whenever work is queued: Drain resets
// every idle worker's poll timer, so work queued on an idle service starts
// in milliseconds instead of up to 5 s.
func (w *Worker) listenForWakeUps(ctx context.Context) {
	for ctx.Err() == nil {
		err := w.store.Subscribe(ctx, w.redis.Dial, "wake", func(string) { w.wake() })
		if err != nil && ctx.Err() == nil {
			w.log.Debug("wake-up subscription lost; resubscribing", "error", err)
			sleep(ctx, time.Second)
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
