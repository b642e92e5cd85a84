package jobs_test

import (
	"context"
	"errors"
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

// doInt runs a Redis command whose reply is a number.
func (e *env) doInt(t *testing.T, cmd string, args ...any) int64 {
	t.Helper()
	n, err := redis.Int64(e.r.Do(t, cmd, args...), nil)
	if err != nil {
		t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return n
}

func (e *env) key(parts ...string) string {
	return e.r.Namespace + ":" + strings.Join(parts, ":")
}

// queued lists the work on the queue, first queued first, without numbers.
func (e *env) queued(t *testing.T) []string {
	t.Helper()
	entries, err := redis.Strings(e.r.Do(t, "LRANGE", e.queue.list, 0, -1), nil)
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
	values, err := redis.Strings(e.r.Do(t, "ZRANGE", e.key("due"), 0, -1, "WITHSCORES"), nil)
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

func (e *env) clearQueue(t *testing.T) { e.r.Do(t, "DEL", e.queue.list) }

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

// submitKeyed submits a job of owner's under idem (nil: no key): the job
// that answers the submit, and whether the submit made it.
func (e *env) submitKeyed(t *testing.T, id, owner string, idem *jobs.Idempotency) (*jobs.Job, bool) {
	t.Helper()
	job, created, err := e.s.Submit(context.Background(), e.newJob(id, owner), idem)
	if err != nil {
		t.Fatalf("submit %s: %v", id, err)
	}
	return job, created
}

func (e *env) submit(t *testing.T, id string) *jobs.Job {
	t.Helper()
	job, created := e.submitKeyed(t, id, client, nil)
	if !created {
		t.Fatalf("submit %s: not created", id)
	}
	return job
}

func (e *env) get(t *testing.T, id string) *jobs.Job {
	t.Helper()
	job, err := e.s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return job
}

// begin begins a run of id as a worker does: the job, and what Begin made
// of the run.
func (e *env) begin(t *testing.T, id string) (*jobs.Job, jobs.BeginResult) {
	t.Helper()
	job, begin, err := e.s.Begin(context.Background(), id, 3)
	if err != nil {
		t.Fatalf("begin %s: %v", id, err)
	}
	return job, begin
}

// run begins a run of id that runs (neither a skip nor a crash).
func (e *env) run(t *testing.T, id string) *jobs.Job {
	t.Helper()
	job, begin := e.begin(t, id)
	if begin != jobs.Run {
		t.Fatalf("begin %s: %v, want Run", id, begin)
	}
	return job
}

// succeed ends id's run with result; the job must end.
func (e *env) succeed(t *testing.T, id string, result jobs.Result) *jobs.Job {
	t.Helper()
	job, ended, err := e.s.Succeed(context.Background(), id, result)
	if err != nil || !ended {
		t.Fatalf("succeed %s: %v %v", id, ended, err)
	}
	return job
}

func (e *env) retry(t *testing.T, id string, delay time.Duration) *jobs.Job {
	t.Helper()
	job, err := e.s.Retry(context.Background(), id, delay)
	if err != nil {
		t.Fatalf("retry %s: %v", id, err)
	}
	return job
}

// expired lists the jobs whose images are due for collection.
func (e *env) expired(t *testing.T) []string {
	t.Helper()
	ids, err := e.s.Expired(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// ended submits a job and runs it to success: its deliveries' first
// attempts are then queued. The queue is left empty.
func (e *env) ended(t *testing.T, id string) *jobs.Job {
	t.Helper()
	e.submit(t, id)
	e.run(t, id)
	job := e.succeed(t, id, jobs.Result{Outputs: []jobs.OutputResult{{Name: jobs.DefaultOutput, Format: "jpeg"}}})
	e.clearQueue(t)
	return job
}

func TestJobLifecycle(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)

	saved := e.submit(t, "j1")
	is.Equal(saved.Status, jobs.StatusQueued)
	is.Equal(e.queued(t), []string{"thumbnail j1 0"}) // the run is queued with the record
	_, _, err := e.s.Submit(ctx, e.newJob("j1", "ip:198.51.100.7"), nil)
	is.True(err != nil)                               // ids are never reused
	is.Equal(e.queued(t), []string{"thumbnail j1 0"}) // and the refused submit queued nothing
	is.Equal(e.get(t, "j1").Client, client)           // nor changed the record

	job := e.run(t, "j1")
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
	done := e.succeed(t, "j1", result)
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
	_, begin := e.begin(t, "j1")
	is.Equal(begin, jobs.Skip)
	_, ended, err := e.s.Fail(ctx, "j1", codes.CorruptImage, "late")
	is.NoErr(err)
	is.True(!ended)
	got := e.get(t, "j1")
	is.Equal(got.Status, jobs.StatusSucceeded)
	is.Equal(got.Version, done.Version)
	is.Equal(len(e.queued(t)), 3)
}

func TestCrashedRunsEndTheJob(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, time.Hour)
	e.submit(t, "poison")
	e.clearQueue(t)

	// Each Begin that finds the job still processing under a lease that ran
	// out means the run before died.
	for range 3 {
		e.run(t, "poison")
		e.clock.Advance(lease + time.Millisecond)
	}
	job, begin := e.begin(t, "poison")
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
	e := newEnv(t, time.Hour)
	e.submit(t, "flaky")
	e.clearQueue(t)
	for range 5 {
		e.run(t, "flaky")
		e.retry(t, "flaky", 0)
	}
	job := e.get(t, "flaky")
	is.Equal(job.Crashes, 0)
	is.Equal(job.Attempts, 5)
	is.Equal(job.Retries, 5)
	is.Equal(job.Status, jobs.StatusQueued)
	is.Equal(len(e.queued(t)), 5)                 // each retry due at once was queued
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0) // and its lease released

	// A retry later waits in the due set, not on the queue.
	e.run(t, "flaky")
	e.retry(t, "flaky", 10*time.Second)
	is.Equal(len(e.queued(t)), 5)
	is.Equal(e.due(t), map[string]time.Duration{"thumbnail flaky 0": 10 * time.Second})

	// A retry of a job that is not running changes nothing.
	is.Equal(e.retry(t, "flaky", 0).Retries, 6)
	is.Equal(len(e.queued(t)), 5)
}

func TestADuplicateRunSkipsWhileTheFirstIsAlive(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, time.Hour)
	e.submit(t, "dup")
	e.run(t, "dup")
	e.clock.Advance(lease - time.Millisecond)
	job, begin := e.begin(t, "dup")
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
	e.run(t, "orphan")

	ok, err := e.s.Rescue(ctx, "orphan")
	is.NoErr(err)
	is.True(!ok) // the lease is alive: not stale yet
	is.Equal(len(e.queued(t)), 0)

	e.clock.Advance(lease + time.Millisecond)
	is.Equal(e.expiredLeases(t, 0), []jobs.Lease{{Kind: jobs.KindThumbnail, JobID: "orphan"}})
	ok, err = e.s.Rescue(ctx, "orphan")
	is.NoErr(err)
	is.True(ok)
	job := e.get(t, "orphan")
	is.Equal(job.Status, jobs.StatusQueued)
	is.Equal(job.Crashes, 1)
	is.Equal(e.queued(t), []string{"thumbnail orphan 0"}) // queued again in the same transaction
	is.Equal(len(e.expiredLeases(t, 0)), 0)               // waiting in the queue, it is not rescued again
	ok, err = e.s.Rescue(ctx, "orphan")
	is.NoErr(err)
	is.True(!ok)
	is.Equal(len(e.queued(t)), 1)

	e.run(t, "orphan")
	job = e.get(t, "orphan")
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
	job := e.get(t, "busy")
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
	e.submitKeyed(t, "short", client, &jobs.Idempotency{Scope: client, Key: "k1", Fingerprint: "fp"})
	e.run(t, "short")
	job := e.succeed(t, "short", jobs.Result{})

	pttl := func(key string) time.Duration { return time.Duration(e.doInt(t, "PTTL", key)) * time.Millisecond }
	// Every key a job writes carries an expiry.
	is.True(pttl(e.key("record", "short")) > 0 && pttl(e.key("record", "short")) <= ttl)
	is.True(pttl(e.key("client", client)) > 0 && pttl(e.key("client", client)) <= 2*ttl)
	is.True(pttl(e.key("idempotency", client, "k1")) > 0 && pttl(e.key("idempotency", client, "k1")) <= jobs.IdempotencyWindow)
	// The images are marked for collection at the record's expiry.
	is.Equal(e.doInt(t, "ZSCORE", e.key("expiry"), "short"), job.ExpiresAt.UnixMilli())

	if e.r.Mini != nil {
		e.r.Mini.FastForward(ttl + time.Millisecond)
	}
	is.True(testapi.Eventually(3*ttl, func() bool { _, err := e.s.Get(ctx, "short"); return err == jobs.ErrNotFound }))
	e.clock.Advance(ttl + time.Millisecond)
	list, _, err := e.s.List(ctx, client, "", 10, "")
	is.NoErr(err)
	is.Equal(len(list), 0)
	is.Equal(e.expired(t), []string{"short"}) // its images are due for collection
	is.NoErr(e.s.Collected(ctx, "short"))
	is.Equal(len(e.expired(t)), 0)
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

// Was TestIdempotencyClaim: the key is claimed by Submit itself now, in the
// transaction that creates the job.
func TestSubmitWithAnIdempotencyKey(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	key := func(scope, fingerprint string) *jobs.Idempotency {
		return &jobs.Idempotency{Scope: scope, Key: "k1", Fingerprint: fingerprint}
	}
	// submit says which job answers a submit of id by owner, and whether
	// the submit made it.
	submit := func(id, owner, fingerprint string) (string, bool) {
		t.Helper()
		job, created := e.submitKeyed(t, id, owner, key(owner, fingerprint))
		return job.ID, created
	}

	first, created := submit("job-a", client, "fp-a")
	is.True(created)
	is.Equal(first, "job-a")

	again, created := submit("job-b", client, "fp-a")
	is.True(!created)        // the same request again
	is.Equal(again, "job-a") // answers with the first job
	_, err := e.s.Get(ctx, "job-b")
	is.Equal(err, jobs.ErrNotFound) // and makes none

	_, _, err = e.s.Submit(ctx, e.newJob("job-c", client), key(client, "fp-b"))
	is.True(errors.Is(err, jobs.ErrKeyReused)) // another request under the key is refused
	_, err = e.s.Get(ctx, "job-c")
	is.Equal(err, jobs.ErrNotFound)

	// Another client's key is its own.
	other, created := submit("job-d", "ip:198.51.100.7", "fp-b")
	is.True(created)
	is.Equal(other, "job-d")
	is.Equal(e.queued(t), []string{"thumbnail job-a 0", "thumbnail job-d 0"})

	// Once its job is erased, the key is free for a new request.
	is.NoErr(e.s.Erase(ctx, "job-a"))
	next, created := submit("job-e", client, "fp-b")
	is.True(created)
	is.Equal(next, "job-e")
	again, created = submit("job-f", client, "fp-b")
	is.True(!created)
	is.Equal(again, "job-e")
}

func TestAKeyWhoseJobExpiredIsTakenOver(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, time.Hour)
	idem := &jobs.Idempotency{Scope: client, Key: "k1", Fingerprint: "fp-a"}
	e.submitKeyed(t, "old", client, idem)
	// The record expires (Redis deletes the key) while the key, kept for
	// the idempotency window, still names it.
	e.r.Do(t, "DEL", e.key("record", "old"))

	// Even a different request may take the key over: the job it named is gone.
	idem.Fingerprint = "fp-b"
	job, created := e.submitKeyed(t, "new", client, idem)
	is.True(created)
	is.Equal(job.ID, "new")
	v, err := redis.String(e.r.Do(t, "GET", e.key("idempotency", client, "k1")), nil)
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
	job, created := e.submitKeyed(t, "j1", client, idem)
	is.True(created)

	// All of it.
	is.Equal(e.get(t, "j1").Version, job.Version)
	is.Equal(e.queued(t), []string{"thumbnail j1 0"})
	v, err := redis.String(e.r.Do(t, "GET", e.key("idempotency", client, "k1")), nil)
	is.NoErr(err)
	is.Equal(v, "j1 fp")
	is.Equal(e.doInt(t, "ZSCORE", e.key("client", client), "j1"), job.CreatedAt.UnixMilli())
	expires := e.doInt(t, "ZSCORE", e.key("expiry"), "j1")
	is.Equal(expires, job.ExpiresAt.UnixMilli())

	// None of it: a submit that fails (its id is taken) leaves everything
	// as it was, even what it would have written under other keys.
	const other = "ip:198.51.100.7"
	e.clock.Advance(time.Minute)
	clash := e.newJob("j1", other)
	_, _, err = e.s.Submit(ctx, clash, &jobs.Idempotency{Scope: other, Key: "k2", Fingerprint: "fp"})
	is.True(err != nil)
	is.Equal(e.queued(t), []string{"thumbnail j1 0"})
	is.Equal(e.r.Do(t, "EXISTS", e.key("idempotency", other, "k2")), int64(0))
	is.Equal(e.r.Do(t, "EXISTS", e.key("client", other)), int64(0))
	is.Equal(e.doInt(t, "ZSCORE", e.key("expiry"), "j1"), expires) // the first job's images keep their date
	saved := e.get(t, "j1")
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
	is.Equal(len(e.queued(t)), pairs)                                    // one run queued per job
	is.Equal(e.doInt(t, "ZCARD", e.key("client", client)), int64(pairs)) // and one entry in the client's list
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
	is.Equal(e.expired(t), []string{"orphan-upload"})                                // the submit that never came: collect its upload
	is.Equal(e.doInt(t, "ZSCORE", e.key("expiry"), "j1"), job.ExpiresAt.UnixMilli()) // the submitted one moved to its job's expiry
}

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
		e.run(t, id)
		e.retry(t, id, time.Duration(i%4+1)*time.Second)
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
		e.submitKeyed(t, id, owner, nil)
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
		e.run(t, id)
		e.succeed(t, id, jobs.Result{})
	}
	succeeded, _ := page(a, jobs.StatusSucceeded, 10, "")
	is.Equal(succeeded, want[:2])
	queued, _ := page(a, jobs.StatusQueued, 10, "")
	is.Equal(queued, want[2:])

	// Erased and expired jobs are left out, and out of the index.
	is.NoErr(e.s.Erase(ctx, want[3]))
	e.r.Do(t, "DEL", e.key("record", want[4])) // as Redis does when it expires
	all, _ := page(a, "", 10, "")
	is.Equal(all, slices.Concat(want[:3], want[5:]))
	is.Equal(e.r.Do(t, "ZSCORE", e.key("client", a), want[4]), nil)

	_, _, err := e.s.List(ctx, a, "", 3, "not a cursor")
	is.Equal(err, jobs.ErrBadCursor)
}

