package notifier_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
)

func smtpConfig(t *testing.T, sink *testsmtp.Server) *notifier.SMTPServer {
	t.Helper()
	s, err := notifier.ParseSMTPURL(sink.URL())
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestADeliveredAttemptRunAgainSendsNothing(t *testing.T) {
	is := is.New(t)
	rc := testapi.NewReceiver(t)
	sink, e := newMailEnv(t, nil, notifier.Config{})
	job := e.failedJob("job-twice", mary, rc.URL, "timeout", "took too long")

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	delivered := e.get(job.ID)
	// The queue runs the same attempts again (a crash after the send, a
	// duplicate entry): nothing goes out twice.
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	// A late, stale attempt of a delivery that already ended is skipped too.
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 2))

	is.Equal(len(sink.Received()), 1)
	is.Equal(len(rc.All()), 1)
	is.Equal(e.get(job.ID), delivered) // not a field of the record changed
	is.Equal(e.delivery(job.ID, jobs.ChannelEmail).Attempts, 1)
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Attempts, 1)

	// The job's end is recorded again (its thumbnail run ran twice): it
	// queues nothing new, both deliveries having started.
	e.queuedDeliveries()
	_, ended, err := e.store.Fail(context.Background(), job.ID, "timeout", "took too long")
	is.NoErr(err)
	is.True(!ended)
	is.Equal(len(e.queuedDeliveries()), 0)
	is.True(e.nextDue().IsZero())
}

// The old notifier recorded an attempt's outcome and then scheduled the
// next attempt in a second step, so a re-run of a finished attempt had to
// make sure the next one was scheduled. That gap is gone by design: Record
// writes the outcome and schedules the next attempt in one transaction.
// This is the strongest test of that guarantee: after the outcome, exactly
// one next attempt is scheduled, at the recorded time; a re-run of the
// finished attempt sends nothing, writes nothing and schedules nothing more.
func TestTheNextAttemptIsScheduledWithTheOutcome(t *testing.T) {
	is := is.New(t)
	rc := receiverAnswering(t, []int{http.StatusServiceUnavailable})
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("1h")})
	job := e.failedJob("job-rerun", "", rc.URL, "timeout", "took too long")

	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	recorded := e.get(job.ID)
	d := *recorded.Delivery(jobs.ChannelCallback)
	is.Equal(*d.NextAttemptAt, d.LastAttemptAt.Add(time.Hour))

	e.clock.Advance(time.Minute)
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1)) // the queue runs attempt 1 again
	is.Equal(len(rc.All()), 1)                           // not sent again
	is.Equal(e.get(job.ID), recorded)                    // the record is untouched

	is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 2}})
	is.Equal(e.clock.Now(), *d.NextAttemptAt) // at the recorded time, not a new gap
	is.True(e.nextDue().IsZero())             // and only once
}

// The old notifier ran watchdog checks for attempts in progress elsewhere.
// Now an attempt holds a lease in the record; while it is alive no other
// run sends, and once it runs out the sweeper calls Interrupted, which
// counts the attempt as failed (it may or may not have arrived), logs it
// and schedules the next one in the same transaction.
func TestAnAttemptWhoseRunDiedIsInterruptedAndTheNextScheduled(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	rc := testapi.NewReceiver(t)
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("1m")})
	job := e.failedJob("job-interrupted", "", rc.URL, "timeout", "took too long")

	// A worker claims attempt 1 and dies in the middle of the send.
	_, claim, _, err := e.store.Claim(ctx, job.ID, jobs.ChannelCallback, 1)
	is.NoErr(err)
	is.Equal(claim, jobs.Send)
	claimed := e.get(job.ID)
	claimedAt := *claimed.Delivery(jobs.ChannelCallback).LastAttemptAt

	// While its lease is alive, a re-run sends nothing and Interrupted
	// leaves it alone: the attempt may still be running.
	e.clock.Advance(10 * time.Second)
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 1))
	is.NoErr(e.n.Interrupted(ctx, jobs.ChannelCallback, job.ID))
	is.Equal(len(rc.All()), 0)
	is.Equal(e.get(job.ID), claimed)
	is.True(e.nextDue().IsZero())

	// The lease runs out: the sweeper calls Interrupted.
	e.clock.Advance(21 * time.Second)
	is.NoErr(e.n.Interrupted(ctx, jobs.ChannelCallback, job.ID))
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.Attempts, 1)
	is.Equal(*d.NextAttemptAt, e.clock.Now().Add(time.Minute))
	mustContain(t, d.LastError, "attempt 1 was interrupted")
	is.Equal(d.Log, []jobs.LogEntry{{Attempt: 1, At: claimedAt, DurationMS: 31_000, Outcome: jobs.OutcomeRetry, Error: d.LastError}})

	// The run that died cannot record its outcome now, and a second
	// Interrupted changes nothing.
	_, err = e.store.Record(ctx, job.ID, jobs.ChannelCallback, 1, jobs.Outcome{Delivered: true})
	is.True(errors.Is(err, jobs.ErrAttemptMoved))
	interrupted := e.delivery(job.ID, jobs.ChannelCallback)
	is.NoErr(e.n.Interrupted(ctx, jobs.ChannelCallback, job.ID))
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback), interrupted)

	// Attempt 2 is queued at its time and sends.
	is.Equal(e.untilDue(), []jobs.Work{{Kind: jobs.ChannelCallback, JobID: job.ID, Attempt: 2}})
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 2))
	is.Equal(len(rc.All()), 1)
	d = e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryDelivered)
	is.Equal(len(d.Log), 2)
	is.Equal(d.Log[1].Outcome, jobs.OutcomeDelivered)
}

