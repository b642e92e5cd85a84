package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// ErrNotFound means the job does not exist: unknown, expired or erased.
var ErrNotFound = errors.New("job not found")

// ErrUnavailable is wrapped by every error that means Redis cannot answer
// now: down, stalled past the call's deadline, loading, read-only, or out of
// memory. The API answers 503 for these; workers try again later.
var ErrUnavailable = errors.New("redis unavailable")

// Work is one piece of work for the queue: a job's thumbnail run, or one
// attempt of one of its deliveries.
type Work struct {
	Kind    string // KindThumbnail, or a delivery channel
	JobID   string
	Attempt int // deliveries: 1-based
	// Redeliver marks a delivery attempt that starts a new series on a
	// delivery that had ended (the web UI's retry of a dead delivery job).
	Redeliver bool
	// KeyName names the API key the job belongs to, for operators (the web
	// UI shows a queue entry's arguments); never the key.
	KeyName string
}

// KindThumbnail is the work of making a job's images; delivery work is
// named by its channel.
const KindThumbnail = "thumbnail"

// Push is how a piece of work goes onto the queue: push Payload onto the
// Redis list List. Its format is the queue's business, not this package's.
type Push struct {
	List    string
	Payload string
}

// Queue turns work into queue entries (worker.Queue, gocraft/work's format).
type Queue interface {
	Entry(w Work) Push
}

// Options configures a Store.
type Options struct {
	Namespace string
	// TTL is how long a record is kept after its job ended (THUMBNAILED_RESULT_TTL).
	TTL time.Duration
	// Lease is how long running work holds its lease without renewing it
	// (THUMBNAILED_STALE_AFTER): past it, the sweeper takes the work back.
	Lease time.Duration
	Queue Queue
	// Clock is the time; nil means time.Now.
	Clock func() time.Time
}

// Store keeps job records and their bookkeeping in Redis.
//
// Keys (all under the namespace):
//
//	{ns}:record:{id}        the job record, JSON; expires at its ExpiresAt
//	{ns}:leases             sorted set "kind:id" -> lease expiry (unix ms) of running work
//	{ns}:due                sorted set "list\npayload" -> when the queue entry is due (unix ms)
//	{ns}:expiry             sorted set id -> when the job's images must be gone (unix ms)
//	{ns}:client:{scope}     sorted set id -> created (unix ms): a client's jobs, for listing
//	{ns}:idempotency:{scope}:{key}
//	{ns}:events             pub/sub channel: "{id} {version}" on every change of a record
//	{ns}:wake               pub/sub channel: work was queued
type Store struct {
	pool  *redis.Pool
	ns    string
	ttl   time.Duration
	lease time.Duration
	queue Queue
	now   func() time.Time
}

