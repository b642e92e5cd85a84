package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ErrNotFound means the job does not exist or has expired.
var ErrNotFound = errors.New("job not found")

// Store keeps job records, thumbnails and uploaded originals in Redis.
//
// Keys (all under the namespace):
//
//	{ns}:record:{id}    the job record, JSON
//	{ns}:image:{id}     the thumbnail bytes
//	{ns}:upload:{id}    an uploaded original, until its job ends
//	{ns}:processing     sorted set of processing job ids by heartbeat (unix ms)
//	{ns}:idempotency:{scope}:{key}
type Store struct {
	pool *redis.Pool
	ns   string
	ttl  time.Duration
	now  func() time.Time
}

// NewStore returns a Store that keeps everything for ttl.
func NewStore(pool *redis.Pool, namespace string, ttl time.Duration) *Store {
	return &Store{pool: pool, ns: namespace, ttl: ttl, now: time.Now}
}

func (s *Store) recordKey(id string) string { return s.ns + ":record:" + id }
func (s *Store) imageKey(id string) string  { return s.ns + ":image:" + id }
func (s *Store) uploadKey(id string) string { return s.ns + ":upload:" + id }
func (s *Store) processingKey() string      { return s.ns + ":processing" }

// Pool is the Redis pool the store uses; the queue and the worker pool share it.
func (s *Store) Pool() *redis.Pool { return s.pool }

// Namespace is the Redis namespace of the store and the queue.
func (s *Store) Namespace() string { return s.ns }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	if _, err := redis.DoContext(conn, ctx, "PING"); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Create stores a new queued job and, for an upload, the original bytes.
func (s *Store) Create(ctx context.Context, job *Job, upload []byte) error {
	body, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", job.ID, err)
	}
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	ms := s.ttl.Milliseconds()
	if err := conn.Send("MULTI"); err != nil {
		return err
	}
	if upload != nil {
		_ = conn.Send("SET", s.uploadKey(job.ID), upload, "PX", ms)
	}
	_ = conn.Send("SET", s.recordKey(job.ID), body, "PX", ms, "NX")
	reply, err := redis.Values(redis.DoContext(conn, ctx, "EXEC"))
	if err != nil {
		return fmt.Errorf("create job %s: %w", job.ID, err)
	}
	if reply[len(reply)-1] == nil {
		return fmt.Errorf("create job %s: the id is already taken", job.ID)
	}
	return nil
}

// Get returns the job, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Job, error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	return s.get(ctx, conn, id)
}

