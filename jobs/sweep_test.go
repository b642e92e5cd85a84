package jobs_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// 40 jobs wait to run again 1 to 4 s from now. Two processes move due work
// at once, over and over: what is due moves, once; what is not stays.
func TestMoveDueMovesOnlyDueEntriesOnce(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	const count = 40
	for i := range count {
		id := fmt.Sprintf("j%02d", i)
		e.submit(t, id)
		_, _, err := e.s.Begin(ctx, id, 3)
		is.NoErr(err)
		_, err = e.s.Retry(ctx, id, time.Duration(i%4+1)*time.Second)
		is.NoErr(err)
	}
	e.clearQueue(t)
	is.Equal(len(e.due(t)), count)

	movers := []*jobs.Store{e.s, e.store()}
	moveAll := func() (int, time.Time) {
		var moved atomic.Int64
		var next sync.Map
		var wg sync.WaitGroup
		for i, s := range movers {
			wg.Go(func() {
				for range 5 {
					n, at, err := s.MoveDue(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					moved.Add(int64(n))
					next.Store(i, at)
				}
			})
		}
		wg.Wait()
		at, _ := next.Load(0)
		return int(moved.Load()), at.(time.Time)
	}

	n, next := moveAll()
	is.Equal(n, 0) // nothing is due yet
	is.True(next.Equal(e.clock.Now().Add(time.Second)))

	e.clock.Advance(2 * time.Second) // the 1 s and 2 s retries are due, the 2 s ones exactly now
	n, next = moveAll()
	is.Equal(n, count/2)
	is.True(next.Equal(e.clock.Now().Add(time.Second))) // the 3 s ones come next
	queued := e.queued(t)
	is.Equal(len(queued), count/2)
	for i := range count {
		want := i%4+1 <= 2
		is.Equal(slices.Contains(queued, fmt.Sprintf("thumbnail j%02d 0", i)), want)
	}
	is.Equal(len(e.due(t)), count/2)

	e.clock.Advance(2 * time.Second)
	n, next = moveAll()
	is.Equal(n, count/2)
	is.True(next.IsZero()) // nothing left
	queued = e.queued(t)
	is.Equal(len(queued), count)
	slices.Sort(queued)
	is.Equal(len(slices.Compact(queued)), count) // every job once
}

func TestListPagesThroughOneClientsJobs(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	const a, b = "key:client-a", "key:client-b"
	// Seven jobs of client a and five of b, interleaved, several made in
	// the same millisecond (a page may end among them).
	var want []string // a's, newest first
	for i := range 12 {
		owner := a
		if i%5 == 1 || i%5 == 3 || i == 11 {
			owner = b
		}
		id := fmt.Sprintf("%s-%02d", owner[4:], i)
		_, _, err := e.s.Submit(ctx, e.newJob(id, owner), nil)
		is.NoErr(err)
		if owner == a {
			want = append([]string{id}, want...)
		}
		if i%3 == 2 {
			e.clock.Advance(time.Millisecond)
		}
	}
	is.Equal(len(want), 7)

	page := func(client string, status jobs.Status, limit int, cursor string) ([]string, string) {
		t.Helper()
		list, next, err := e.s.List(ctx, client, status, limit, cursor)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, job := range list {
			if job.Client != client {
				t.Fatalf("client %s's list shows %s's job %s", client, job.Client, job.ID)
			}
			ids = append(ids, job.ID)
		}
		return ids, next
	}

	var got []string
	p1, cursor := page(a, "", 3, "")
	is.Equal(len(p1), 3)
	is.True(cursor != "")
	p2, cursor := page(a, "", 3, cursor)
	is.Equal(len(p2), 3)
	is.True(cursor != "")
	p3, cursor := page(a, "", 3, cursor)
	is.Equal(len(p3), 1)
	is.Equal(cursor, "") // the last page
	got = append(append(append(got, p1...), p2...), p3...)
	is.Equal(got, want) // newest first, each once, none of b's

	bs, cursor := page(b, "", 10, "")
	is.Equal(len(bs), 5)
	is.Equal(cursor, "")

	// A status filter.
	for _, id := range want[:2] {
		_, _, err := e.s.Begin(ctx, id, 3)
		is.NoErr(err)
		_, _, err = e.s.Succeed(ctx, id, jobs.Result{})
		is.NoErr(err)
	}
	succeeded, _ := page(a, jobs.StatusSucceeded, 10, "")
	is.Equal(succeeded, want[:2])
	queued, _ := page(a, jobs.StatusQueued, 10, "")
	is.Equal(queued, want[2:])

	// Erased and expired jobs are left out, and out of the index.
	is.NoErr(e.s.Erase(ctx, want[3]))
	e.do(t, "DEL", e.key("record", want[4])) // as Redis does when it expires
	all, _ := page(a, "", 10, "")
	is.Equal(all, slices.Concat(want[:3], want[5:]))
	is.Equal(e.do(t, "ZSCORE", e.key("client", a), want[4]), nil)

	_, _, err := e.s.List(ctx, a, "", 3, "not a cursor")
	is.Equal(err, jobs.ErrBadCursor)
}

func TestEraseRemovesTheJobAndMarksItsImages(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "j1")
	_, _, err := e.s.Begin(ctx, "j1", 3)
	is.NoErr(err)

	is.NoErr(e.s.Erase(ctx, "j1"))
	_, err = e.s.Get(ctx, "j1")
	is.Equal(err, jobs.ErrNotFound)
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0)                   // its lease is gone
	is.Equal(e.do(t, "ZSCORE", e.key("client", client), "j1"), nil) // and its place in the list
	ids, err := e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(ids, []string{"j1"}) // its images are due for collection now

	// Work on it stops at its next step.
	_, _, err = e.s.Succeed(ctx, "j1", jobs.Result{})
	is.Equal(err, jobs.ErrNotFound)
	_, _, err = e.s.Begin(ctx, "j1", 3)
	is.Equal(err, jobs.ErrNotFound)
	is.Equal(e.s.Erase(ctx, "j1"), jobs.ErrNotFound)

	is.NoErr(e.s.Collected(ctx, "j1"))
	ids, err = e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(len(ids), 0)
}