func TestEraseRemovesTheJobAndMarksItsImages(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "j1")
	e.run(t, "j1")

	is.NoErr(e.s.Erase(ctx, "j1"))
	_, err := e.s.Get(ctx, "j1")
	is.Equal(err, jobs.ErrNotFound)
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0)                     // its lease is gone
	is.Equal(e.r.Do(t, "ZSCORE", e.key("client", client), "j1"), nil) // and its place in the list
	is.Equal(e.expired(t), []string{"j1"})                            // its images are due for collection now

	// Work on it stops at its next step.
	_, _, err = e.s.Succeed(ctx, "j1", jobs.Result{})
	is.Equal(err, jobs.ErrNotFound)
	_, _, err = e.s.Begin(ctx, "j1", 3)
	is.Equal(err, jobs.ErrNotFound)
	is.Equal(e.s.Erase(ctx, "j1"), jobs.ErrNotFound)

	is.NoErr(e.s.Collected(ctx, "j1"))
	is.Equal(len(e.expired(t)), 0)
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
	is.Equal(len(e.expired(t)), 0)
	at := e.doInt(t, "ZSCORE", e.key("expiry"), "j1")
	is.True(at > e.clock.Now().UnixMilli()) // its mark moved on with the record
	is.True(at > job.ExpiresAt.UnixMilli())

	// Collected keeps the mark of a job whose record still exists.
	e.clock.Advance(jobs.MaxWait + 3*time.Hour) // past the moved mark too
	is.NoErr(e.s.Collected(ctx, "j1"))
	is.Equal(e.r.Do(t, "EXISTS", e.key("record", "j1")), int64(1))
	e.r.Do(t, "DEL", e.key("record", "j1")) // Redis expires it
	is.Equal(e.expired(t), []string{"j1"})
	is.NoErr(e.s.Collected(ctx, "j1"))
	is.Equal(len(e.expired(t)), 0)
}

