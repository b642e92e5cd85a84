package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
)

// Job types. Every worker process registers all of them: gocraft/work moves a
// job of a type its pool does not know to the dead set.
const (
	TypeThumbnail       = "thumbnail"
	TypeDeliverEmail    = "deliver_email"
	TypeDeliverCallback = "deliver_callback"
	ArgJobID            = "job_id"
	ArgAttempt          = "attempt"
	// ArgWatchdog marks a delivery run queued only to check on an attempt
	// that another run held.
	ArgWatchdog = "watchdog"
)

// Queue puts work on the gocraft/work queues and wakes idle workers.
type Queue struct {
	enq       *work.Enqueuer
	pool      *redis.Pool
	ns        string
	onEnqueue func(jobType string)
}

// OnEnqueue sets a function told of every job put on a queue (for metrics).
// Call it before the queue is used.
func (q *Queue) OnEnqueue(f func(jobType string)) { q.onEnqueue = f }

func (q *Queue) enqueued(jobType string) {
	if q.onEnqueue != nil {
		q.onEnqueue(jobType)
	}
}

// NewQueue returns a Queue on the store's Redis and namespace.
func NewQueue(s *Store) *Queue {
	return &Queue{enq: work.NewEnqueuer(s.ns, s.pool), pool: s.pool, ns: s.ns}
}

// WakeChannel is the Redis pub/sub channel on which enqueuers tell idle
// workers that there is work (gocraft/work's idle workers otherwise sleep up
// to 5 s between polls).
func WakeChannel(namespace string) string { return namespace + ":wake" }

// EnqueueThumbnail queues the thumbnail job for id. Ids travel as strings:
// gocraft/work turns numbers in args into float64.
func (q *Queue) EnqueueThumbnail(ctx context.Context, id string) error {
	if _, err := q.enq.Enqueue(TypeThumbnail, work.Q{ArgJobID: id}); err != nil {
		return fmt.Errorf("enqueue thumbnail %s: %w", id, err)
	}
	q.enqueued(TypeThumbnail)
	q.wake(ctx)
	return nil
}

// EnqueueDelivery queues delivery attempt number attempt (1-based) of a job
// on jobType after delay. A delay runs through gocraft/work's scheduled set,
// so no worker sits waiting for it.
func (q *Queue) EnqueueDelivery(ctx context.Context, jobType, id string, attempt int, delay time.Duration) error {
	args := work.Q{ArgJobID: id, ArgAttempt: fmt.Sprint(attempt)}
	var err error
	if delay <= 0 {
		_, err = q.enq.Enqueue(jobType, args)
		if err == nil {
			q.wake(ctx)
		}
	} else {
		secs := int64((delay + time.Second - 1) / time.Second)
		_, err = q.enq.EnqueueIn(jobType, secs, args)
	}
	if err != nil {
		return fmt.Errorf("enqueue %s %s: %w", jobType, id, err)
	}
	q.enqueued(jobType)
	return nil
}

// EnqueueDeliveryCheck queues a run that only checks, after delay, that
// attempt of a delivery held by another run has finished, and takes it over
// if that run died.
func (q *Queue) EnqueueDeliveryCheck(ctx context.Context, jobType, id string, attempt int, delay time.Duration) error {
	secs := int64((delay + time.Second - 1) / time.Second)
	if _, err := q.enq.EnqueueIn(jobType, secs, work.Q{ArgJobID: id, ArgAttempt: fmt.Sprint(attempt), ArgWatchdog: "1"}); err != nil {
		return fmt.Errorf("enqueue check of %s %s: %w", jobType, id, err)
	}
	return nil
}

// Wake tells idle workers there is work. It is best effort: a lost wake-up
// only costs the library's own polling delay.
func (q *Queue) Wake(ctx context.Context) { q.wake(ctx) }

func (q *Queue) wake(ctx context.Context) {
	conn, err := q.pool.GetContext(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = redis.DoContext(conn, ctx, "PUBLISH", WakeChannel(q.ns), "1")
}
