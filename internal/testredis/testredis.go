// Package testredis gives tests a Redis: the real server named by
// THUMBNAILED_TEST_REDIS_URL (CI starts one), or else an in-process miniredis.
// Each call gets its own namespace, so tests sharing a real server do not meet.
package testredis

import (
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
)

// EnvURL names the variable that points tests at a real Redis.
const EnvURL = "THUMBNAILED_TEST_REDIS_URL"

// Redis is one test's Redis.
type Redis struct {
	URL       string
	Namespace string
	Pool      *redis.Pool
	// Mini is the in-process server, or nil when a real one is used.
	Mini *miniredis.Miniredis
}

// New returns a Redis for t, closed when t ends.
func New(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{Namespace: "test-" + strings.ToLower(rand.Text()[:10])}
	if url := realURL(); url != "" {
		r.URL = url
	} else {
		m := miniredis.RunT(t)
		r.Mini = m
		r.URL = "redis://" + m.Addr()
	}
	r.Pool = &redis.Pool{
		MaxIdle:     8,
		IdleTimeout: time.Minute,
		Dial: func() (redis.Conn, error) {
			return redis.DialURL(r.URL, redis.DialConnectTimeout(5*time.Second))
		},
	}
	t.Cleanup(func() { r.Pool.Close() })
	return r
}

// Real reports whether tests run against a real redis-server.
func Real() bool { return realURL() != "" }

func realURL() string {
	return strings.TrimSpace(os.Getenv(EnvURL))
}
