package notifier_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
)

// The handlers run in a real gocraft/work pool, registered the way the
// worker registers them: retries go through the scheduled set, and a
// delivery that fails for good lands in the dead set.
func TestDeliveriesRunInAWorkerPool(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for gocraft/work's scheduler")
	}
	is := is.New(t)
	sink := testsmtp.New(t)
	sink.SetReply(testsmtp.PermanentFailure)
	rc := newReceiver(t, status(http.StatusServiceUnavailable), status(http.StatusOK))
	e := newEnv(t, notifier.Config{SMTPURL: sink.URL(), CallbackSchedule: schedule("1s"), WebhookSecret: secret, AllowPrivateNetworks: true})

	pool := work.NewWorkerPool(struct{}{}, 2, e.ns, e.pool)
	pool.JobWithOptions(jobs.TypeDeliverEmail, work.JobOptions{MaxFails: 1}, e.n.DeliverEmail)
	pool.JobWithOptions(jobs.TypeDeliverCallback, work.JobOptions{MaxFails: 1}, e.n.DeliverCallback)
	pool.JobWithOptions(jobs.TypeThumbnail, work.JobOptions{MaxFails: 1}, func(*work.Job) error { return nil })
	pool.Start()
	defer pool.Stop()

	job := e.createEnded(failedJob("job-pool", mary, rc.URL, "timeout", "took too long"), nil)
	is.NoErr(e.n.JobEnded(context.Background(), job))

	deadline := time.Now().Add(30 * time.Second)
	for {
		cb := e.delivery(job.ID, jobs.ChannelCallback)
		em := e.delivery(job.ID, jobs.ChannelEmail)
		if cb.Status != jobs.DeliveryPending && em.Status != jobs.DeliveryPending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries still pending: callback %+v, email %+v", cb, em)
		}
		time.Sleep(100 * time.Millisecond)
	}

	cb := e.delivery(job.ID, jobs.ChannelCallback)
	is.Equal(cb.Status, jobs.DeliveryDelivered)
	is.Equal(cb.Attempts, 2) // the 503, then the retry a second later
	is.Equal(len(rc.received()), 2)

	em := e.delivery(job.ID, jobs.ChannelEmail)
	is.Equal(em.Status, jobs.DeliveryFailed)
	is.Equal(em.ErrorCode, notifier.CodeRecipientRejected)

	client := work.NewClient(e.ns, e.pool)
	var dead []*work.DeadJob
	for time.Now().Before(deadline) {
		dead, _, _ = client.DeadJobs(1)
		if len(dead) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	is.Equal(len(dead), 1) // the failed email, where operators look
	is.Equal(dead[0].Name, jobs.TypeDeliverEmail)
	mustContain(t, dead[0].LastErr, notifier.CodeRecipientRejected)
	mustNotContain(t, dead[0].LastErr, mary)
}