// An interrupted last attempt ends the delivery: the schedule has run out.
func TestAnInterruptedLastAttemptFailsTheDelivery(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	_, e := newMailEnv(t, testsmtp.TempFailure, notifier.Config{EmailSchedule: schedule("1m")})
	job := e.failedJob("job-interrupted-last", mary, "", "timeout", "took too long")

	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1)) // 451
	e.untilDue()
	_, claim, _, err := e.store.Claim(ctx, job.ID, jobs.ChannelEmail, 2)
	is.NoErr(err)
	is.Equal(claim, jobs.Send)
	e.clock.Advance(time.Minute) // past the 30 s lease
	err = e.n.Interrupted(ctx, jobs.ChannelEmail, job.ID)
	is.True(errors.Is(err, jobs.ErrDeliveryFailed)) // failed for good: the worker puts it in the dead set

	d := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(d.Status, jobs.DeliveryFailed)
	is.Equal(d.ErrorCode, codes.RetriesExhausted)
	mustContain(t, d.LastError, "gave up after 2 attempts; the last one failed: attempt 2 was interrupted")
	is.Equal(d.Log[1].Outcome, jobs.OutcomeFailed)
	is.True(e.nextDue().IsZero())
}

// The worker parses the queue's arguments now (a bad entry is dropped
// there); what reaches Deliver are plain values, and whatever they name
// that cannot be sent is passed over without a send.
func TestAttemptsThatCannotBeSentAreNotSent(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	rc := testapi.NewReceiver(t)
	e := newEnv(t, notifier.Config{})
	is.NoErr(e.deliver(jobs.ChannelEmail, "no-such-job", 1)) // expired or erased: nothing to do

	job := e.failedJob("job-odd", "", rc.URL, "timeout", "took too long")
	is.NoErr(e.deliver("sms", job.ID, 1))                        // no such channel: dropped
	is.NoErr(e.deliver(jobs.ChannelEmail, job.ID, 1))            // the job has no email delivery
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 0))         // no attempt 0
	is.NoErr(e.deliver(jobs.ChannelCallback, job.ID, 2))         // attempt 1 has not run
	is.True(e.n.Interrupted(ctx, "sms", job.ID) != nil)          // a bug for the sweeper's log
	is.NoErr(e.n.Interrupted(ctx, jobs.ChannelCallback, job.ID)) // nothing was claimed
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Attempts, 0)

	// A job that has not ended has nothing to deliver yet.
	queued := jobs.New("job-queued", jobs.Owner{}, jobs.Request{Source: jobs.SourceUpload, CallbackURL: rc.URL}, e.clock.Now(), ttl)
	_, _, err := e.store.Submit(ctx, queued, nil)
	is.NoErr(err)
	is.NoErr(e.deliver(jobs.ChannelCallback, queued.ID, 1))
	is.Equal(e.delivery(queued.ID, jobs.ChannelCallback).Attempts, 0)

	is.Equal(len(rc.All()), 0)
	mustContain(t, e.logs.String(), "unknown delivery channel")
}
