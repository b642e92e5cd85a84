package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"
	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
)

func openRedis(t *testing.T, r *testredis.Redis) blob.Store {
	t.Helper()
	s, err := blob.Open("redis:", nil, r.Pool, r.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A job's objects are the fields of one hash that expires with the job's record.
func TestRedisKeepsAJobInOneHashThatExpiresWithIt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r := testredis.New(t)
	s := openRedis(t, r)
	job := newJob()
	expires := time.Now().Add(90 * time.Minute)

	_, err := s.Put(ctxT(t), job, "upload", strings.NewReader("original"), expires)
	is.NoErr(err)
	_, err = s.Put(ctxT(t), job, "default.jpg", strings.NewReader("thumb"), expires)
	is.NoErr(err)

	conn := r.Pool.Get()
	defer conn.Close()
	key := r.Namespace + ":blob:" + job
	fields, err := redis.StringMap(conn.Do("HGETALL", key))
	is.NoErr(err)
	is.Equal(fields, map[string]string{"upload": "original", "default.jpg": "thumb"})
	at, err := redis.Int64(conn.Do("PEXPIRETIME", key)) // Redis 7
	is.NoErr(err)
	is.True(max(at-expires.UnixMilli(), expires.UnixMilli()-at) < 1000) // the hash expires when the job does
	is.Equal(s.Name(), "redis")
}

func TestRedisObjectsExpire(t *testing.T) {
	t.Parallel()

	t.Run("when the job's record does", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		r := testredis.New(t)
		s := openRedis(t, r)
		job := newJob()
		expires := time.Now().Add(time.Second)
		if r.Mini != nil {
			expires = time.Now().Add(time.Hour)
		}
		_, err := s.Put(ctxT(t), job, "default.jpg", strings.NewReader("thumb"), expires)
		is.NoErr(err)
		_, err = s.Get(ctxT(t), job, "default.jpg")
		is.NoErr(err) // there before it expires

		if r.Mini != nil {
			r.Mini.FastForward(time.Until(expires) + time.Second)
		} else {
			time.Sleep(time.Until(expires) + 50*time.Millisecond) // a real Redis expires to the millisecond
		}
		mustBeNotFound(t, s, job, "default.jpg")
	})

	t.Run("at once when the job has already expired", func(t *testing.T) {
		t.Parallel()
		r := testredis.New(t)
		s := openRedis(t, r)
		job := newJob()
		_, err := s.Put(ctxT(t), job, "default.jpg", strings.NewReader("late"), time.Now().Add(-time.Second))
		is.New(t).NoErr(err)
		mustBeNotFound(t, s, job, "default.jpg")
	})

	t.Run("never stored without an expiry", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		r := testredis.New(t)
		s := openRedis(t, r)
		job := newJob()
		_, err := s.Put(ctxT(t), job, "default.jpg", strings.NewReader("forever"), time.Time{})
		is.True(err != nil) // refused: under noeviction it would stay for good
		is.True(strings.Contains(err.Error(), "expiry"))
		mustBeNotFound(t, s, job, "default.jpg")
	})
}

// A Redis out of memory refuses writes with OOM: the store says
// ErrUnavailable (the API answers 503), and reads still work.
// It needs a redis-server of its own, since maxmemory is server-wide.
func TestRedisOutOfMemoryIsUnavailable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	addr := startRedisServer(t, "--maxmemory", "1")
	pool := dialPool(addr)
	t.Cleanup(func() { pool.Close() })
	s, err := blob.Open("", nil, pool, "oom")
	is.NoErr(err)

	_, err = s.Put(ctxT(t), newJob(), "upload", bytes.NewReader(big()[:1<<20]), inAnHour)
	is.True(errors.Is(err, blob.ErrUnavailable))  // OOM means unavailable
	is.True(strings.Contains(err.Error(), "OOM")) // with the cause

	mustBeNotFound(t, s, newJob(), "upload") // reads are still answered
	is.NoErr(s.Ping(ctxT(t)))
}

// startRedisServer runs a redis-server of the test's own with extra
// arguments and returns its address.
func startRedisServer(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found on PATH")
		}
		t.Skip("redis-server not found on PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", t.TempDir()}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		if c, err := redis.Dial("tcp", addr); err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return addr
			}
		}
	}
	t.Fatal("redis-server did not answer within 10s")
	return ""
}

func dialPool(addr string) *redis.Pool {
	return &redis.Pool{
		MaxIdle: 4,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr)
		},
	}
}
