package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// sweeper is the one recovery mechanism. Every worker process runs one; they
// take turns through a Redis lease so only one acts per period. Each round:
//   - work whose lease ran out (its process died) is taken back: a thumbnail
//     run is queued again and counted as a crash, a delivery attempt is
//     recorded as interrupted and the next one scheduled;
//   - queue entries stranded in a live pool's in-progress list are put back
//     (orphans);
//   - the images of expired and erased jobs are deleted;
//   - gocraft/work's dead set is trimmed to the result TTL.
//
// Moving scheduled work to the queue at its time is done by every process
// (moveDue), so that it happens within a fraction of a second.
type sweeper struct {
	w       *Worker
	id      string
	every   time.Duration
	orphans *orphans
	now     func() time.Time
}

func newSweeper(w *Worker) *sweeper {
	s := &sweeper{w: w, id: rand.Text(), every: max(w.cfg.StaleAfter/3, 100*time.Millisecond), now: time.Now}
	s.orphans = &orphans{pool: w.redis.Pool, ns: w.cfg.Namespace, staleAfter: w.cfg.StaleAfter, idle: w.idle, jobTypes: jobTypes}
	return s
}

func (s *sweeper) run(ctx context.Context) {
	every(ctx, s.every, func() {
		sctx, cancel := context.WithTimeout(ctx, max(s.every, 5*time.Second))
		s.sweep(sctx)
		cancel()
	})
}

func (s *sweeper) sweep(ctx context.Context) {
	log := s.w.log
	lead, err := s.w.store.Lead(ctx, "sweeper", s.id, 2*s.every)
	if err != nil || !lead {
		return
	}
	expired, err := s.w.store.ExpiredLeases(ctx, 100)
	if err != nil {
		log.Warn("sweeper could not list expired leases", "error", err)
	}
	for _, l := range expired {
		s.takeBack(ctx, l)
	}
	if n, err := s.orphans.sweep(ctx, s.now()); err != nil {
		log.Warn("sweeper could not look for stranded queue entries", "error", err)
	} else if n > 0 {
		log.Warn("re-queued queue entries stranded in progress (fetched just before a Redis outage)", "count", n)
		s.w.wake()
	}
	s.collect(ctx)
	s.trimDead(ctx)
}

// takeBack recovers the work of a lease that ran out.
func (s *sweeper) takeBack(ctx context.Context, l jobs.Lease) {
	log := s.w.log.With("job_id", l.JobID, "kind", l.Kind)
	if l.Kind == jobs.KindThumbnail {
		rescued, err := s.w.store.Rescue(ctx, l.JobID)
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			_ = s.w.store.DropLease(ctx, l)
		case err != nil:
			log.Warn("sweeper could not take back a job", "error", err)
		case rescued:
			log.Warn("re-queued a job whose worker stopped renewing its lease", "stale_after", s.w.cfg.StaleAfter.String())
		}
		return
	}
	err := s.w.deliverer.Interrupted(ctx, l.Kind, l.JobID)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		_ = s.w.store.DropLease(ctx, l)
	case errors.Is(err, jobs.ErrDeliveryFailed):
		s.bury(ctx, log, l, err)
	case err != nil:
		log.Warn("sweeper could not take back a delivery attempt", "error", err)
	}
}

// bury puts a delivery that failed for good on an interrupted attempt into
// gocraft/work's dead set, as a handler that fails does, so that the web
// UI shows it and its retry redelivers.
func (s *sweeper) bury(ctx context.Context, log *slog.Logger, l jobs.Lease, cause error) {
	job, err := s.w.store.Get(ctx, l.JobID)
	if err != nil {
		return
	}
	d := job.Delivery(l.Kind)
	if d == nil {
		return
	}
	key, entry := s.w.queue.dead(jobs.Work{Kind: l.Kind, JobID: l.JobID, Attempt: d.Attempts, Redeliver: true, KeyName: job.KeyName}, cause.Error())
	conn, err := s.w.redis.Pool.GetContext(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	if _, err := redis.DoContext(conn, ctx, "ZADD", key, s.now().Unix(), entry); err != nil {
		log.Warn("could not add the failed delivery to the dead set", "error", err)
	}
}

// collect deletes the images of jobs that expired or were erased.
func (s *sweeper) collect(ctx context.Context) {
	ids, err := s.w.store.Expired(ctx, 100)
	if err != nil {
		s.w.log.Warn("sweeper could not list expired jobs", "error", err)
		return
	}
	for _, id := range ids {
		if err := s.w.blobs.Delete(ctx, id); err != nil {
			s.w.log.Warn("sweeper could not delete an expired job's images", "job_id", id, "error", err)
			continue
		}
		if err := s.w.store.Collected(ctx, id); err != nil {
			s.w.log.Warn("sweeper could not mark a job's images collected", "job_id", id, "error", err)
		}
	}
}

// trimDead keeps gocraft/work's dead set to the result TTL: every delivery
// that failed for good adds an entry, and the library never removes one.
func (s *sweeper) trimDead(ctx context.Context) {
	conn, err := s.w.redis.Pool.GetContext(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	oldest := s.now().Add(-s.w.cfg.ResultTTL).Unix()
	if _, err := redis.DoContext(conn, ctx, "ZREMRANGEBYSCORE", s.w.cfg.Namespace+":dead", "-inf", oldest); err != nil {
		s.w.log.Warn("sweeper could not trim the dead set", "error", err)
	}
}

// moveDue puts scheduled work (retries of sources and deliveries) on the
// queue at its time, within a fraction of a second: gocraft/work's own
// scheduled set is polled about every second and counts whole seconds.
func (s *sweeper) moveDue(ctx context.Context) {
	const poll = 200 * time.Millisecond
	for ctx.Err() == nil {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, next, err := s.w.store.MoveDue(mctx)
		cancel()
		wait := poll
		if err != nil {
			s.w.log.Debug("could not move due work", "error", err)
			wait = time.Second
		} else if !next.IsZero() {
			wait = min(poll, max(time.Until(next), 0))
		}
		sleep(ctx, wait)
	}
}

// idle reports whether the work a queued entry names has not started: a
// thumbnail still queued, a delivery attempt not yet claimed, or work whose
// job is gone or ended (the entry only needs to leave the list).
func (w *Worker) idle(ctx context.Context, jobType string, args map[string]any) (bool, error) {
	id, _ := args[argJobID].(string)
	job, err := w.store.Get(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if jobType == TypeThumbnail {
		return job.Status != jobs.StatusProcessing, nil
	}
	attempt, _ := args[argAttempt].(string)
	d := job.Delivery(kindOfType[jobType])
	return d == nil || d.Status != jobs.DeliveryPending || atoi(attempt) > d.Attempts, nil
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}
