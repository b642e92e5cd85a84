package jobs

import (
	"context"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// StreamLease is how long an open event stream counts without being
// renewed: a stream renews it with every keep-alive, and one whose API
// process died stops counting once it runs out.
const StreamLease = 45 * time.Second

func (s *Store) streamsKey(client string) string { return s.ns + ":streams:" + client }

// openStream counts stream ARGV[4] for its client if fewer than ARGV[3] are
// open (streams past their lease, ARGV[1], do not count), until ARGV[2].
var openStream = redis.NewScript(1, `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// OpenStream counts one more open event stream of client, across every API
// process, unless it already has max: it reports whether it may open.
func (s *Store) OpenStream(ctx context.Context, client, stream string, max int) (bool, error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	defer redisconn.Release(conn)
	now := s.clock()
	ok, err := redis.Bool(openStream.DoContext(ctx, conn, s.streamsKey(client),
		now.UnixMilli(), now.Add(StreamLease).UnixMilli(), max, stream, StreamLease.Milliseconds()))
	if err != nil {
		return false, unavailable("open stream", err)
	}
	return ok, nil
}

// RenewStream keeps an open stream counted for another StreamLease.
func (s *Store) RenewStream(ctx context.Context, client, stream string) error {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_ = conn.Send("ZADD", s.streamsKey(client), "XX", s.clock().Add(StreamLease).UnixMilli(), stream)
	_, err = redis.DoContext(conn, ctx, "PEXPIRE", s.streamsKey(client), StreamLease.Milliseconds())
	return unavailable("renew stream", err)
}

// CloseStream stops counting a stream.
func (s *Store) CloseStream(ctx context.Context, client, stream string) error {
	conn, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer redisconn.Release(conn)
	_, err = redis.DoContext(conn, ctx, "ZREM", s.streamsKey(client), stream)
	return unavailable("close stream", err)
}