func TestOneProcessLeadsAtATime(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	lead := func(s *jobs.Store, name, holder string) bool {
		ok, err := s.Lead(ctx, name, holder, time.Minute)
		is.NoErr(err)
		return ok
	}
	is.True(lead(e.s, "sweeper", "p1"))
	is.True(!lead(e.store(), "sweeper", "p2")) // another holds it
	is.True(lead(e.s, "sweeper", "p1"))        // the holder keeps it
	is.True(lead(e.s, "other", "p2"))          // names are separate
	e.r.Do(t, "DEL", e.key("lead", "sweeper"))
	is.True(lead(e.store(), "sweeper", "p2")) // once the lease runs out, another takes it
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
			subscribed <- e.s.Subscribe(ctx, dial, name, func(msg string) {
				// Messages the test no longer reads must not hold the
				// subscription past its context (the buffer fills when
				// submits go on while the messages come late).
				select {
				case heard <- name + " " + msg:
				case <-ctx.Done():
				}
			})
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
	open := func(client, stream string) bool {
		ok, err := e.s.OpenStream(ctx, client, stream, 3)
		is.NoErr(err)
		return ok
	}
	for i := range 3 {
		is.True(open("key:a", fmt.Sprint("s", i)))
	}
	is.True(!open("key:a", "s3")) // the fourth
	is.True(open("key:b", "s0"))  // another client counts its own

	is.NoErr(e.s.CloseStream(ctx, "key:a", "s0"))
	is.True(open("key:a", "s4")) // a closed stream frees its place

	e.clock.Advance(jobs.StreamLease / 2)
	is.NoErr(e.s.RenewStream(ctx, "key:a", "s1")) // s1 renews; s2 and s4 do not (their process died)
	e.clock.Advance(jobs.StreamLease/2 + time.Second)
	for _, s := range []string{"s5", "s6"} {
		is.True(open("key:a", s))
	}
	is.True(!open("key:a", "s7")) // s1, s5 and s6 are open
}
