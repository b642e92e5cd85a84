package jobs_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testclock"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/jobs"
)

// fakeQueue writes work as readable entries ("callback j1 2") on one list,
// each numbered so that the same work queued twice stays two entries.
type fakeQueue struct {
	list string
	n    atomic.Int64
}

func (q *fakeQueue) Entry(w jobs.Work) jobs.Push {
	payload := fmt.Sprintf("%s %s %d", w.Kind, w.JobID, w.Attempt)
	if w.Redeliver {
		payload += " redeliver"
	}
	return jobs.Push{List: q.list, Payload: payload + " #" + strconv.FormatInt(q.n.Add(1), 10)}
}

// lease is the lease of running work in these tests.
const lease = time.Minute

// env is a store on its own Redis namespace, with a clock the test moves
// and a queue it reads.
type env struct {
	s     *jobs.Store
	r     *testredis.Redis
	clock *testclock.Clock
	queue *fakeQueue
	ttl   time.Duration
}

func newEnv(t *testing.T, ttl time.Duration) *env {
	t.Helper()
	r := testredis.New(t)
	e := &env{r: r, clock: testclock.New(), queue: &fakeQueue{list: r.Namespace + ":queue"}, ttl: ttl}
	e.s = e.store()
	return e
}

// store is another store on the same namespace, queue and clock: another
// process of the service.
func (e *env) store() *jobs.Store {
	return jobs.NewStore(e.r.Pool, jobs.Options{Namespace: e.r.Namespace, TTL: e.ttl, Lease: lease, Queue: e.queue, Clock: e.clock.Now})
}

