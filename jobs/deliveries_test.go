package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
)

// retry is the outcome of an attempt that failed with another to follow at next.
func retry(attempt int, next time.Time) jobs.Outcome {
	return jobs.Outcome{Message: "the receiver answered 503", Next: next,
		Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeRetry, StatusCode: 503}}
}

func delivered(attempt int) jobs.Outcome {
	return jobs.Outcome{Delivered: true, Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeDelivered, StatusCode: 200}}
}

func failedForGood(attempt int) jobs.Outcome {
	return jobs.Outcome{Final: true, Code: codes.CallbackGone, Message: "the receiver answered 410",
		Log: jobs.LogEntry{Attempt: attempt, Outcome: jobs.OutcomeFailed, StatusCode: 410}}
}

// claim runs attempt of id's delivery on channel as the notifier does:
// "send", or "pass: " and the reason it passes.
func (e *env) claim(t *testing.T, id, channel string, attempt int) string {
	t.Helper()
	_, result, reason, err := e.s.Claim(context.Background(), id, channel, attempt)
	if err != nil {
		t.Fatalf("claim %s %s %d: %v", id, channel, attempt, err)
	}
	if result == jobs.Send {
		return "send"
	}
	return "pass: " + reason
}

// record writes the outcome of attempt of id's delivery on channel.
func (e *env) record(t *testing.T, id, channel string, attempt int, o jobs.Outcome) *jobs.Job {
	t.Helper()
	job, err := e.s.Record(context.Background(), id, channel, attempt, o)
	if err != nil {
		t.Fatalf("record %s %s %d: %v", id, channel, attempt, err)
	}
	return job
}

func TestClaimSendsEachAttemptOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "running")
	e.ended(t, "j1")
	e.clearQueue(t)

	passes := []struct{ name, id, channel, want string }{
		{"a job that has not ended has nothing to deliver", "running", jobs.ChannelCallback, "pass: the job has not ended"},
		{"a channel the job does not have", "j1", "pigeon", "pass: the job has no such delivery"},
	}
	for _, c := range passes {
		t.Run(c.name, func(t *testing.T) {
			is.New(t).Equal(e.claim(t, c.id, c.channel, 1), c.want)
		})
	}
	t.Run("an unknown job", func(t *testing.T) {
		is := is.New(t)
		_, _, _, err := e.s.Claim(ctx, "unknown", jobs.ChannelCallback, 1)
		is.Equal(err, jobs.ErrNotFound)
	})
	t.Run("the first attempt sends and takes its lease", func(t *testing.T) {
		is := is.New(t)
		job, result, _, err := e.s.Claim(ctx, "j1", jobs.ChannelCallback, 1)
		is.NoErr(err)
		is.Equal(result, jobs.Send)
		d := job.Delivery(jobs.ChannelCallback)
		is.Equal(d.Attempts, 1)
		is.Equal(*d.LastAttemptAt, e.clock.Now())
		is.Equal(e.expiredLeases(t, lease), []jobs.Lease{{Kind: jobs.ChannelCallback, JobID: "j1"}})
		is.Equal(len(e.expiredLeases(t, lease-time.Millisecond)), 0)
	})
	t.Run("a duplicate run of the attempt passes", func(t *testing.T) {
		is.New(t).Equal(e.claim(t, "j1", jobs.ChannelCallback, 1), "pass: this attempt already ran or is running")
	})
	t.Run("the next attempt waits for this one's outcome", func(t *testing.T) {
		is := is.New(t)
		is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 2), "pass: the attempt before it has not finished")
		is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 3), "pass: the attempt before it has not finished")
	})
	t.Run("the other channel goes its own way", func(t *testing.T) {
		is.New(t).Equal(e.claim(t, "j1", jobs.ChannelEmail, 1), "send")
	})
	is := is.New(t)
	is.Equal(e.get(t, "j1").Delivery(jobs.ChannelCallback).Attempts, 1)
	is.Equal(len(e.queued(t)), 0) // claiming queues nothing
}

// The old notifier had a run of a finished attempt make sure the next one
// was scheduled. Record now writes the outcome, drops the lease and
// schedules the next attempt in one transaction, so an attempt is never left
// without its next one; this is the strongest test of that: after Record
// returns the next attempt is in the due set at its time, an outcome that
// is refused schedules nothing, and the scheduled attempt is the one that
// sends next.
func TestRecordSchedulesTheNextAttemptInTheSameTransaction(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.ended(t, "j1")
	is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 1), "send")

	next := e.clock.Now().Add(5 * time.Second)
	job := e.record(t, "j1", jobs.ChannelCallback, 1, retry(1, next))
	d := job.Delivery(jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(*d.NextAttemptAt, next)
	is.Equal(d.LastError, "the receiver answered 503")
	is.Equal(len(d.Log), 1)
	is.Equal(d.Log[0].StatusCode, 503)
	is.Equal(e.due(t), map[string]time.Duration{"callback j1 2": 5 * time.Second})
	is.Equal(len(e.queued(t)), 0)
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0) // the lease went with the outcome

	// A second outcome of the same attempt (a duplicate run, a run the
	// sweeper already counted) is refused and schedules nothing.
	_, err := e.s.Record(ctx, "j1", jobs.ChannelCallback, 1, retry(1, e.clock.Now()))
	is.Equal(err, jobs.ErrAttemptMoved)
	is.Equal(len(e.due(t)), 1)
	is.Equal(len(e.queued(t)), 0)

	// Attempt 2 cannot start early: its queue entry is not there yet.
	moved, at, err := e.s.MoveDue(ctx)
	is.NoErr(err)
	is.Equal(moved, 0)
	is.True(at.Equal(next)) // and MoveDue says when it is due
	e.clock.Advance(5 * time.Second)
	moved, _, err = e.s.MoveDue(ctx)
	is.NoErr(err)
	is.Equal(moved, 1)
	is.Equal(e.queued(t), []string{"callback j1 2"})

	is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 2), "send")
	// An outcome due at once is queued at once.
	job = e.record(t, "j1", jobs.ChannelCallback, 2, retry(2, e.clock.Now()))
	is.Equal(e.queued(t), []string{"callback j1 2", "callback j1 3"})
	is.Equal(len(e.due(t)), 0)
	is.Equal(job.Delivery(jobs.ChannelCallback).Attempts, 2)

	is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 3), "send")
	d = e.record(t, "j1", jobs.ChannelCallback, 3, delivered(3)).Delivery(jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.True(d.NextAttemptAt == nil)
	is.Equal(d.LastError, "")
	is.Equal(len(d.Log), 3)
	is.Equal(len(e.due(t)), 0)
	is.Equal(len(e.queued(t)), 2) // nothing follows a delivered attempt

	is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 4), "pass: the delivery has ended (delivered)")
}

