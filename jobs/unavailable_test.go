package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/jobs"
)

// storeAt is a store whose Redis is at addr, dialled the way the service
// does (every call bounded by its context, no read deadline of the pool's).
func storeAt(t *testing.T, addr string) *jobs.Store {
	t.Helper()
	pool := &redis.Pool{MaxIdle: 4, DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", addr)
	}}
	t.Cleanup(func() { pool.Close() })
	return jobs.NewStore(pool, jobs.Options{Namespace: "down", TTL: time.Hour, Lease: lease, Queue: &fakeQueue{list: "down:queue"}})
}

// Redis gone or hung: every call fails with an error wrapping
// ErrUnavailable (the API's 503) within its context's deadline.
func TestRedisTroubleIsUnavailableWithinTheDeadline(t *testing.T) {
	stores := map[string]*jobs.Store{
		"closed port":     storeAt(t, testnet.FreeAddr(t)),
		"never answering": storeAt(t, testnet.StalledAddr(t)),
	}
	job := func() *jobs.Job {
		return jobs.New("j1", jobs.Owner{Client: client}, request(), time.Now(), time.Hour)
	}
	calls := map[string]func(context.Context, *jobs.Store) error{
		"ping": func(ctx context.Context, s *jobs.Store) error { return s.Ping(ctx) },
		"get": func(ctx context.Context, s *jobs.Store) error {
			_, err := s.Get(ctx, "j1")
			return err
		},
		"submit": func(ctx context.Context, s *jobs.Store) error {
			_, _, err := s.Submit(ctx, job(), nil)
			return err
		},
		"submit with a key": func(ctx context.Context, s *jobs.Store) error {
			_, _, err := s.Submit(ctx, job(), &jobs.Idempotency{Scope: client, Key: "k", Fingerprint: "fp"})
			return err
		},
		"begin": func(ctx context.Context, s *jobs.Store) error {
			_, _, err := s.Begin(ctx, "j1", 3)
			return err
		},
		"claim": func(ctx context.Context, s *jobs.Store) error {
			_, _, _, err := s.Claim(ctx, "j1", jobs.ChannelCallback, 1)
			return err
		},
		"record": func(ctx context.Context, s *jobs.Store) error {
			_, err := s.Record(ctx, "j1", jobs.ChannelCallback, 1, delivered(1))
			return err
		},
		"redeliver": func(ctx context.Context, s *jobs.Store) error {
			_, err := s.Redeliver(ctx, "j1", jobs.ChannelCallback)
			return err
		},
		"list": func(ctx context.Context, s *jobs.Store) error {
			_, _, err := s.List(ctx, client, "", 10, "")
			return err
		},
		"erase": func(ctx context.Context, s *jobs.Store) error { return s.Erase(ctx, "j1") },
		"move due": func(ctx context.Context, s *jobs.Store) error {
			_, _, err := s.MoveDue(ctx)
			return err
		},
		"renew": func(ctx context.Context, s *jobs.Store) error {
			return s.Renew(ctx, []jobs.Lease{{Kind: jobs.KindThumbnail, JobID: "j1"}})
		},
		"expired leases": func(ctx context.Context, s *jobs.Store) error {
			_, err := s.ExpiredLeases(ctx, 10)
			return err
		},
		"expired": func(ctx context.Context, s *jobs.Store) error {
			_, err := s.Expired(ctx, 10)
			return err
		},
		"lead": func(ctx context.Context, s *jobs.Store) error {
			_, err := s.Lead(ctx, "sweeper", "p1", time.Minute)
			return err
		},
		"allow email": func(ctx context.Context, s *jobs.Store) error {
			_, _, err := s.AllowEmail(ctx, "a@example.com", "j1", 10, time.Now())
			return err
		},
	}
	const deadline = 500 * time.Millisecond
	for _, r := range testnet.CallAll(t, deadline, stores, calls) {
		t.Run(r.Name, func(t *testing.T) {
			is := is.New(t)
			t.Logf("after %v: %v", r.Took.Round(time.Millisecond), r.Err)
			is.True(errors.Is(r.Err, jobs.ErrUnavailable)) // trouble with Redis is ErrUnavailable
			is.True(r.Took < deadline+time.Second)         // and the call keeps its deadline
		})
	}
}

// A subscription blocks on reads: against a hung Redis it still ends when
// its context does, and a Redis that is gone is ErrUnavailable at once.
func TestSubscribeEndsWithItsContextEvenWhenRedisHangs(t *testing.T) {
	is := is.New(t)
	s := storeAt(t, testnet.FreeAddr(t))
	for _, addr := range []string{testnet.StalledAddr(t), testnet.FreeAddr(t)} {
		dial := func(ctx context.Context) (redis.Conn, error) { return redis.DialContext(ctx, "tcp", addr) }
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := s.Subscribe(ctx, dial, "wake", func(string) { t.Error("a message from nowhere") })
		cancel()
		t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		is.True(err != nil)
		is.True(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jobs.ErrUnavailable))
		is.True(time.Since(start) < time.Second)
	}
}

// The rate limit fails closed: when Redis cannot answer, no request passes.
func TestRateLimiterFailsClosed(t *testing.T) {
	for name, addr := range map[string]string{"closed port": testnet.FreeAddr(t), "never answering": testnet.StalledAddr(t)} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			l := jobs.NewRateLimiter(storeAt(t, addr), 10, 20)
			start := time.Now()
			ok, err := l.Allow("client-a")
			t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			is.True(!ok)
			is.True(errors.Is(err, jobs.ErrUnavailable))
			is.True(time.Since(start) < 2*time.Second) // within the limiter's own deadline
		})
	}
}
