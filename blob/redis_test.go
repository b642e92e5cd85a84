package blob_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
)

// openWithPool is a Redis store on a pool of its own to the Redis at addr.
func openWithPool(t *testing.T, addr string) blob.Store {
	t.Helper()
	pool := &redis.Pool{
		MaxIdle: 4,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr)
		},
	}
	t.Cleanup(func() { pool.Close() })
	return openStore(t, "", nil, pool, "test")
}

// A job's objects are the fields of one hash that expires with the job's record.
func TestRedisKeepsAJobInOneHashThatExpiresWithIt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s, r := redisStore(t)
	job := newJob()
	expires := time.Now().Add(90 * time.Minute)

	putUntil(t, s, job, "upload", []byte("original"), expires)
	putUntil(t, s, job, "default.jpg", []byte("thumb"), expires)

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
		s, r := redisStore(t)
		job := newJob()
		expires := time.Now().Add(time.Second)
		if r.Mini != nil {
			expires = time.Now().Add(time.Hour)
		}
		putUntil(t, s, job, "default.jpg", []byte("thumb"), expires)
		get(t, s, job, "default.jpg") // there before it expires

		if r.Mini != nil {
			r.Mini.FastForward(time.Until(expires) + time.Second)
		} else {
			time.Sleep(time.Until(expires) + 50*time.Millisecond) // a real Redis expires to the millisecond
		}
		mustBeNotFound(t, s, job, "default.jpg")
	})

	t.Run("at once when the job has already expired", func(t *testing.T) {
		t.Parallel()
		s, _ := redisStore(t)
		job := newJob()
		putUntil(t, s, job, "default.jpg", []byte("late"), time.Now().Add(-time.Second))
		mustBeNotFound(t, s, job, "default.jpg")
	})

	t.Run("never stored without an expiry", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		s, _ := redisStore(t)
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
	s := openWithPool(t, testredis.StartServer(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction").Addr)

	_, err := s.Put(ctxT(t), newJob(), "upload", bytes.NewReader(big()[:1<<20]), inAnHour)
	is.True(errors.Is(err, blob.ErrUnavailable))  // OOM means unavailable
	is.True(strings.Contains(err.Error(), "OOM")) // with the cause

	mustBeNotFound(t, s, newJob(), "upload") // reads are still answered
	is.NoErr(s.Ping(ctxT(t)))
}
