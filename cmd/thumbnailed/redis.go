package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
)

// newRedisPool dials url lazily; a broken Redis shows in /readyz and in the
// errors of the calls that need it, not as a refusal to start.
func newRedisPool(url string) *redis.Pool {
	return &redis.Pool{
		MaxIdle:     32,
		IdleTimeout: 4 * time.Minute,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialURLContext(ctx, url,
				redis.DialConnectTimeout(5*time.Second),
				redis.DialReadTimeout(0), // gocraft/work and pub/sub block on reads
				redis.DialWriteTimeout(10*time.Second))
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
