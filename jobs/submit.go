package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// IdempotencyWindow is how long an Idempotency-Key is remembered.
const IdempotencyWindow = 24 * time.Hour

// Idempotency is a client's Idempotency-Key with the fingerprint of the
// request that carried it.
type Idempotency struct {
	Scope       string // the client: "key:{owner}" or "ip:{address}"
	Key         string
	Fingerprint string
}

// ErrKeyReused: the Idempotency-Key was used before with a different request.
var ErrKeyReused = errors.New("the Idempotency-Key was used with a different request")

// Submit records a new job and queues its run, in one transaction with the
// claim of its Idempotency-Key (when idem is not nil), its place in the
// client's list and its expiry: all of it happens, or none. When the key
// already names a job that still exists, Submit writes nothing and returns
// that job with created=false (or ErrKeyReused when the request differs).
// Concurrent submits with one key make one job.
func (s *Store) Submit(ctx context.Context, job *Job, idem *Idempotency) (*Job, bool, error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, false, err
	}
	defer redisconn.Release(conn)
	for range 50 {
		if idem != nil {
			first, err := s.claimed(ctx, conn, idem)
			if err != nil || first != nil {
				return first, false, err
			}
		}
		// The id must be new. Its record is WATCHed, so a record made
		// meanwhile aborts the transaction; one that exists already stops the
		// submit before anything is written (SET NX alone would refuse the
		// record but still run the queue push, the index and the key).
		taken, err := s.taken(ctx, conn, job.ID)
		if err != nil || taken {
			_, _ = conn.Do("UNWATCH")
			if err == nil {
				err = fmt.Errorf("create job %s: the id is already taken", job.ID)
			}
			return nil, false, err
		}
		t := &tx{s: s, conn: conn, now: s.clock()}
		t.push(job.work(KindThumbnail, 0))
		if job.Client != "" {
			created := job.CreatedAt.UnixMilli()
			t.send("ZADD", s.clientKey(job.Client), created, job.ID)
			t.send("ZREMRANGEBYSCORE", s.clientKey(job.Client), "-inf", created-2*s.ttl.Milliseconds())
			t.send("PEXPIRE", s.clientKey(job.Client), 2*s.ttl.Milliseconds())
		}
		if idem != nil {
			t.send("SET", s.idemKey(idem.Scope, idem.Key), job.ID+" "+idem.Fingerprint, "PX", IdempotencyWindow.Milliseconds())
		}
		reply, err := s.commit(ctx, conn, job, t, true)
		if err != nil {
			return nil, false, err
		}
		if reply == nil {
			continue // the key was claimed meanwhile: answer with that job
		}
		if values, _ := reply.([]any); len(values) > 0 && values[0] == nil {
			return nil, false, fmt.Errorf("create job %s: the id is already taken", job.ID)
		}
		return job, true, nil
	}
	return nil, false, fmt.Errorf("submit job %s: too much contention on its Idempotency-Key", job.ID)
}

// taken WATCHes id's record and reports whether it exists.
func (s *Store) taken(ctx context.Context, conn redis.Conn, id string) (bool, error) {
	if _, err := redis.DoContext(conn, ctx, "WATCH", s.recordKey(id)); err != nil {
		return false, unavailable("watch job "+id, err)
	}
	n, err := redis.Int(redis.DoContext(conn, ctx, "EXISTS", s.recordKey(id)))
	if err != nil {
		return false, unavailable("job "+id, err)
	}
	return n == 1, nil
}

// claimed WATCHes the key and returns the job it names, or nil when it is
// free (unused, or naming a job that no longer exists: an expired or erased
// job's key is taken over).
func (s *Store) claimed(ctx context.Context, conn redis.Conn, idem *Idempotency) (*Job, error) {
	key := s.idemKey(idem.Scope, idem.Key)
	if _, err := redis.DoContext(conn, ctx, "WATCH", key); err != nil {
		return nil, unavailable("watch idempotency key", err)
	}
	v, err := redis.String(redis.DoContext(conn, ctx, "GET", key))
	if errors.Is(err, redis.ErrNil) {
		return nil, nil
	}
	if err != nil {
		_, _ = conn.Do("UNWATCH")
		return nil, unavailable("idempotency key", err)
	}
	id, fingerprint, _ := strings.Cut(v, " ")
	first, err := s.get(ctx, conn, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	_, _ = conn.Do("UNWATCH")
	if err != nil {
		return nil, err
	}
	if fingerprint != idem.Fingerprint {
		return nil, ErrKeyReused
	}
	return first, nil
}

// Reserve marks id's images as due for collection at until, before any of
// them is written (an upload streamed to the blob store ahead of Submit):
// should the submit never happen, the sweeper still deletes them. Submit
// moves the mark to the job's own expiry.
func (s *Store) Reserve(ctx context.Context, id string, until time.Time) error {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_, err = redis.DoContext(conn, ctx, "ZADD", s.expiryKey(), "NX", until.UnixMilli(), id)
	return unavailable("reserve "+id, err)
}