// do runs one Redis command for the test's own look at the keys.
func (e *env) do(t *testing.T, cmd string, args ...any) any {
	t.Helper()
	conn := e.r.Pool.Get()
	defer conn.Close()
	v, err := conn.Do(cmd, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return v
}

func (e *env) key(parts ...string) string {
	return e.r.Namespace + ":" + strings.Join(parts, ":")
}

// queued lists the work on the queue, first queued first, without numbers.
func (e *env) queued(t *testing.T) []string {
	t.Helper()
	entries, err := redis.Strings(e.do(t, "LRANGE", e.queue.list, 0, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, entry := range slices.Backward(entries) {
		work, _, _ := strings.Cut(entry, " #")
		out = append(out, work)
	}
	return out
}

// due lists the work scheduled for later, with its time as an offset from now.
func (e *env) due(t *testing.T) map[string]time.Duration {
	t.Helper()
	values, err := redis.Strings(e.do(t, "ZRANGE", e.key("due"), 0, -1, "WITHSCORES"), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Duration{}
	for i := 0; i+1 < len(values); i += 2 {
		_, payload, _ := strings.Cut(values[i], "\n")
		work, _, _ := strings.Cut(payload, " #")
		ms, _ := strconv.ParseInt(values[i+1], 10, 64)
		out[work] = time.UnixMilli(ms).Sub(e.clock.Now())
	}
	return out
}

func (e *env) clearQueue(t *testing.T) { e.do(t, "DEL", e.queue.list) }

// expiredLeases lists the leases the sweeper would take back after d more.
func (e *env) expiredLeases(t *testing.T, d time.Duration) []jobs.Lease {
	t.Helper()
	e.clock.Advance(d)
	defer e.clock.Advance(-d)
	leases, err := e.s.ExpiredLeases(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return leases
}

const client = "ip:192.0.2.1"

func request() jobs.Request {
	return jobs.Request{Source: jobs.SourceUpload, Width: 64, Fit: "contain", Format: "jpeg", Quality: 80,
		Outputs: []jobs.Output{{Name: jobs.DefaultOutput, Width: 64, Fit: "contain", Gravity: "center", Format: "jpeg", Quality: 80}},
		Email:   "a@example.com", CallbackURL: "https://example.com/hook"}
}

// newJob is a job just accepted for client, as the API builds it.
func (e *env) newJob(id, client string) *jobs.Job {
	return jobs.New(id, jobs.Owner{Client: client}, request(), e.clock.Now(), e.ttl)
}

func (e *env) submit(t *testing.T, id string) *jobs.Job {
	t.Helper()
	job, created, err := e.s.Submit(context.Background(), e.newJob(id, client), nil)
	if err != nil || !created {
		t.Fatalf("submit %s: created %v, %v", id, created, err)
	}
	return job
}

// ended submits a job and runs it to success: its deliveries' first
// attempts are then queued. The queue is left empty.
func (e *env) ended(t *testing.T, id string) *jobs.Job {
	t.Helper()
	ctx := context.Background()
	e.submit(t, id)
	if _, begin, err := e.s.Begin(ctx, id, 3); err != nil || begin != jobs.Run {
		t.Fatalf("begin %s: %v %v", id, begin, err)
	}
	job, ended, err := e.s.Succeed(ctx, id, jobs.Result{Outputs: []jobs.OutputResult{{Name: jobs.DefaultOutput, Format: "jpeg"}}})
	if err != nil || !ended {
		t.Fatalf("succeed %s: %v %v", id, ended, err)
	}
	e.clearQueue(t)
	return job
}

func TestJobLifecycle(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)

	saved, created, err := e.s.Submit(ctx, e.newJob("j1", client), nil)
	is.NoErr(err)
	is.True(created)
	is.Equal(saved.Status, jobs.StatusQueued)
	is.Equal(e.queued(t), []string{"thumbnail j1 0"}) // the run is queued with the record
	_, _, err = e.s.Submit(ctx, e.newJob("j1", "ip:198.51.100.7"), nil)
	is.True(err != nil)                               // ids are never reused
	is.Equal(e.queued(t), []string{"thumbnail j1 0"}) // and the refused submit queued nothing
	got, err := e.s.Get(ctx, "j1")
	is.NoErr(err)
	is.Equal(got.Client, client) // nor changed the record

	job, begin, err := e.s.Begin(ctx, "j1", 3)
	is.NoErr(err)
	is.Equal(begin, jobs.Run)
	is.Equal(job.Status, jobs.StatusProcessing)
	is.Equal(job.Attempts, 1)
	is.True(job.StartedAt != nil)
	// The run holds a lease: the sweeper would take it back once it runs out.
	is.Equal(e.expiredLeases(t, lease), []jobs.Lease{{Kind: jobs.KindThumbnail, JobID: "j1"}})
	is.Equal(len(e.expiredLeases(t, lease-time.Millisecond)), 0)
	e.clock.Advance(lease / 2)
	is.NoErr(e.s.Renew(ctx, []jobs.Lease{{Kind: jobs.KindThumbnail, JobID: "j1"}}))
	is.Equal(len(e.expiredLeases(t, lease-time.Millisecond)), 0) // renewed a lease from now

	result := jobs.Result{Outputs: []jobs.OutputResult{{Name: jobs.DefaultOutput, Width: 64, Height: 48, Format: "jpeg", ContentType: "image/jpeg", Bytes: 5}}}
	done, ended, err := e.s.Succeed(ctx, "j1", result)
	is.NoErr(err)
	is.True(ended)
	is.Equal(done.Status, jobs.StatusSucceeded)
	is.Equal(done.Result.Outputs[0].Bytes, 5)
	is.True(done.FinishedAt != nil)
	is.Equal(done.ExpiresAt, done.FinishedAt.Add(time.Hour)) // kept the TTL after it ended
	// The first attempt of every delivery is queued with the outcome.
	is.Equal(e.queued(t), []string{"thumbnail j1 0", "email j1 1", "callback j1 1"})
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0) // the lease went with the run
	// (The upload, which the old store deleted here, is in the blob store now:
	// the worker deletes it when the job ends; see worker's tests.)

	// A late re-run (the reaper, a duplicate) changes nothing.
	_, begin, err = e.s.Begin(ctx, "j1", 3)
	is.NoErr(err)
	is.Equal(begin, jobs.Skip)
	_, ended, err = e.s.Fail(ctx, "j1", codes.CorruptImage, "late")
	is.NoErr(err)
	is.True(!ended)
	got, err = e.s.Get(ctx, "j1")
	is.NoErr(err)
	is.Equal(got.Status, jobs.StatusSucceeded)
	is.Equal(got.Version, done.Version)
	is.Equal(len(e.queued(t)), 3)
}

func TestCrashedRunsEndTheJob(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "poison")
	e.clearQueue(t)

	// Each Begin that finds the job still processing under a lease that ran
	// out means the run before died.
	for range 3 {
		_, begin, err := e.s.Begin(ctx, "poison", 3)
		is.NoErr(err)
		is.Equal(begin, jobs.Run)
		e.clock.Advance(lease + time.Millisecond)
	}
	job, begin, err := e.s.Begin(ctx, "poison", 3)
	is.NoErr(err)
	is.Equal(begin, jobs.Crashed)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, codes.WorkerCrashed)
	is.Equal(job.Crashes, 3)
	is.Equal(job.Attempts, 3)
	// The failure is pushed like any other end, and the lease is gone.
	is.Equal(e.queued(t), []string{"email poison 1", "callback poison 1"})
	is.Equal(len(e.expiredLeases(t, 0)), 0)
}

func TestRetryIsNotACrash(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "flaky")
	e.clearQueue(t)
	for range 5 {
		_, begin, err := e.s.Begin(ctx, "flaky", 3)
		is.NoErr(err)
		is.Equal(begin, jobs.Run)
		_, err = e.s.Retry(ctx, "flaky", 0)
		is.NoErr(err)
	}
	job, err := e.s.Get(ctx, "flaky")
	is.NoErr(err)
	is.Equal(job.Crashes, 0)
	is.Equal(job.Attempts, 5)
	is.Equal(job.Retries, 5)
	is.Equal(job.Status, jobs.StatusQueued)
	is.Equal(len(e.queued(t)), 5)                 // each retry due at once was queued
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0) // and its lease released

	// A retry later waits in the due set, not on the queue.
	_, _, err = e.s.Begin(ctx, "flaky", 3)
	is.NoErr(err)
	_, err = e.s.Retry(ctx, "flaky", 10*time.Second)
	is.NoErr(err)
	is.Equal(len(e.queued(t)), 5)
	is.Equal(e.due(t), map[string]time.Duration{"thumbnail flaky 0": 10 * time.Second})

	// A retry of a job that is not running changes nothing.
	job, err = e.s.Retry(ctx, "flaky", 0)
	is.NoErr(err)
	is.Equal(job.Retries, 6)
	is.Equal(len(e.queued(t)), 5)
}

