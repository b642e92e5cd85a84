package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/jobs"
)

func newStore(t *testing.T, ttl time.Duration) (*jobs.Store, *testredis.Redis) {
	r := testredis.New(t)
	return jobs.NewStore(r.Pool, r.Namespace, ttl), r
}

func queued(id string) *jobs.Job {
	return &jobs.Job{
		ID: id, Status: jobs.StatusQueued, CreatedAt: time.Now().UTC(),
		Request: jobs.Request{Source: jobs.SourceUpload, Width: 64, Fit: "contain", Format: "jpeg", Quality: 80,
			Email: "a@example.com", CallbackURL: "https://example.com/hook"},
		Deliveries: []jobs.Delivery{
			{Channel: jobs.ChannelEmail, Target: "a***@example.com", Status: jobs.DeliveryPending},
			{Channel: jobs.ChannelCallback, Target: "https://example.com/hook", Status: jobs.DeliveryPending},
		},
	}
}

func TestJobLifecycle(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, _ := newStore(t, time.Hour)

	is.NoErr(s.Create(ctx, queued("j1"), []byte("original")))
	is.True(s.Create(ctx, queued("j1"), nil) != nil) // ids are never reused

	up, err := s.Upload(ctx, "j1")
	is.NoErr(err)
	is.Equal(string(up), "original")

	job, begin, err := s.Begin(ctx, "j1", 3, time.Minute)
	is.NoErr(err)
	is.Equal(begin, jobs.Run)
	is.Equal(job.Status, jobs.StatusProcessing)
	is.Equal(job.Attempts, 1)
	is.True(job.StartedAt != nil)

	stale, err := s.Stale(ctx, time.Now().Add(time.Minute))
	is.NoErr(err)
	is.Equal(stale, []string{"j1"})

	done, ended, err := s.Succeed(ctx, "j1", jobs.Result{Width: 64, Height: 48, Format: "jpeg", ContentType: "image/jpeg"}, []byte("thumb"))
	is.NoErr(err)
	is.True(ended)
	is.Equal(done.Status, jobs.StatusSucceeded)
	is.Equal(done.Result.Bytes, 5)
	is.True(done.FinishedAt != nil)

	img, err := s.Image(ctx, "j1")
	is.NoErr(err)
	is.Equal(string(img), "thumb")
	_, err = s.Upload(ctx, "j1")
	is.Equal(err, jobs.ErrNotFound) // the original goes when the job ends
	stale, err = s.Stale(ctx, time.Now().Add(time.Minute))
	is.NoErr(err)
	is.Equal(len(stale), 0)

	// A late re-run (the reaper, a duplicate) changes nothing.
	_, begin, err = s.Begin(ctx, "j1", 3, time.Minute)
	is.NoErr(err)
	is.Equal(begin, jobs.Skip)
	_, ended, err = s.Fail(ctx, "j1", "corrupt_image", "late")
	is.NoErr(err)
	is.True(!ended)
	got, err := s.Get(ctx, "j1")
	is.NoErr(err)
	is.Equal(got.Status, jobs.StatusSucceeded)
}

func TestCrashedRunsEndTheJob(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, _ := newStore(t, time.Hour)
	is.NoErr(s.Create(ctx, queued("poison"), nil))

	// Each Begin that finds the job still processing means the run before died.
	for i := 0; i < 3; i++ {
		_, begin, err := s.Begin(ctx, "poison", 3, 0)
		is.NoErr(err)
		is.Equal(begin, jobs.Run)
	}
	job, begin, err := s.Begin(ctx, "poison", 3, 0)
	is.NoErr(err)
	is.Equal(begin, jobs.Crashed)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, jobs.CodeWorkerCrashed)
	is.Equal(job.Crashes, 3)
}

func TestRequeueIsNotACrash(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, _ := newStore(t, time.Hour)
	is.NoErr(s.Create(ctx, queued("flaky"), nil))
	for i := 0; i < 5; i++ {
		_, begin, err := s.Begin(ctx, "flaky", 3, time.Minute)
		is.NoErr(err)
		is.Equal(begin, jobs.Run)
		is.NoErr(s.Requeue(ctx, "flaky"))
	}
	job, err := s.Get(ctx, "flaky")
	is.NoErr(err)
	is.Equal(job.Crashes, 0)
	is.Equal(job.Attempts, 5)
	is.Equal(job.Status, jobs.StatusQueued)
}

func TestConcurrentDeliveryUpdatesAreNotLost(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, _ := newStore(t, time.Hour)
	is.NoErr(s.Create(ctx, queued("busy"), nil))

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		for _, ch := range []string{jobs.ChannelEmail, jobs.ChannelCallback} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.UpdateDelivery(ctx, "busy", ch, func(_ *jobs.Job, d *jobs.Delivery) error {
					d.Attempts++
					return nil
				})
				is.NoErr(err)
			}()
		}
	}
	wg.Wait()
	job, err := s.Get(ctx, "busy")
	is.NoErr(err)
	is.Equal(job.Delivery(jobs.ChannelEmail).Attempts, 20)
	is.Equal(job.Delivery(jobs.ChannelCallback).Attempts, 20)
}