// NewStore returns a Store on pool.
func NewStore(pool *redis.Pool, opts Options) *Store {
	s := &Store{pool: pool, ns: opts.Namespace, ttl: opts.TTL, lease: opts.Lease, queue: opts.Queue, now: opts.Clock}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

func (s *Store) recordKey(id string) string       { return s.ns + ":record:" + id }
func (s *Store) clientKey(scope string) string    { return s.ns + ":client:" + scope }
func (s *Store) leasesKey() string                { return s.ns + ":leases" }
func (s *Store) dueKey() string                   { return s.ns + ":due" }
func (s *Store) expiryKey() string                { return s.ns + ":expiry" }
func (s *Store) eventsChannel() string            { return s.ns + ":events" }
func (s *Store) wakeChannel() string              { return s.ns + ":wake" }
func leaseMember(kind, id string) string          { return kind + ":" + id }
func (s *Store) clock() time.Time                 { return s.now().UTC() }
func (s *Store) idemKey(scope, key string) string { return s.ns + ":idempotency:" + scope + ":" + key }

// conn takes a connection honouring ctx's deadline.
func (s *Store) conn(ctx context.Context) (redis.Conn, error) {
	c, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	return c, nil
}

// unavailable wraps an error that means Redis cannot answer now in
// ErrUnavailable, and any error with what was being done.
func unavailable(what string, err error) error {
	if err == nil {
		return nil
	}
	if isUnavailable(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isUnavailable(err error) bool {
	var netErr net.Error
	var re redis.Error
	switch {
	case errors.Is(err, ErrUnavailable):
		return false // already wrapped
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &netErr), errors.Is(err, redis.ErrPoolExhausted):
		return true
	case errors.As(err, &re):
		return redisconn.Passing(re)
	}
	// redigo reports a closed or broken connection with plain errors.
	msg := err.Error()
	return strings.Contains(msg, "closed") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_, err = redis.DoContext(conn, ctx, "PING")
	return unavailable("ping", err)
}

// Get returns the job, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Job, error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer redisconn.Release(conn)
	return s.get(ctx, conn, id)
}

func (s *Store) get(ctx context.Context, conn redis.Conn, id string) (*Job, error) {
	body, err := redis.Bytes(redis.DoContext(conn, ctx, "GET", s.recordKey(id)))
	if errors.Is(err, redis.ErrNil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable("get job "+id, err)
	}
	var job Job
	if err := json.Unmarshal(body, &job); err != nil {
		return nil, fmt.Errorf("decode job %s: %w", id, err)
	}
	return &job, nil
}

// tx is one transaction on a record: the commands a change adds are sent
// inside MULTI, after the record itself, so they happen together or not at all.
type tx struct {
	s    *Store
	conn redis.Conn
	now  time.Time
	cmds [][]any
	wake bool
}

func (t *tx) send(args ...any) { t.cmds = append(t.cmds, args) }

// push queues work now.
func (t *tx) push(w Work) {
	p := t.s.queue.Entry(w)
	t.send("LPUSH", p.List, p.Payload)
	t.wake = true
}

// due queues work for later: the sweeper moves it to the queue at its time.
func (t *tx) due(w Work, at time.Time) {
	if !at.After(t.now) {
		t.push(w)
		return
	}
	p := t.s.queue.Entry(w)
	t.send("ZADD", t.s.dueKey(), at.UnixMilli(), p.List+"\n"+p.Payload)
}

// takeLease gives running work its lease.
func (t *tx) takeLease(kind, id string) {
	t.send("ZADD", t.s.leasesKey(), t.now.Add(t.s.lease).UnixMilli(), leaseMember(kind, id))
}

func (t *tx) dropLease(kind, id string) {
	t.send("ZREM", t.s.leasesKey(), leaseMember(kind, id))
}

// errSkip from a change function means "leave the record as it is".
var errSkip = errors.New("no change")

// change is one transition of a record. It may modify job and add commands
// to the transaction. Returning errSkip leaves everything untouched.
type change func(job *Job, t *tx) error

// update applies fn to the record under optimistic locking (WATCH/MULTI), so
// every writer of one record (the run, its deliveries, the sweeper, the
// API) can write at once without losing each other's changes. The record
// keeps expiring at its ExpiresAt, which fn may move.
func (s *Store) update(ctx context.Context, id string, fn change) (*Job, error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer redisconn.Release(conn)
	for range 50 {
		// WATCH waits in the write buffer and goes out with the GET: one round
		// trip. An error reply to either comes back from the GET's DoContext.
		if err := conn.Send("WATCH", s.recordKey(id)); err != nil {
			return nil, unavailable("watch job "+id, err)
		}
		job, err := s.get(ctx, conn, id)
		if err != nil {
			_, _ = conn.Do("UNWATCH")
			return nil, err
		}
		t := &tx{s: s, conn: conn, now: s.clock()}
		if err := fn(job, t); err != nil {
			_, _ = conn.Do("UNWATCH")
			if errors.Is(err, errSkip) {
				return job, nil
			}
			return job, err
		}
		reply, err := s.commit(ctx, conn, job, t, false)
		if err != nil {
			return nil, err
		}
		if reply != nil {
			return job, nil
		}
		// Another writer changed the record between WATCH and EXEC: read it again.
	}
	return nil, fmt.Errorf("update job %s: too much contention", id)
}

// commit writes job and t's commands in one MULTI/EXEC. It returns nil
// when a WATCHed key changed meanwhile (nothing was written). create uses
// SET NX, so a record is never created twice.
func (s *Store) commit(ctx context.Context, conn redis.Conn, job *Job, t *tx, create bool) (any, error) {
	job.Version++
	body, err := json.Marshal(job)
	if err != nil {
		_, _ = conn.Do("UNWATCH")
		return nil, fmt.Errorf("encode job %s: %w", job.ID, err)
	}
	_ = conn.Send("MULTI")
	set := []any{s.recordKey(job.ID), body, "PXAT", job.ExpiresAt.UnixMilli()}
	if create {
		set = append(set, "NX")
	}
	_ = conn.Send("SET", set...)
	_ = conn.Send("ZADD", s.expiryKey(), job.ExpiresAt.UnixMilli(), job.ID)
	for _, c := range t.cmds {
		_ = conn.Send(c[0].(string), c[1:]...)
	}
	_ = conn.Send("PUBLISH", s.eventsChannel(), fmt.Sprintf("%s %d", job.ID, job.Version))
	if t.wake {
		_ = conn.Send("PUBLISH", s.wakeChannel(), "1")
	}
	reply, err := redis.DoContext(conn, ctx, "EXEC")
	if err != nil {
		return nil, unavailable("write job "+job.ID, err)
	}
	if reply == nil {
		job.Version--
		return nil, nil
	}
	return reply, nil
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
	conn, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	defer redisconn.Release(conn)
	ok, err := redis.Bool(lead.DoContext(ctx, conn, s.ns+":lead:"+name, holder, ttl.Milliseconds()))
	if err != nil {
		return false, unavailable("lead "+name, err)
	}
	return ok, nil
}