// A job's images go when its record goes, never before: when this
// process's clock runs ahead of Redis's, the record outlives the time its
// mark says, and Expired leaves it out until the record is gone.
func TestExpiredListsOnlyJobsWhoseRecordIsGone(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	job := e.submit(t, "j1")
	e.clock.Advance(job.ExpiresAt.Sub(e.clock.Now()) + time.Minute) // Redis's clock did not move: the record lives
	ids, err := e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(len(ids), 0)
	at, err := redis.Int64(e.do(t, "ZSCORE", e.key("expiry"), "j1"), nil)
	is.NoErr(err)
	is.True(at > e.clock.Now().UnixMilli()) // its mark moved on with the record
	is.True(at > job.ExpiresAt.UnixMilli())

	// Collected keeps the mark of a job whose record still exists.
	e.clock.Advance(jobs.MaxWait + 3*time.Hour) // past the moved mark too
	is.NoErr(e.s.Collected(ctx, "j1"))
	is.Equal(e.do(t, "EXISTS", e.key("record", "j1")), int64(1))
	e.do(t, "DEL", e.key("record", "j1")) // Redis expires it
	ids, err = e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(ids, []string{"j1"})
	is.NoErr(e.s.Collected(ctx, "j1"))
	ids, err = e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(len(ids), 0)
}

func TestOneProcessLeadsAtATime(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	ok, err := e.s.Lead(ctx, "sweeper", "p1", time.Minute)
	is.NoErr(err)
	is.True(ok)
	ok, err = e.store().Lead(ctx, "sweeper", "p2", time.Minute)
	is.NoErr(err)
	is.True(!ok) // another holds it
	ok, err = e.s.Lead(ctx, "sweeper", "p1", time.Minute)
	is.NoErr(err)
	is.True(ok) // the holder keeps it
	ok, err = e.s.Lead(ctx, "other", "p2", time.Minute)
	is.NoErr(err)
	is.True(ok) // names are separate
	e.do(t, "DEL", e.key("lead", "sweeper"))
	ok, err = e.store().Lead(ctx, "sweeper", "p2", time.Minute)
	is.NoErr(err)
	is.True(ok) // once the lease runs out, another takes it
}

func TestSubscribeHearsWakeUpsAndEvents(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnv(t, time.Hour)
	dial := func(ctx context.Context) (redis.Conn, error) { return redis.DialURLContext(ctx, e.r.URL) }
	heard := make(chan string, 10)
	subscribed := make(chan error, 2)
	for _, name := range []string{"wake", "events"} {
		go func() {
			subscribed <- e.s.Subscribe(ctx, dial, name, func(msg string) { heard <- name + " " + msg })
		}()
	}
	// Submit until both subscriptions are up (a message before is not heard).
	got := map[string]bool{}
	for i := 0; len(got) < 2; i++ {
		is.True(i < 200)
		e.submit(t, fmt.Sprintf("j%d", i))
		select {
		case msg := <-heard:
			name := msg[:4]
			got[name] = true
			if name == "even" {
				is.True(strings.HasPrefix(msg, "events j") && strings.HasSuffix(msg, " 1")) // the id and version of the change
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
	is.True(e.s.Subscribe(ctx, dial, "nothing", func(string) {}) != nil) // an unknown channel
	cancel()
	for range 2 {
		select {
		case err := <-subscribed:
			is.Equal(err, context.Canceled)
		case <-time.After(5 * time.Second):
			t.Fatal("a subscription did not end with its context")
		}
	}
}

// Open event streams are counted per client across API processes; a stream
// whose process died stops counting once its lease runs out, and one that
// renews keeps counting.
func TestStreamsAreCountedUntilTheirLeaseRunsOut(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	for i := range 3 {
		ok, err := e.s.OpenStream(ctx, "key:a", fmt.Sprint("s", i), 3)
		is.NoErr(err)
		is.True(ok)
	}
	ok, err := e.s.OpenStream(ctx, "key:a", "s3", 3)
	is.NoErr(err)
	is.True(!ok) // the fourth
	ok, err = e.s.OpenStream(ctx, "key:b", "s0", 3)
	is.NoErr(err)
	is.True(ok) // another client counts its own

	is.NoErr(e.s.CloseStream(ctx, "key:a", "s0"))
	ok, err = e.s.OpenStream(ctx, "key:a", "s4", 3)
	is.NoErr(err)
	is.True(ok) // a closed stream frees its place

	e.clock.Advance(jobs.StreamLease / 2)
	is.NoErr(e.s.RenewStream(ctx, "key:a", "s1")) // s1 renews; s2 and s4 do not (their process died)
	e.clock.Advance(jobs.StreamLease/2 + time.Second)
	for _, s := range []string{"s5", "s6"} {
		ok, err = e.s.OpenStream(ctx, "key:a", s, 3)
		is.NoErr(err)
		is.True(ok)
	}
	ok, err = e.s.OpenStream(ctx, "key:a", "s7", 3)
	is.NoErr(err)
	is.True(!ok) // s1, s5 and s6 are open
}
