// Package testredis gives tests a Redis: the real server named by
// THUMBNAILED_TEST_REDIS_URL (CI starts one), or else an in-process miniredis.
// Each call gets its own namespace, so tests sharing a real server do not meet.
// A test that needs server-wide settings starts a redis-server of its own
// (StartServer).
package testredis

import (
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/testci"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
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

// Do runs one command on r, for a test's own look at the keys; it fails t
// when Redis answers with an error.
func (r *Redis) Do(t testing.TB, cmd string, args ...any) any {
	t.Helper()
	conn := r.Pool.Get()
	defer conn.Close()
	v, err := conn.Do(cmd, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return v
}

// Real reports whether tests run against a real redis-server.
func Real() bool { return realURL() != "" }

func realURL() string {
	return strings.TrimSpace(os.Getenv(EnvURL))
}

// Server is a redis-server of one test's own, for what a shared Redis cannot
// give: server-wide settings such as maxmemory or the eviction policy.
type Server struct {
	Addr string // 127.0.0.1 and its port
	URL  string // redis:// and Addr
}

// StartServer runs redis-server on a free loopback port with args after its
// own (no snapshots, no append-only file, a directory of t's own), waits
// until it answers PING and kills it when t ends. It skips t when
// redis-server is not on PATH, and fails it when the CI variable is set: CI
// must run these tests.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testci.Missing(t, "redis-server is not on PATH: install Redis to run this test")
	}
	addr := testnet.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, append([]string{"--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)...)
	out := &testlog.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s := &Server{Addr: addr, URL: "redis://" + addr}
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		if c, err := s.dial(); err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return s
			}
		}
	}
	t.Fatalf("redis-server did not answer within 10 s:\n%s", out.String())
	return nil
}

// Conn is a connection to s, closed by the caller; it fails t when s cannot
// be reached.
func (s *Server) Conn(t testing.TB) redis.Conn {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *Server) dial() (redis.Conn, error) {
	return redis.Dial("tcp", s.Addr, redis.DialConnectTimeout(time.Second))
}