func TestADuplicateRunSkipsWhileTheFirstIsAlive(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "dup")
	_, begin, err := e.s.Begin(ctx, "dup", 3)
	is.NoErr(err)
	is.Equal(begin, jobs.Run)
	e.clock.Advance(lease - time.Millisecond)
	job, begin, err := e.s.Begin(ctx, "dup", 3)
	is.NoErr(err)
	is.Equal(begin, jobs.Skip) // the first run's lease is alive
	is.Equal(job.Crashes, 0)   // and a duplicate is not a crash
	is.Equal(job.Attempts, 1)
}

func TestRescueQueuesAStaleJobOnce(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "orphan")
	e.clearQueue(t)
	_, _, err := e.s.Begin(ctx, "orphan", 3)
	is.NoErr(err)

	ok, err := e.s.Rescue(ctx, "orphan")
	is.NoErr(err)
	is.True(!ok) // the lease is alive: not stale yet
	is.Equal(len(e.queued(t)), 0)

	e.clock.Advance(lease + time.Millisecond)
	is.Equal(e.expiredLeases(t, 0), []jobs.Lease{{Kind: jobs.KindThumbnail, JobID: "orphan"}})
	ok, err = e.s.Rescue(ctx, "orphan")
	is.NoErr(err)
	is.True(ok)
	job, err := e.s.Get(ctx, "orphan")
	is.NoErr(err)
	is.Equal(job.Status, jobs.StatusQueued)
	is.Equal(job.Crashes, 1)
	is.Equal(e.queued(t), []string{"thumbnail orphan 0"}) // queued again in the same transaction
	is.Equal(len(e.expiredLeases(t, 0)), 0)               // waiting in the queue, it is not rescued again
	ok, err = e.s.Rescue(ctx, "orphan")
	is.NoErr(err)
	is.True(!ok)
	is.Equal(len(e.queued(t)), 1)

	_, begin, err := e.s.Begin(ctx, "orphan", 3)
	is.NoErr(err)
	is.Equal(begin, jobs.Run)
	job, err = e.s.Get(ctx, "orphan")
	is.NoErr(err)
	is.Equal(job.Crashes, 1) // the rescue counted the death once
	is.Equal(job.Attempts, 2)

	_, err = e.s.Rescue(ctx, "unknown")
	is.Equal(err, jobs.ErrNotFound)
}

