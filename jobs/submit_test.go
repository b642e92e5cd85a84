package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// Was TestIdempotencyClaim: the key is claimed by Submit itself now, in the
// transaction that creates the job.
func TestSubmitWithAnIdempotencyKey(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	key := func(scope, fingerprint string) *jobs.Idempotency {
		return &jobs.Idempotency{Scope: scope, Key: "k1", Fingerprint: fingerprint}
	}

	first, created, err := e.s.Submit(ctx, e.newJob("job-a", client), key(client, "fp-a"))
	is.NoErr(err)
	is.True(created)
	is.Equal(first.ID, "job-a")

	again, created, err := e.s.Submit(ctx, e.newJob("job-b", client), key(client, "fp-a"))
	is.NoErr(err)
	is.True(!created)           // the same request again
	is.Equal(again.ID, "job-a") // answers with the first job
	_, err = e.s.Get(ctx, "job-b")
	is.Equal(err, jobs.ErrNotFound) // and makes none

	_, _, err = e.s.Submit(ctx, e.newJob("job-c", client), key(client, "fp-b"))
	is.True(errors.Is(err, jobs.ErrKeyReused)) // another request under the key is refused
	_, err = e.s.Get(ctx, "job-c")
	is.Equal(err, jobs.ErrNotFound)

	// Another client's key is its own.
	other, created, err := e.s.Submit(ctx, e.newJob("job-d", "ip:198.51.100.7"), key("ip:198.51.100.7", "fp-b"))
	is.NoErr(err)
	is.True(created)
	is.Equal(other.ID, "job-d")
	is.Equal(e.queued(t), []string{"thumbnail job-a 0", "thumbnail job-d 0"})

	// Once its job is erased, the key is free for a new request.
	is.NoErr(e.s.Erase(ctx, "job-a"))
	next, created, err := e.s.Submit(ctx, e.newJob("job-e", client), key(client, "fp-b"))
	is.NoErr(err)
	is.True(created)
	is.Equal(next.ID, "job-e")
	again, created, err = e.s.Submit(ctx, e.newJob("job-f", client), key(client, "fp-b"))
	is.NoErr(err)
	is.True(!created)
	is.Equal(again.ID, "job-e")
}

func TestAKeyWhoseJobExpiredIsTakenOver(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	idem := &jobs.Idempotency{Scope: client, Key: "k1", Fingerprint: "fp-a"}
	_, _, err := e.s.Submit(ctx, e.newJob("old", client), idem)
	is.NoErr(err)
	// The record expires (Redis deletes the key) while the key, kept for
	// the idempotency window, still names it.
	e.do(t, "DEL", e.key("record", "old"))

	// Even a different request may take the key over: the job it named is gone.
	idem.Fingerprint = "fp-b"
	job, created, err := e.s.Submit(ctx, e.newJob("new", client), idem)
	is.NoErr(err)
	is.True(created)
	is.Equal(job.ID, "new")
	v, err := redis.String(e.do(t, "GET", e.key("idempotency", client, "k1")), nil)
	is.NoErr(err)
	is.Equal(v, "new fp-b") // the key names the new job
}

