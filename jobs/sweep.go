package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// Lease names one piece of running work: a job's run or one of its
// deliveries' attempts.
type Lease struct {
	Kind  string // KindThumbnail or a channel
	JobID string
}

// Renew extends the leases of running work a lease period from now. A lease
// that was released or taken back meanwhile stays gone.
func (s *Store) Renew(ctx context.Context, leases []Lease) error {
	if len(leases) == 0 {
		return nil
	}
	until := s.clock().Add(s.lease).UnixMilli()
	args := []any{s.leasesKey(), "XX"}
	for _, l := range leases {
		args = append(args, until, leaseMember(l.Kind, l.JobID))
	}
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_, err = redis.DoContext(conn, ctx, "ZADD", args...)
	return unavailable("renew leases", err)
}

// ExpiredLeases lists up to limit leases that have run out.
func (s *Store) ExpiredLeases(ctx context.Context, limit int) ([]Lease, error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer redisconn.Release(conn)
	members, err := redis.Strings(redis.DoContext(conn, ctx, "ZRANGEBYSCORE", s.leasesKey(), "-inf", s.clock().UnixMilli(), "LIMIT", 0, limit))
	if err != nil {
		return nil, unavailable("expired leases", err)
	}
	var out []Lease
	for _, m := range members {
		kind, id, _ := strings.Cut(m, ":")
		out = append(out, Lease{Kind: kind, JobID: id})
	}
	return out, nil
}

// dropExpiredLease forgets a lease left over by work that is no longer
// running, if it has not been taken again meanwhile (a lease taken again
// runs out later than now), without touching the record.
func (s *Store) dropExpiredLease(ctx context.Context, kind, id string) error {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_, err = dropExpired.DoContext(ctx, conn, s.leasesKey(), leaseMember(kind, id), s.clock().UnixMilli())
	return unavailable("drop lease", err)
}

var dropExpired = redis.NewScript(1, `
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`)

// DropLease forgets a lease whose job is gone.
func (s *Store) DropLease(ctx context.Context, l Lease) error {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_, err = redis.DoContext(conn, ctx, "ZREM", s.leasesKey(), leaseMember(l.Kind, l.JobID))
	return unavailable("drop lease", err)
}

// moveDue moves up to ARGV[2] entries due at ARGV[1] (unix ms) from the due
// set onto their queues; every entry moves once, whoever runs it.
var moveDue = redis.NewScript(2, `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(due) do
  local nl = string.find(entry, '\n', 1, true)
  redis.call('ZREM', KEYS[1], entry)
  redis.call('LPUSH', string.sub(entry, 1, nl - 1), string.sub(entry, nl + 1))
end
if #due > 0 then redis.call('PUBLISH', KEYS[2], '1') end
return #due
`)

// MoveDue puts work whose time has come on the queue, and returns how many
// entries moved and when the next entry is due (zero when none is).
func (s *Store) MoveDue(ctx context.Context) (moved int, next time.Time, err error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer redisconn.Release(conn)
	moved, err = redis.Int(moveDue.DoContext(ctx, conn, s.dueKey(), s.wakeChannel(), s.clock().UnixMilli(), 500))
	if err != nil {
		return 0, time.Time{}, unavailable("move due work", err)
	}
	first, err := redis.Values(redis.DoContext(conn, ctx, "ZRANGE", s.dueKey(), 0, 0, "WITHSCORES"))
	if err != nil {
		return moved, time.Time{}, unavailable("next due work", err)
	}
	if len(first) == 2 {
		ms, _ := redis.Int64(first[1], nil)
		next = time.UnixMilli(ms)
	}
	return moved, next, nil
}

// Expired lists up to limit jobs whose images must be gone by now: their
// record expired, they were erased, or an upload was stored for a submit
// that never happened. A job whose record still exists is never listed,
// even when its mark says it is due (this process's clock runs ahead of
// Redis's, which expires the record): its mark moves to the record's own
// expiry, so its images stay as long as the record that shows them.
func (s *Store) Expired(ctx context.Context, limit int) ([]string, error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer redisconn.Release(conn)
	ids, err := redis.Strings(expired.DoContext(ctx, conn, s.expiryKey(), s.clock().UnixMilli(), limit, s.recordKey("")))
	return ids, unavailable("expired jobs", err)
}