// The old test incremented a delivery's attempts from 40 writers at once.
// Attempts are now counted by Claim, one at a time per delivery: both
// deliveries run 20 attempts side by side, every attempt claimed by three
// runs at once. Exactly one run sends each attempt, and no write of one
// delivery loses the other's.
func TestConcurrentDeliveryUpdatesAreNotLost(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.ended(t, "busy")

	const attempts = 20
	var sends [2]atomic.Int32
	var wg sync.WaitGroup
	for i, ch := range []string{jobs.ChannelEmail, jobs.ChannelCallback} {
		wg.Go(func() {
			for attempt := 1; attempt <= attempts; attempt++ {
				var runs sync.WaitGroup
				for range 3 {
					runs.Go(func() {
						_, claim, _, err := e.s.Claim(ctx, "busy", ch, attempt)
						if err != nil {
							t.Error(err)
							return
						}
						if claim != jobs.Send {
							return
						}
						sends[i].Add(1)
						_, err = e.s.Record(ctx, "busy", ch, attempt, jobs.Outcome{Message: "busy", Next: e.clock.Now(),
							Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeRetry}})
						if err != nil {
							t.Error(err)
						}
					})
				}
				runs.Wait()
			}
		})
	}
	wg.Wait()
	job, err := e.s.Get(ctx, "busy")
	is.NoErr(err)
	for i, ch := range []string{jobs.ChannelEmail, jobs.ChannelCallback} {
		d := job.Delivery(ch)
		is.Equal(d.Attempts, attempts)
		is.Equal(int(sends[i].Load()), attempts) // one send per attempt
		is.Equal(len(d.Log), attempts)
		for n, entry := range d.Log {
			is.Equal(entry.Attempt, n+1)
		}
	}
	is.Equal(len(e.queued(t)), 2*attempts) // every next attempt was queued once
}

func TestEverythingExpires(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	const ttl = time.Second
	e := newEnv(t, ttl)
	idem := &jobs.Idempotency{Scope: client, Key: "k1", Fingerprint: "fp"}
	_, _, err := e.s.Submit(ctx, e.newJob("short", client), idem)
	is.NoErr(err)
	_, _, err = e.s.Begin(ctx, "short", 3)
	is.NoErr(err)
	job, _, err := e.s.Succeed(ctx, "short", jobs.Result{})
	is.NoErr(err)

	pttl := func(key string) time.Duration {
		ms, err := redis.Int64(e.do(t, "PTTL", key), nil)
		is.NoErr(err)
		return time.Duration(ms) * time.Millisecond
	}
	// Every key a job writes carries an expiry.
	is.True(pttl(e.key("record", "short")) > 0 && pttl(e.key("record", "short")) <= ttl)
	is.True(pttl(e.key("client", client)) > 0 && pttl(e.key("client", client)) <= 2*ttl)
	is.True(pttl(e.key("idempotency", client, "k1")) > 0 && pttl(e.key("idempotency", client, "k1")) <= jobs.IdempotencyWindow)
	// The images are marked for collection at the record's expiry.
	at, err := redis.Int64(e.do(t, "ZSCORE", e.key("expiry"), "short"), nil)
	is.NoErr(err)
	is.Equal(at, job.ExpiresAt.UnixMilli())

	if e.r.Mini != nil {
		e.r.Mini.FastForward(ttl + time.Millisecond)
	}
	is.True(testapi.Eventually(3*ttl, func() bool { _, err := e.s.Get(ctx, "short"); return err == jobs.ErrNotFound }))
	e.clock.Advance(ttl + time.Millisecond)
	list, _, err := e.s.List(ctx, client, "", 10, "")
	is.NoErr(err)
	is.Equal(len(list), 0)
	ids, err := e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(ids, []string{"short"}) // its images are due for collection
	is.NoErr(e.s.Collected(ctx, "short"))
	ids, err = e.s.Expired(ctx, 10)
	is.NoErr(err)
	is.Equal(len(ids), 0)
}

func TestRateLimiter(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, time.Hour)
	l := jobs.NewRateLimiter(e.s, 1, 3)
	for range 3 {
		ok, err := l.Allow("client-a")
		is.NoErr(err)
		is.True(ok) // the burst is allowed
	}
	ok, err := l.Allow("client-a")
	is.True(!ok)
	is.True(err != nil)
	limited, _ := err.(*jobs.LimitedError)
	is.True(limited != nil)
	is.True(limited.RetryAfter > 0 && limited.RetryAfter <= time.Second)
	ok, err = l.Allow("client-b")
	is.NoErr(err)
	is.True(ok) // clients are limited separately
}