func TestAFinalOutcomeFailsTheDelivery(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, time.Hour)
	e.ended(t, "j1")
	is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 1), "send")
	job := e.record(t, "j1", jobs.ChannelCallback, 1, failedForGood(1))
	d := job.Delivery(jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.CallbackGone)
	is.Equal(d.LastError, "the receiver answered 410")
	is.Equal(len(e.due(t)), 0)
	is.Equal(len(e.queued(t)), 0)
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0)
	is.Equal(job.Delivery(jobs.ChannelEmail).Status, jobs.DeliveryPending) // the other channel is untouched
}

func TestInterruptOnlyActsOnAnExpiredLease(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.ended(t, "j1")
	calls := 0
	var seen jobs.Delivery
	interrupted := func(job *jobs.Job, d jobs.Delivery) jobs.Outcome {
		calls++
		seen = d
		return retry(d.Attempts, e.clock.Now().Add(time.Minute))
	}

	// No attempt has started: nothing to take back.
	done, err := e.s.Interrupt(ctx, "j1", jobs.ChannelCallback, interrupted)
	is.NoErr(err)
	is.True(!done)

	is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 1), "send")
	e.clock.Advance(lease - time.Millisecond)
	done, err = e.s.Interrupt(ctx, "j1", jobs.ChannelCallback, interrupted)
	is.NoErr(err)
	is.True(!done)     // the attempt's lease is alive: its run goes on
	is.Equal(calls, 0) // and is not judged

	e.clock.Advance(time.Millisecond)
	done, err = e.s.Interrupt(ctx, "j1", jobs.ChannelCallback, interrupted)
	is.NoErr(err)
	is.True(done)
	is.Equal(calls, 1)
	is.Equal(seen.Attempts, 1)
	d := e.get(t, "j1").Delivery(jobs.ChannelCallback)
	is.Equal(len(d.Log), 1)
	is.True(d.NextAttemptAt != nil)
	is.Equal(e.due(t), map[string]time.Duration{"callback j1 2": time.Minute})
	is.Equal(len(e.expiredLeases(t, 2*lease)), 0)

	// The run that was taken for dead comes back: its outcome is refused.
	_, err = e.s.Record(ctx, "j1", jobs.ChannelCallback, 1, delivered(1))
	is.Equal(err, jobs.ErrAttemptMoved)
	// A second sweep finds nothing to do.
	done, err = e.s.Interrupt(ctx, "j1", jobs.ChannelCallback, interrupted)
	is.NoErr(err)
	is.True(!done)
	is.Equal(calls, 1)
	is.Equal(len(e.due(t)), 1)
}

func TestRedeliver(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	e.submit(t, "running")
	e.ended(t, "j1")

	t.Run("refused while the delivery is pending", func(t *testing.T) {
		is := is.New(t)
		_, err := e.s.Redeliver(ctx, "j1", jobs.ChannelCallback)
		is.Equal(err, jobs.ErrDeliveryPending)
		is.Equal(len(e.queued(t)), 0)
	})
	t.Run("refused for a job that has not ended or a channel it lacks", func(t *testing.T) {
		is := is.New(t)
		_, err := e.s.Redeliver(ctx, "running", jobs.ChannelCallback)
		is.Equal(err, jobs.ErrDeliveryPending) // its delivery has not even started
		_, err = e.s.Redeliver(ctx, "j1", "pigeon")
		is.Equal(err, jobs.ErrNoDelivery)
		_, err = e.s.Redeliver(ctx, "unknown", jobs.ChannelCallback)
		is.Equal(err, jobs.ErrNotFound)
	})
	t.Run("a delivered delivery starts a new series", func(t *testing.T) {
		is := is.New(t)
		is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 1), "send")
		e.record(t, "j1", jobs.ChannelCallback, 1, delivered(1))

		job, err := e.s.Redeliver(ctx, "j1", jobs.ChannelCallback)
		is.NoErr(err)
		d := job.Delivery(jobs.ChannelCallback)
		is.Equal(d.Status, jobs.DeliveryPending)
		is.Equal(d.SeriesStart, 2) // the schedule counts from here
		is.Equal(d.Attempts, 1)    // attempts and log go on counting
		is.Equal(len(d.Log), 1)
		is.Equal(e.queued(t), []string{"callback j1 2"})

		_, err = e.s.Redeliver(ctx, "j1", jobs.ChannelCallback)
		is.Equal(err, jobs.ErrDeliveryPending) // a second ask while it runs
		is.Equal(e.claim(t, "j1", jobs.ChannelCallback, 2), "send")
	})
}