func TestEverythingExpires(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, r := newStore(t, 2*time.Second)
	is.NoErr(s.Create(ctx, queued("short"), []byte("orig")))
	_, _, err := s.Begin(ctx, "short", 3, time.Minute)
	is.NoErr(err)
	_, _, err = s.Succeed(ctx, "short", jobs.Result{}, []byte("thumb"))
	is.NoErr(err)
	conn := r.Pool.Get()
	defer conn.Close()
	for _, key := range []string{r.Namespace + ":record:short", r.Namespace + ":image:short"} {
		ttl, err := conn.Do("PTTL", key)
		is.NoErr(err)
		is.True(ttl.(int64) > 0 && ttl.(int64) <= 2000) // every key carries the result TTL
	}
	if r.Mini != nil {
		r.Mini.FastForward(3 * time.Second)
	} else {
		time.Sleep(2100 * time.Millisecond)
	}
	_, err = s.Get(ctx, "short")
	is.Equal(err, jobs.ErrNotFound)
	_, err = s.Image(ctx, "short")
	is.Equal(err, jobs.ErrNotFound)
}

func TestIdempotencyClaim(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, _ := newStore(t, time.Hour)
	first, fp, claimed, err := s.Claim(ctx, "ip:1.2.3.4", "k1", "fp-a", "job-a")
	is.NoErr(err)
	is.True(claimed)
	is.Equal(first, "job-a")
	is.Equal(fp, "fp-a")
	first, fp, claimed, err = s.Claim(ctx, "ip:1.2.3.4", "k1", "fp-b", "job-b")
	is.NoErr(err)
	is.True(!claimed)
	is.Equal(first, "job-a")
	is.Equal(fp, "fp-a")
	// Another client's key is its own.
	_, _, claimed, err = s.Claim(ctx, "ip:5.6.7.8", "k1", "fp-b", "job-c")
	is.NoErr(err)
	is.True(claimed)
	is.NoErr(s.Release(ctx, "ip:1.2.3.4", "k1"))
	_, _, claimed, err = s.Claim(ctx, "ip:1.2.3.4", "k1", "fp-b", "job-d")
	is.NoErr(err)
	is.True(claimed)
}

func TestRateLimiter(t *testing.T) {
	is := is.New(t)
	s, _ := newStore(t, time.Hour)
	l := jobs.NewRateLimiter(s, 1, 3)
	for i := 0; i < 3; i++ {
		ok, err := l.Allow("client-a")
		is.NoErr(err)
		is.True(ok) // the burst is allowed
	}
	ok, err := l.Allow("client-a")
	is.True(!ok)
	var limited *jobs.LimitedError
	is.True(err != nil)
	limited, _ = err.(*jobs.LimitedError)
	is.True(limited != nil)
	is.True(limited.RetryAfter > 0 && limited.RetryAfter <= time.Second)
	ok, err = l.Allow("client-b")
	is.NoErr(err)
	is.True(ok) // clients are limited separately
}

func TestADuplicateRunSkipsWhileTheFirstIsAlive(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, _ := newStore(t, time.Hour)
	is.NoErr(s.Create(ctx, queued("dup"), nil))
	_, begin, err := s.Begin(ctx, "dup", 3, time.Minute)
	is.NoErr(err)
	is.Equal(begin, jobs.Run)
	job, begin, err := s.Begin(ctx, "dup", 3, time.Minute)
	is.NoErr(err)
	is.Equal(begin, jobs.Skip) // the first run's heartbeat is fresh
	is.Equal(job.Crashes, 0)   // and a duplicate is not a crash
}

func TestRescueQueuesAStaleJobOnce(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, _ := newStore(t, time.Hour)
	is.NoErr(s.Create(ctx, queued("orphan"), nil))
	_, _, err := s.Begin(ctx, "orphan", 3, time.Minute)
	is.NoErr(err)

	ok, err := s.Rescue(ctx, "orphan", time.Now().Add(-time.Minute))
	is.NoErr(err)
	is.True(!ok) // the heartbeat is fresh: not stale yet

	ok, err = s.Rescue(ctx, "orphan", time.Now().Add(time.Second))
	is.NoErr(err)
	is.True(ok)
	job, err := s.Get(ctx, "orphan")
	is.NoErr(err)
	is.Equal(job.Status, jobs.StatusQueued)
	is.Equal(job.Crashes, 1)
	stale, err := s.Stale(ctx, time.Now().Add(time.Hour))
	is.NoErr(err)
	is.Equal(len(stale), 0) // waiting in the queue, it is not rescued again

	_, begin, err := s.Begin(ctx, "orphan", 3, time.Minute)
	is.NoErr(err)
	is.Equal(begin, jobs.Run)
	job, err = s.Get(ctx, "orphan")
	is.NoErr(err)
	is.Equal(job.Crashes, 1) // the rescue counted the death once
}
