package notifier_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
)

func TestADeliveredAttemptRunAgainSendsNothing(t *testing.T) {
	is := is.New(t)
	sink := testsmtp.New(t)
	rc := newReceiver(t, status(http.StatusOK))
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL(), AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-twice", mary, rc.URL, "timeout", "took too long"), nil)

	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))
	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	// The queue runs the same attempts again (a crash after the send, a
	// duplicate enqueue): nothing goes out twice.
	is.NoErr(e.n.DeliverEmail(emailAttempt(job.ID, 1)))
	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	// A late, stale attempt of a delivery that already ended is skipped too.
	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 2)))

	is.Equal(len(sink.Received()), 1)
	is.Equal(len(rc.received()), 1)
	is.Equal(e.delivery(job.ID, jobs.ChannelEmail).Attempts, 1)
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Attempts, 1)

	// JobEnded again (say the thumbnail job re-ran and found the job ended)
	// queues nothing new: both deliveries have started.
	queuedBefore := e.queued(jobs.TypeDeliverEmail) + e.queued(jobs.TypeDeliverCallback)
	is.NoErr(e.n.JobEnded(context.Background(), e.get(job.ID)))
	is.Equal(e.queued(jobs.TypeDeliverEmail)+e.queued(jobs.TypeDeliverCallback), queuedBefore)
}

func TestARerunOfAFinishedAttemptOnlyMakesSureTheNextIsScheduled(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(t, status(http.StatusServiceUnavailable))
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("1h"), AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-rerun", "", rc.URL, "timeout", "took too long"), nil)

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	is.Equal(len(e.scheduled()), 1)
	recorded := e.delivery(job.ID, jobs.ChannelCallback)

	// The process died after recording the outcome, before the next attempt
	// was queued: simulate by dropping the scheduled job, then re-run.
	conn := e.pool.Get()
	_, err := conn.Do("DEL", e.ns+":scheduled")
	conn.Close()
	is.NoErr(err)
	is.Equal(len(e.scheduled()), 0)

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	is.Equal(len(rc.received()), 1) // not sent again
	next := e.scheduled()
	is.Equal(len(next), 1)
	is.Equal(next[0].ArgString(jobs.ArgAttempt), "2")
	runIn := time.Until(time.Unix(next[0].RunAt, 0))
	is.True(runIn > 58*time.Minute && runIn <= time.Hour+time.Second) // at the recorded time, not a new gap
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback), recorded)      // the record is untouched
}

func TestAnAttemptInterruptedMidwayCountsAsFailed(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(t, status(http.StatusOK))
	e := newEnv(t, notifier.Config{CallbackSchedule: schedule("1m"), AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-interrupted", "", rc.URL, "timeout", "took too long"), nil)

	// Attempt 1 claimed itself a while ago and its process died mid-send.
	long := time.Now().Add(-time.Hour).UTC()
	_, err := e.store.UpdateDelivery(context.Background(), job.ID, jobs.ChannelCallback, func(_ *jobs.Job, d *jobs.Delivery) error {
		d.Attempts, d.LastAttemptAt = 1, &long
		return nil
	})
	is.NoErr(err)

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1))) // the queue re-runs it
	is.Equal(len(rc.received()), 0)                           // the re-run does not send
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.Equal(d.Attempts, 1)
	is.True(d.NextAttemptAt != nil)
	mustContain(t, d.LastError, "interrupted")
	is.Equal(len(e.scheduled()), 1) // attempt 2 will send

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 2)))
	is.Equal(len(rc.received()), 1)
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Status, jobs.DeliveryDelivered)
}

func TestAnAttemptInProgressElsewhereIsLeftAlone(t *testing.T) {
	is := is.New(t)
	rc := newReceiver(t, status(http.StatusOK))
	e := newEnv(t, notifier.Config{AllowPrivateNetworks: true})
	job := e.createEnded(failedJob("job-busy", "", rc.URL, "timeout", "took too long"), nil)

	now := time.Now().UTC()
	_, err := e.store.UpdateDelivery(context.Background(), job.ID, jobs.ChannelCallback, func(_ *jobs.Job, d *jobs.Delivery) error {
		d.Attempts, d.LastAttemptAt = 1, &now // another worker is sending attempt 1 right now
		return nil
	})
	is.NoErr(err)

	is.NoErr(e.n.DeliverCallback(callbackAttempt(job.ID, 1)))
	is.Equal(len(rc.received()), 0)
	is.Equal(e.delivery(job.ID, jobs.ChannelCallback).Attempts, 1)
	// A check comes back after the other run must have ended, in case its worker died.
	checks := e.scheduled()
	is.Equal(len(checks), 1)
	is.Equal(checks[0].ArgString(jobs.ArgAttempt), "1")
	is.Equal(checks[0].ArgString(jobs.ArgWatchdog), "1")
	is.True(time.Until(time.Unix(checks[0].RunAt, 0)) > 10*time.Second)

	// When the check runs and the attempt is still unfinished, it is counted
	// failed and the next attempt is scheduled.
	past := now.Add(-time.Hour)
	_, err = e.store.UpdateDelivery(context.Background(), job.ID, jobs.ChannelCallback, func(_ *jobs.Job, d *jobs.Delivery) error {
		d.LastAttemptAt = &past // the other run started long ago and never finished
		return nil
	})
	is.NoErr(err)
	is.NoErr(e.n.DeliverCallback(&work.Job{Name: jobs.TypeDeliverCallback, ID: "check", Args: map[string]interface{}{
		jobs.ArgJobID: job.ID, jobs.ArgAttempt: "1", jobs.ArgWatchdog: "1"}}))
	d := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(d.Status, jobs.DeliveryPending)
	is.True(d.NextAttemptAt != nil)
	is.True(strings.Contains(d.LastError, "interrupted"))
}

func TestAnExpiredJobOrABadJobArgumentIsHandled(t *testing.T) {
	is := is.New(t)
	e := newEnv(t, notifier.Config{})
	is.NoErr(e.n.DeliverEmail(emailAttempt("no-such-job", 1))) // expired: nothing to do
	err := e.n.DeliverEmail(&work.Job{Name: jobs.TypeDeliverEmail, ID: "x", Args: map[string]interface{}{jobs.ArgJobID: "j"}})
	is.True(err != nil) // no attempt number: a bug, for the dead set
	err = e.n.DeliverCallback(attempt(jobs.TypeDeliverCallback, "j", 0))
	is.True(err != nil)
	is.True(e.n.JobEnded(context.Background(), &jobs.Job{ID: "q", Status: jobs.StatusQueued}) != nil)
}