// A submit writes the record, its queue entry, its Idempotency-Key, its
// place in the client's list and its expiry mark in one transaction: all
// of them, or none.
func TestSubmitIsAllOrNothing(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	idem := &jobs.Idempotency{Scope: client, Key: "k1", Fingerprint: "fp"}
	job, created, err := e.s.Submit(ctx, e.newJob("j1", client), idem)
	is.NoErr(err)
	is.True(created)

	// All of it.
	saved, err := e.s.Get(ctx, "j1")
	is.NoErr(err)
	is.Equal(saved.Version, job.Version)
	is.Equal(e.queued(t), []string{"thumbnail j1 0"})
	v, err := redis.String(e.do(t, "GET", e.key("idempotency", client, "k1")), nil)
	is.NoErr(err)
	is.Equal(v, "j1 fp")
	created1, err := redis.Int64(e.do(t, "ZSCORE", e.key("client", client), "j1"), nil)
	is.NoErr(err)
	is.Equal(created1, job.CreatedAt.UnixMilli())
	expires, err := redis.Int64(e.do(t, "ZSCORE", e.key("expiry"), "j1"), nil)
	is.NoErr(err)
	is.Equal(expires, job.ExpiresAt.UnixMilli())

	// None of it: a submit that fails (its id is taken) leaves everything
	// as it was, even what it would have written under other keys.
	const other = "ip:198.51.100.7"
	e.clock.Advance(time.Minute)
	clash := e.newJob("j1", other)
	_, _, err = e.s.Submit(ctx, clash, &jobs.Idempotency{Scope: other, Key: "k2", Fingerprint: "fp"})
	is.True(err != nil)
	is.Equal(e.queued(t), []string{"thumbnail j1 0"})
	is.Equal(e.do(t, "EXISTS", e.key("idempotency", other, "k2")), int64(0))
	is.Equal(e.do(t, "EXISTS", e.key("client", other)), int64(0))
	after, err := redis.Int64(e.do(t, "ZSCORE", e.key("expiry"), "j1"), nil)
	is.NoErr(err)
	is.Equal(after, expires) // the first job's images keep their date
	saved, err = e.s.Get(ctx, "j1")
	is.NoErr(err)
	is.Equal(saved.Client, client)
	is.Equal(saved.Version, job.Version)
}

// Issue 13 item 10: concurrent submits with one Idempotency-Key gave some
// clients a 500 ("job not found"). 200 pairs of submits, each pair with a
// key of its own and racing from a common start: each pair makes exactly
// one job, both answers name it, and nothing fails.
func TestConcurrentSubmitsWithOneKeyMakeOneJob(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	const pairs = 200
	type answer struct {
		id      string
		created bool
		err     error
	}
	answers := make([][2]answer, pairs)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for p := range pairs {
		for side := range 2 {
			wg.Go(func() {
				job := e.newJob(fmt.Sprintf("pair%d-%d", p, side), client)
				idem := &jobs.Idempotency{Scope: client, Key: fmt.Sprintf("key-%d", p), Fingerprint: "same request"}
				<-start
				got, created, err := e.s.Submit(ctx, job, idem)
				a := answer{created: created, err: err}
				if got != nil {
					a.id = got.ID
				}
				answers[p][side] = a
			})
		}
	}
	close(start)
	wg.Wait()
	errs := 0
	for p, pair := range answers {
		for _, a := range pair {
			if a.err != nil {
				errs++
				t.Logf("pair %d: %v", p, a.err)
			}
		}
		is.True(pair[0].id != "")                   // every submit is answered with a job
		is.Equal(pair[0].id, pair[1].id)            // the same one
		is.True(pair[0].created != pair[1].created) // which one of them made
	}
	is.Equal(errs, 0)
	is.Equal(len(e.queued(t)), pairs) // one run queued per job
	n, err := redis.Int(e.do(t, "ZCARD", e.key("client", client)), nil)
	is.NoErr(err)
	is.Equal(n, pairs) // and one entry in the client's list
}

func TestReserveMarksAnUploadUntilItsJobIsSubmitted(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	now := e.clock.Now()
	is.NoErr(e.s.Reserve(ctx, "orphan-upload", now.Add(15*time.Minute)))
	is.NoErr(e.s.Reserve(ctx, "j1", now.Add(15*time.Minute)))
	job := e.submit(t, "j1")

	e.clock.Advance(15 * time.Minute)
	ids, err := e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(ids, []string{"orphan-upload"}) // the submit that never came: collect its upload
	at, err := redis.Int64(e.do(t, "ZSCORE", e.key("expiry"), "j1"), nil)
	is.NoErr(err)
	is.Equal(at, job.ExpiresAt.UnixMilli()) // the submitted one moved to its job's expiry
}
