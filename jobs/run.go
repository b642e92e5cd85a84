package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/codes"
)

// BeginResult says what a worker should do with a job it picked up.
type BeginResult int

const (
	// Run: the job is now processing and this run holds its lease; do the work.
	Run BeginResult = iota
	// Skip: the job already ended, or another run holds it; do nothing.
	Skip
	// Crashed: earlier runs died too often; the job has been failed.
	Crashed
)

// Begin records the start of a run before any decoding happens, and gives
// the run the job's lease. A run that finds the job processing under a
// lease that has run out knows the run before it died (the queue re-runs
// such jobs without counting them); after maxCrashes such deaths the job
// fails with worker_crashed instead of looping on a poison image. A run
// that finds another run's lease alive is a duplicate and skips.
func (s *Store) Begin(ctx context.Context, id string, maxCrashes int) (*Job, BeginResult, error) {
	result := Run
	job, err := s.update(ctx, id, func(job *Job, t *tx) error {
		if job.Status.Ended() {
			result = Skip
			return errSkip
		}
		if job.Status == StatusProcessing {
			alive, err := s.leaseAlive(ctx, t.conn, KindThumbnail, id, t.now)
			if err != nil {
				return err
			}
			if alive {
				result = Skip
				return errSkip
			}
			job.Crashes++
		}
		if job.Crashes >= maxCrashes {
			result = Crashed
			s.finish(job, t, StatusFailed, nil)
			job.Error = &Error{Code: codes.WorkerCrashed, Message: fmt.Sprintf(
				"the worker processing this image stopped unexpectedly %d times; the image may be too demanding to process", job.Crashes)}
			return nil
		}
		result = Run
		job.Status = StatusProcessing
		job.Attempts++
		if job.StartedAt == nil {
			job.StartedAt = &t.now
		}
		t.takeLease(KindThumbnail, id)
		return nil
	})
	return job, result, err
}

// leaseAlive reports whether kind:id holds a lease that has not run out.
func (s *Store) leaseAlive(ctx context.Context, conn redis.Conn, kind, id string, now time.Time) (bool, error) {
	until, err := redis.Int64(redis.DoContext(conn, ctx, "ZSCORE", s.leasesKey(), leaseMember(kind, id)))
	if errors.Is(err, redis.ErrNil) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("lease of "+id, err)
	}
	return until > now.UnixMilli(), nil
}

// finish moves a job to its final status: the lease goes, the record now
// expires the TTL after this moment, and the first attempt of every
// delivery is queued in the same transaction, or, for a channel in direct,
// claimed for the caller as Claim would claim it (attempt 1 started, its
// lease taken): the caller makes that attempt at once, without a trip
// through the queue. Should the caller die first, the lease runs out and
// the sweeper records the attempt as interrupted and schedules the next,
// as for any attempt whose run died.
func (s *Store) finish(job *Job, t *tx, status Status, direct []string) {
	job.Status = status
	job.FinishedAt = &t.now
	job.ExpiresAt = t.now.Add(s.ttl)
	t.dropLease(KindThumbnail, job.ID)
	for i := range job.Deliveries {
		d := &job.Deliveries[i]
		if d.Status != DeliveryPending || d.Attempts != 0 {
			continue
		}
		if slices.Contains(direct, d.Channel) {
			d.Attempts = 1
			d.LastAttemptAt = &t.now
			d.NextAttemptAt = nil
			t.takeLease(d.Channel, job.ID)
			continue
		}
		t.push(job.work(d.Channel, 1))
	}
}

// Succeed ends the job succeeded with its result (the images are already in
// the blob store). It returns ended=false, writing nothing, when the job had
// already ended (a duplicate run). The first attempt of each delivery in
// direct that the job has is claimed for the caller (see finish); the
// others are queued.
func (s *Store) Succeed(ctx context.Context, id string, result Result, direct ...string) (job *Job, ended bool, err error) {
	return s.end(ctx, id, StatusSucceeded, direct, func(job *Job) {
		job.Result = &result
		job.Error = nil
	})
}

// Fail ends the job failed with a code and a message. It returns
// ended=false when the job had already ended. direct is as for Succeed.
func (s *Store) Fail(ctx context.Context, id string, code, message string, direct ...string) (job *Job, ended bool, err error) {
	return s.end(ctx, id, StatusFailed, direct, func(job *Job) {
		job.Error = &Error{Code: code, Message: message}
	})
}

// end ends the job with status, and set writes the outcome into it, unless
// it had already ended.
func (s *Store) end(ctx context.Context, id string, status Status, direct []string, set func(*Job)) (job *Job, ended bool, err error) {
	job, err = s.update(ctx, id, func(job *Job, t *tx) error {
		ended = false // decided afresh on every try of the transaction
		if job.Status.Ended() {
			return errSkip
		}
		ended = true
		s.finish(job, t, status, direct)
		set(job)
		return nil
	})
	return job, ended, err
}

// Retry puts a processing job back to queued after a transient failure,
// to run again after delay.
func (s *Store) Retry(ctx context.Context, id string, delay time.Duration) (*Job, error) {
	return s.update(ctx, id, func(job *Job, t *tx) error {
		if job.Status != StatusProcessing {
			return errSkip
		}
		job.Status = StatusQueued
		job.Retries++
		t.dropLease(KindThumbnail, id)
		t.due(job.work(KindThumbnail, 0), t.now.Add(delay))
		return nil
	})
}

// Rescue takes back a processing job whose lease ran out, because its
// worker died: the death counts as a crash and the job is queued again in
// the same transaction. It reports whether this caller made the rescue.
func (s *Store) Rescue(ctx context.Context, id string) (bool, error) {
	return s.takeBack(ctx, KindThumbnail, id, func(job *Job) bool {
		return job.Status == StatusProcessing
	}, func(job *Job, t *tx) {
		job.Crashes++
		job.Status = StatusQueued
		t.dropLease(KindThumbnail, id)
		t.push(job.work(KindThumbnail, 0))
	})
}

// takeBack runs take on the job, in one transaction, when its work of kind
// is still recorded as running but holds a lease that ran out: the process
// running it died. A lease left over by work no longer running is dropped.
// It reports whether take ran.
func (s *Store) takeBack(ctx context.Context, kind, id string, running func(*Job) bool, take func(*Job, *tx)) (bool, error) {
	took, stale := false, false
	_, err := s.update(ctx, id, func(job *Job, t *tx) error {
		took, stale = false, false // decided afresh on every try of the transaction
		if !running(job) {
			stale = true // nothing is running: only the lease is left over
			return errSkip
		}
		alive, err := s.leaseAlive(ctx, t.conn, kind, id, t.now)
		if err != nil {
			return err
		}
		if alive {
			return errSkip
		}
		took = true
		take(job, t)
		return nil
	})
	if err == nil && stale {
		err = s.dropExpiredLease(ctx, kind, id)
	}
	return took, err
}
