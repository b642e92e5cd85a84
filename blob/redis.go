package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// redisStore keeps all objects of a job in one hash, {ns}:blob:{job}, field =
// name, which expires with the job's record (PEXPIREAT): expiry is native and
// Delete is one DEL.
//
// Every call ends when ctx does, even against a Redis that accepts connections
// and never answers: every command is written and answered within
// redis.DoContext. Only the small MULTI and PEXPIREAT of Put wait in the write
// buffer (Send) for the next DoContext; the bytes themselves never go through
// Send, whose write to the socket would block outside ctx once a stalled server
// stops reading.
type redisStore struct {
	pool *redis.Pool
	ns   string
}

func (s *redisStore) key(job string) string { return s.ns + ":blob:" + job }

func (s *redisStore) Name() string   { return BackendRedis }
func (s *redisStore) Buffered() bool { return true }

func (s *redisStore) Put(ctx context.Context, job, name string, r io.Reader, expires time.Time) (int64, error) {
	if err := checkKey(job, name); err != nil {
		return 0, err
	}
	if expires.IsZero() {
		// Redis runs with noeviction: an object without expiry would stay forever.
		return 0, fmt.Errorf("blob: put %s/%s: no expiry given; every object in Redis must expire", job, name)
	}
	b, err := readAll(r)
	if err != nil {
		return 0, fmt.Errorf("blob: put %s/%s: read: %w", job, name, err)
	}
	op := "put " + job + "/" + name
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return 0, redisError(op, err)
	}
	defer redisconn.Release(conn) // it may hold an unfinished MULTI
	key := s.key(job)
	// MULTI waits in the write buffer and goes out with HSET: two round trips in all.
	if err := conn.Send("MULTI"); err != nil {
		return 0, redisError(op, err)
	}
	if _, err := redis.DoContext(conn, ctx, "HSET", key, name, b); err != nil {
		return 0, redisError(op, err) // OOM is refused here, while queueing
	}
	if err := conn.Send("PEXPIREAT", key, expires.UnixMilli()); err != nil {
		return 0, redisError(op, err)
	}
	replies, err := redis.Values(redis.DoContext(conn, ctx, "EXEC"))
	if err != nil {
		return 0, redisError(op, err)
	}
	for _, reply := range replies {
		if e, ok := reply.(redis.Error); ok {
			return 0, redisError(op, e)
		}
	}
	return int64(len(b)), nil
}

func (s *redisStore) Get(ctx context.Context, job, name string) ([]byte, error) {
	if err := checkKey(job, name); err != nil {
		return nil, err
	}
	op := "get " + job + "/" + name
	reply, err := s.do(ctx, "HGET", s.key(job), name)
	if err != nil {
		return nil, redisError(op, err)
	}
	if reply == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, job, name)
	}
	b, err := redis.Bytes(reply, nil)
	if err != nil {
		return nil, fmt.Errorf("blob: redis %s: %w", op, err)
	}
	return b, nil
}

func (s *redisStore) Delete(ctx context.Context, job string) error {
	if err := checkPart("job id", job); err != nil {
		return err
	}
	if _, err := s.do(ctx, "DEL", s.key(job)); err != nil {
		return redisError("delete "+job, err)
	}
	return nil
}

func (s *redisStore) DeleteOne(ctx context.Context, job, name string) error {
	if err := checkKey(job, name); err != nil {
		return err
	}
	// Redis removes the hash with its last field.
	if _, err := s.do(ctx, "HDEL", s.key(job), name); err != nil {
		return redisError("delete "+job+"/"+name, err)
	}
	return nil
}

func (s *redisStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	if _, err := s.do(ctx, "PING"); err != nil {
		return redisError("ping", err)
	}
	return nil
}

// do runs one command on a connection from the pool, within ctx.
func (s *redisStore) do(ctx context.Context, cmd string, args ...any) (any, error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return redis.DoContext(conn, ctx, cmd, args...)
}

// readAll reads r whole, into a buffer of the right size when r knows its
// length (a bytes.Reader holding an upload), else growing as io.ReadAll does.
func readAll(r io.Reader) ([]byte, error) {
	l, ok := r.(interface{ Len() int })
	if !ok {
		return io.ReadAll(r)
	}
	buf := bytes.NewBuffer(make([]byte, 0, l.Len()+bytes.MinRead))
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// redisError wraps err from Redis, with ErrUnavailable when it means Redis
// cannot serve us now.
func redisError(op string, err error) error {
	if redisUnavailable(err) {
		return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("blob: redis %s: %w", op, err)
}

// redisUnavailable tells whether err means Redis cannot serve us now: no
// connection, a timeout, an exhausted or closed pool, or a reply that
// refuses for a passing reason (redisconn.Passing). A caller that cancelled
// (context.Canceled) is not an outage, and neither is a reply that refuses
// the command itself.
func redisUnavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return redisconn.Passing(reply)
	}
	// No reply at all: the dial, the write or the read failed or timed out.
	return true
}
