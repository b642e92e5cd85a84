package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// gcra is the generic cell rate algorithm in one atomic step: the key holds
// the "theoretical arrival time" of the next request; a request is allowed
// when that time is no more than burst intervals ahead of now. Redis's own
// clock is used so every API instance agrees.
var gcra = redis.NewScript(1, `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - burst * interval
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now) + 1)
return {1, 0}
`)

// RateLimiter limits requests per client across every API instance sharing
// the Redis. It implements Echo's RateLimiterStore.
type RateLimiter struct {
	pool     *redis.Pool
	ns       string
	interval float64 // milliseconds between requests at the sustained rate
	burst    int
}

// NewRateLimiter allows rate requests per second with bursts of burst.
func NewRateLimiter(s *Store, rate float64, burst int) *RateLimiter {
	return &RateLimiter{pool: s.pool, ns: s.ns, interval: 1000 / rate, burst: burst}
}

// LimitedError says when the client may try again.
type LimitedError struct{ RetryAfter time.Duration }

func (e *LimitedError) Error() string {
	return fmt.Sprintf("rate limited; retry after %s", e.RetryAfter)
}

// Allow reports whether identifier may make a request now. When it may not,
// the error is a *LimitedError with the wait. When Redis cannot answer it
// fails closed: not allowed, with an ErrUnavailable error.
func (l *RateLimiter) Allow(identifier string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := l.pool.GetContext(ctx)
	if err != nil {
		return false, unavailable("rate limiter", err)
	}
	defer redisconn.Release(conn)
	// The identifier may be an IP or a key digest; hash it so keys stay short and uniform.
	sum := sha256.Sum256([]byte(identifier))
	key := l.ns + ":ratelimit:" + hex.EncodeToString(sum[:12])
	reply, err := redis.Values(gcra.DoContext(ctx, conn, key, l.interval, l.burst))
	if err != nil {
		return false, unavailable("rate limiter", err)
	}
	var allowed int
	var waitMS int64
	if _, err := redis.Scan(reply, &allowed, &waitMS); err != nil {
		return false, fmt.Errorf("rate limiter: %w", err)
	}
	if allowed == 1 {
		return true, nil
	}
	return false, &LimitedError{RetryAfter: time.Duration(waitMS) * time.Millisecond}
}