func (s *Store) get(ctx context.Context, conn redis.Conn, id string) (*Job, error) {
	body, err := redis.Bytes(redis.DoContext(conn, ctx, "GET", s.recordKey(id)))
	if errors.Is(err, redis.ErrNil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	var job Job
	if err := json.Unmarshal(body, &job); err != nil {
		return nil, fmt.Errorf("decode job %s: %w", id, err)
	}
	return &job, nil
}

// Image returns the thumbnail bytes of a succeeded job, or ErrNotFound.
func (s *Store) Image(ctx context.Context, id string) ([]byte, error) {
	return s.getBytes(ctx, s.imageKey(id))
}

// Upload returns the uploaded original of a job that has not ended, or ErrNotFound.
func (s *Store) Upload(ctx context.Context, id string) ([]byte, error) {
	return s.getBytes(ctx, s.uploadKey(id))
}

func (s *Store) getBytes(ctx context.Context, key string) ([]byte, error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	b, err := redis.Bytes(redis.DoContext(conn, ctx, "GET", key))
	if errors.Is(err, redis.ErrNil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return b, nil
}

// errSkip from a change function means "leave the record as it is".
var errSkip = errors.New("no change")

// change is one transition of a record. It may modify job and add commands to
// the transaction (queued after the record is written). Returning errSkip
// leaves the record untouched.
type change func(job *Job, tx redis.Conn) error

// update applies fn to the record under optimistic locking (WATCH/MULTI), so
// the thumbnail job and its delivery jobs can write the same record at once
// without losing each other's changes. keepTTL keeps the record's expiry;
// otherwise it restarts at the store's TTL.
func (s *Store) update(ctx context.Context, id string, keepTTL bool, fn change) (*Job, error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	for attempt := 0; attempt < 50; attempt++ {
		if _, err := redis.DoContext(conn, ctx, "WATCH", s.recordKey(id)); err != nil {
			return nil, fmt.Errorf("watch job %s: %w", id, err)
		}
		job, err := s.get(ctx, conn, id)
		if err != nil {
			_, _ = conn.Do("UNWATCH")
			return nil, err
		}
		if err := conn.Send("MULTI"); err != nil {
			return nil, err
		}
		if err := fn(job, conn); err != nil {
			_, _ = conn.Do("DISCARD")
			if errors.Is(err, errSkip) {
				return job, nil
			}
			return job, err
		}
		body, err := json.Marshal(job)
		if err != nil {
			_, _ = conn.Do("DISCARD")
			return nil, fmt.Errorf("encode job %s: %w", id, err)
		}
		if keepTTL {
			_ = conn.Send("SET", s.recordKey(id), body, "KEEPTTL")
		} else {
			_ = conn.Send("SET", s.recordKey(id), body, "PX", s.ttl.Milliseconds())
		}
		reply, err := redis.DoContext(conn, ctx, "EXEC")
		if err != nil {
			return nil, fmt.Errorf("update job %s: %w", id, err)
		}
		if reply != nil {
			return job, nil
		}
		// Another writer changed the record between WATCH and EXEC: read it again.
	}
	return nil, fmt.Errorf("update job %s: too much contention", id)
}

// BeginResult says what a worker should do with a job it picked up.
type BeginResult int

const (
	// Run: the job is now processing; do the work.
	Run BeginResult = iota
	// Skip: the job already ended (a duplicate or a late re-run); do nothing.
	Skip
	// Crashed: earlier runs died too often; the job has been failed.
	Crashed
)

// CodeWorkerCrashed is the error code of a job whose runs kept dying.
const CodeWorkerCrashed = "worker_crashed"

// Begin records the start of a run before any decoding happens. A run that
// finds the job still marked processing, with a heartbeat older than
// staleAfter, knows the run before it died (the queue re-runs such jobs
// without counting them); after maxCrashes such deaths the job fails with
// worker_crashed instead of looping on a poison image. A run that finds
// another run alive (a fresh heartbeat) is a duplicate and skips.
func (s *Store) Begin(ctx context.Context, id string, maxCrashes int, staleAfter time.Duration) (*Job, BeginResult, error) {
	result := Run
	job, err := s.update(ctx, id, false, func(job *Job, tx redis.Conn) error {
		now := s.now().UTC()
		if job.Status.Ended() {
			result = Skip
			return errSkip
		}
		if job.Status == StatusProcessing {
			if job.HeartbeatAt != nil && now.Sub(*job.HeartbeatAt) < staleAfter {
				result = Skip
				return errSkip
			}
			job.Crashes++
		}
		if job.Crashes >= maxCrashes {
			result = Crashed
			s.finish(job, tx, now, StatusFailed)
			job.Error = &Error{Code: CodeWorkerCrashed, Message: fmt.Sprintf(
				"the worker processing this image stopped unexpectedly %d times; the image may be too demanding to process", job.Crashes)}
			return nil
		}
		result = Run
		job.Status = StatusProcessing
		job.Attempts++
		if job.StartedAt == nil {
			job.StartedAt = &now
		}
		job.HeartbeatAt = &now
		_ = tx.Send("ZADD", s.processingKey(), now.UnixMilli(), id)
		return nil
	})
	return job, result, err
}

// Heartbeat says a processing job's worker is alive.
func (s *Store) Heartbeat(ctx context.Context, id string) error {
	_, err := s.update(ctx, id, true, func(job *Job, tx redis.Conn) error {
		if job.Status != StatusProcessing {
			return errSkip
		}
		now := s.now().UTC()
		job.HeartbeatAt = &now
		_ = tx.Send("ZADD", s.processingKey(), now.UnixMilli(), id)
		return nil
	})
	return err
}

// Requeue puts a processing job back to queued after a transient failure;
// the queue will run it again.
func (s *Store) Requeue(ctx context.Context, id string) error {
	_, err := s.update(ctx, id, false, func(job *Job, tx redis.Conn) error {
		if job.Status != StatusProcessing {
			return errSkip
		}
		job.Status = StatusQueued
		job.HeartbeatAt = nil
		_ = tx.Send("ZREM", s.processingKey(), id)
		return nil
	})
	return err
}

// finish moves a job to its final status: the upload goes, the heartbeat
// entry goes, and deliveries wait to be sent.
func (s *Store) finish(job *Job, tx redis.Conn, now time.Time, status Status) {
	job.Status = status
	job.FinishedAt = &now
	job.HeartbeatAt = nil
	_ = tx.Send("DEL", s.uploadKey(job.ID))
	_ = tx.Send("ZREM", s.processingKey(), job.ID)
}

// Succeed stores the thumbnail and ends the job succeeded. It returns
// ended=false when the job had already ended (a duplicate run), in which
// case nothing is written.
func (s *Store) Succeed(ctx context.Context, id string, result Result, image []byte) (job *Job, ended bool, err error) {
	job, err = s.update(ctx, id, false, func(job *Job, tx redis.Conn) error {
		if job.Status.Ended() {
			return errSkip
		}
		ended = true
		s.finish(job, tx, s.now().UTC(), StatusSucceeded)
		result.Bytes = len(image)
		job.Result = &result
		job.Error = nil
		_ = tx.Send("SET", s.imageKey(id), image, "PX", s.ttl.Milliseconds())
		return nil
	})
	return job, ended, err
}

// Fail ends the job failed with a code and a message. It returns ended=false
// when the job had already ended.
func (s *Store) Fail(ctx context.Context, id string, code, message string) (job *Job, ended bool, err error) {
	job, err = s.update(ctx, id, false, func(job *Job, tx redis.Conn) error {
		if job.Status.Ended() {
			return errSkip
		}
		ended = true
		s.finish(job, tx, s.now().UTC(), StatusFailed)
		job.Error = &Error{Code: code, Message: message}
		return nil
	})
	return job, ended, err
}

// UpdateDelivery changes one delivery of a job. fn returning an error
// leaves the record unchanged and returns that error.
func (s *Store) UpdateDelivery(ctx context.Context, id, channel string, fn func(job *Job, d *Delivery) error) (*Job, error) {
	return s.update(ctx, id, true, func(job *Job, tx redis.Conn) error {
		d := job.Delivery(channel)
		if d == nil {
			return fmt.Errorf("job %s has no %s delivery", id, channel)
		}
		return fn(job, d)
	})
}

// Stale returns processing jobs whose last heartbeat is older than before.
func (s *Store) Stale(ctx context.Context, before time.Time) ([]string, error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	ids, err := redis.Strings(redis.DoContext(conn, ctx, "ZRANGEBYSCORE", s.processingKey(), "-inf", before.UnixMilli()))
	if err != nil {
		return nil, fmt.Errorf("stale jobs: %w", err)
	}
	return ids, nil
}

// Forget drops a processing entry whose record has expired.
func (s *Store) Forget(ctx context.Context, id string) error {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	_, err = redis.DoContext(conn, ctx, "ZREM", s.processingKey(), id)
	return err
}

// Rescue takes back a processing job whose heartbeat is older than
// staleBefore, because its worker died: the death counts as a crash and the
// job is queued again, out of the processing set, so it is not rescued twice
// while it waits its turn. It reports whether this caller made the rescue;
// the caller then puts the job on the queue.
func (s *Store) Rescue(ctx context.Context, id string, staleBefore time.Time) (bool, error) {
	rescued := false
	_, err := s.update(ctx, id, false, func(job *Job, tx redis.Conn) error {
		if job.Status != StatusProcessing {
			_ = tx.Send("ZREM", s.processingKey(), id)
			return nil
		}
		if job.HeartbeatAt != nil && job.HeartbeatAt.After(staleBefore) {
			return errSkip
		}
		rescued = true
		job.Crashes++
		job.Status = StatusQueued
		job.HeartbeatAt = nil
		_ = tx.Send("ZREM", s.processingKey(), id)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return false, s.Forget(ctx, id)
	}
	return rescued, err
}

// lead takes or renews a lease: the holder keeps it while it renews in time.
var lead = redis.NewScript(1, `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// Lead makes the caller the one process to act for name until ttl passes,
// or reports that another holds it. Work every process could do, but only
// one should, takes turns this way; a holder that renews in time keeps it.
func (s *Store) Lead(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return false, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	ok, err := redis.Bool(lead.DoContext(ctx, conn, s.ns+":lead:"+name, holder, ttl.Milliseconds()))
	if err != nil {
		return false, fmt.Errorf("lead %s: %w", name, err)
	}
	return ok, nil
}
