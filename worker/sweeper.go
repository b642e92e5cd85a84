package worker

import (
	"context"
	"crypto/rand"
	"log/slog"
	"time"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// Enqueuer puts a thumbnail job back on the queue.
type Enqueuer interface {
	EnqueueThumbnail(ctx context.Context, id string) error
	Wake(ctx context.Context)
}

// sweeper re-queues jobs whose worker died. gocraft/work's own dead-pool
// reaper does this too, but only about every 10 minutes; the job record's
// heartbeat tells within THUMBNAILED_STALE_AFTER. Every worker runs one;
// they take turns through a Redis lease so only one acts per period. The
// reaper's later re-run of the same job is harmless: a run that finds the
// job ended skips it.
type sweeper struct {
	log        *slog.Logger
	store      *jobs.Store
	queue      Enqueuer
	staleAfter time.Duration
	id         string
	orphans    *orphans
}

func (s *sweeper) run(ctx context.Context) {
	every := s.staleAfter / 3
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweep(ctx, every)
		}
	}
}

func (s *sweeper) sweep(ctx context.Context, lease time.Duration) {
	lead, err := s.store.Lead(ctx, "sweeper", s.id, lease)
	if err != nil || !lead {
		return
	}
	staleBefore := time.Now().Add(-s.staleAfter)
	ids, err := s.store.Stale(ctx, staleBefore)
	if err != nil {
		s.log.Warn("sweeper could not list stale jobs", "error", err)
		return
	}
	for _, id := range ids {
		rescued, err := s.store.Rescue(ctx, id, staleBefore)
		if err != nil {
			s.log.Warn("sweeper could not rescue job", "job_id", id, "error", err)
			continue
		}
		if !rescued {
			continue
		}
		if err := s.queue.EnqueueThumbnail(ctx, id); err != nil {
			s.log.Error("sweeper could not re-queue job", "job_id", id, "error", err)
			continue
		}
		s.log.Warn("re-queued a job whose worker stopped sending heartbeats", "job_id", id, "stale_after", s.staleAfter.String())
	}
	n, err := s.orphans.sweep(ctx, time.Now())
	if err != nil {
		s.log.Warn("sweeper could not look for stranded queue entries", "error", err)
	}
	if n > 0 {
		s.queue.Wake(ctx)
		s.log.Warn("re-queued queue entries stranded in progress (fetched just before a Redis outage)", "count", n)
	}
}

func newSweeperID() string { return rand.Text() }
