package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
)

// Redis deadlines. Every call also carries its caller's context deadline;
// these bound what has none (gocraft/work's own calls), so a Redis that
// stalls can never hold a process for good.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 5 * time.Second
)

// newRedisPool dials url lazily; a broken Redis shows in /readyz and in the
// errors of the calls that need it, not as a refusal to start.
func newRedisPool(url string) *redis.Pool {
	return &redis.Pool{
		MaxIdle:     32,
		IdleTimeout: 4 * time.Minute,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialURLContext(ctx, url,
				redis.DialConnectTimeout(redisDialTimeout),
				redis.DialReadTimeout(redisIOTimeout),
				redis.DialWriteTimeout(redisIOTimeout))
		},
		TestOnBorrow: func(c redis.Conn, lastUsed time.Time) error {
			if time.Since(lastUsed) < time.Minute {
				return nil
			}
			_, err := c.Do("PING")
			return err
		},
	}
}

// subscriptionDialer makes the connection of a pub/sub subscription: it
// blocks on reads between messages, so it has no read deadline (the
// subscription pings it instead).
func subscriptionDialer(url string) func(context.Context) (redis.Conn, error) {
	return func(ctx context.Context) (redis.Conn, error) {
		return redis.DialURLContext(ctx, url,
			redis.DialConnectTimeout(redisDialTimeout),
			redis.DialWriteTimeout(redisIOTimeout))
	}
}

// errEvictingRedis: the Redis would evict keys, which loses jobs.
var errEvictingRedis = errors.New("redis evicts keys")

// checkEvictionPolicy refuses a Redis whose maxmemory-policy is not
// noeviction: an evicted record is a lost job, an evicted queue entry work
// that never runs. A server that refuses CONFIG GET (some managed services)
// gets a warning naming the requirement.
func checkEvictionPolicy(ctx context.Context, pool *redis.Pool, log *slog.Logger) error {
	conn, err := pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	reply, err := redis.Strings(redis.DoContext(conn, ctx, "CONFIG", "GET", "maxmemory-policy"))
	var re redis.Error
	if errors.As(err, &re) {
		log.Warn("could not read Redis's maxmemory-policy (CONFIG GET is refused); it must be noeviction, or jobs are lost when Redis is full", "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	if len(reply) == 2 && !strings.EqualFold(reply[1], "noeviction") {
		return fmt.Errorf("%w: Redis's maxmemory-policy is %q; it must be noeviction (an evicted key is a lost job): run CONFIG SET maxmemory-policy noeviction, or set it in redis.conf", errEvictingRedis, reply[1])
	}
	return nil
}

// embeddedRedis runs an in-memory Redis for the all-in-one default. miniredis
// only expires keys when told that time has passed, so a ticker tells it.
func embeddedRedis(ctx context.Context, log *slog.Logger) (url string, stop func(), err error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return "", nil, fmt.Errorf("start embedded redis: %w", err)
	}
	tctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-tctx.Done():
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	log.Warn("THUMBNAILED_REDIS_URL is empty: running an embedded in-memory Redis; ALL JOBS AND RESULTS ARE LOST WHEN THIS PROCESS EXITS. Set THUMBNAILED_REDIS_URL for anything but a trial.",
		"embedded_redis", m.Addr())
	return "redis://" + m.Addr(), func() { cancel(); m.Close() }, nil
}