// expired lists the marks of KEYS[1] due at ARGV[1] (up to ARGV[2]) whose
// record (ARGV[3] .. id) is gone, and moves the others to the end of their
// record's remaining lifetime.
var expired = redis.NewScript(1, `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(due) do
  local ttl = redis.call('PTTL', ARGV[3] .. id)
  if ttl == -2 then
    table.insert(out, id)
  elseif ttl >= 0 then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + ttl + 1, id)
  end
end
return out
`)

// Collected says the images of an expired job are gone. A job whose record
// still exists (its expiry moved on meanwhile) keeps its mark.
func (s *Store) Collected(ctx context.Context, id string) error {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_, err = collected.DoContext(ctx, conn, s.expiryKey(), s.recordKey(id), id, s.clock().UnixMilli())
	return unavailable("collected "+id, err)
}

var collected = redis.NewScript(2, `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
`)

// Erase deletes a job's record now: every later read is ErrNotFound, work
// on it stops at its next step, and its images are marked for collection
// at once (the caller deletes them too).
func (s *Store) Erase(ctx context.Context, id string) error {
	job, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_ = conn.Send("MULTI")
	_ = conn.Send("DEL", s.recordKey(id))
	_ = conn.Send("ZADD", s.expiryKey(), s.clock().UnixMilli(), id)
	for _, kind := range append([]string{KindThumbnail}, Channels...) {
		_ = conn.Send("ZREM", s.leasesKey(), leaseMember(kind, id))
	}
	if job.Client != "" {
		_ = conn.Send("ZREM", s.clientKey(job.Client), id)
	}
	_ = conn.Send("PUBLISH", s.eventsChannel(), fmt.Sprintf("%s %d", id, job.Version+1))
	_, err = redis.DoContext(conn, ctx, "EXEC")
	return unavailable("erase "+id, err)
}

// Subscribe calls fn with every message on the store's channel name
// ("wake" or "events") until ctx ends or the connection breaks. dial makes
// the connection: a subscription blocks on reads, so it needs one without
// the pool's read deadline.
func (s *Store) Subscribe(ctx context.Context, dial func(context.Context) (redis.Conn, error), name string, fn func(msg string)) error {
	channel := map[string]string{"wake": s.wakeChannel(), "events": s.eventsChannel()}[name]
	if channel == "" {
		return fmt.Errorf("subscribe: unknown channel %q", name)
	}
	conn, err := dial(ctx)
	if err != nil {
		return unavailable("subscribe", err)
	}
	defer redisconn.Release(conn)
	psc := redis.PubSubConn{Conn: conn}
	if err := psc.Subscribe(channel); err != nil {
		return unavailable("subscribe", err)
	}
	// A connection that silently died would never deliver again: a PING
	// goes every 15 s from beside the reader (redigo allows one writer
	// beside one reader), and a read that hears nothing, not even the
	// PONG, for twice that ends the subscription. (Pinging when a read
	// times out does not work: a redigo read that times out closes the
	// connection, and what is published until it is made again is lost.)
	const every = 15 * time.Second
	// When ctx ends the connection closes, which ends the read at once: a
	// stalled Redis would never answer an UNSUBSCRIBE.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	pinging := make(chan struct{})
	defer close(pinging)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-pinging:
				return
			case <-t.C:
				if psc.Ping("") != nil {
					_ = conn.Close() // the read then fails and reports it
					return
				}
			}
		}
	}()
	for {
		switch v := psc.ReceiveWithTimeout(2 * every).(type) {
		case redis.Message:
			fn(string(v.Data))
		case redis.Pong:
		case redis.Subscription:
			if v.Count == 0 {
				return ctx.Err()
			}
		case error:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return unavailable("subscription", v)
		}
	}
}
