package systemtest

import (
	"bytes"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
)

// recipient is where the delivery tests' emails go.
const recipient = "reader@example.com"

// A callback attempt that fails while Redis is away must still be retried
// once Redis is back ("retried until it is accepted").
//
// (It once failed: an outcome that could not be recorded sent the delivery
// job to the dead set with the delivery pending for good. Now the attempt
// keeps its lease; once the lease runs out the sweeper counts the attempt
// interrupted and schedules the next one.)
func TestCallbackFailedDuringRedisOutageIsRetried(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r, ns, env := redisEnv(t, "THUMBNAILED_CALLBACK_RETRY_SCHEDULE", "1s,1s,1s,1s", "THUMBNAILED_STALE_AFTER", "2s")
	rcv := testapi.NewReceiver(t, webhookSecret)
	held, release := rcv.HoldNext(t, http.StatusServiceUnavailable)
	svc := startProcess(t, "all", "all", env)

	resp := svc.API().Upload(t, readTestdata(t, "go-video-001.jpeg"),
		map[string]string{"width": "16", "callback_url": rcv.URL + "/hook"}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	id := resp.Job(t).ID
	awaitHeld(t, held, "the first callback attempt")
	r.Kill()  // Redis goes while the attempt is in flight
	release() // the attempt fails: 503
	is.True(testapi.Eventually(10*time.Second, func() bool {
		return svc.Said(id, "could not record the outcome of the attempt")
	})) // the worker tried to record it while Redis was away
	r.Start()

	job := svc.API().WaitDelivered(t, id, 40*time.Second)
	cbs := rcv.For(id)
	t.Logf("callback attempts seen by the receiver: %d; delivery in the record: %+v; gocraft/work: %s",
		len(cbs), job.Deliveries, gocraftSummary(r, ns))
	is.Equal(len(job.Deliveries), 1)
	is.Equal(job.Deliveries[0].Status, "delivered") // the callback is retried after the outage and accepted
	is.True(len(cbs) >= 2)                          // by an attempt after the one that failed
	sameEvent(t, id, cbs)
}

// Issue 11: a worker killed (SIGKILL) in the middle of a delivery, a
// callback the receiver holds open or an email the SMTP server stalls in
// DATA, loses nothing: the other worker's sweeper counts the attempt
// interrupted once its lease (THUMBNAILED_STALE_AFTER) runs out and the
// next attempt delivers. Every callback of the job carries the same
// webhook-id and the same bytes; the email arrives at least once and at
// most twice (the stalled one was kept by the server before its reply).
//
// (The callback case was TestCallbackInterruptedByKilledWorkerIsRetried,
// which started the second worker after the kill and asserted only that a
// later attempt was accepted.)
func TestKilledWorkerMidDelivery(t *testing.T) {
	eachChannel(t, func(t *testing.T, channel string, env map[string]string, apiAddr string) {
		is := is.New(t)
		push := holdFirst(t, env, channel)
		api := startProcess(t, "api", "api", env, "THUMBNAILED_ADDR", apiAddr)
		w1 := startProcess(t, "worker-1", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
		w2 := startProcess(t, "worker-2", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
		client := api.API().WithKey(apiKey)

		resp := client.Upload(t, readTestdata(t, "go-video-001.jpeg"), push.fields, nil)
		is.Equal(resp.Status, http.StatusAccepted)
		id := resp.Job(t).ID
		push.await()
		holder, survivor := w1, w2
		if !w1.Said(id, "delivering") {
			holder, survivor = w2, w1
		}
		is.True(holder.Said(id, "delivering")) // the worker that holds the attempt said so
		killAt := holder.Signal(syscall.SIGKILL)
		is.True(holder.WaitExit(5 * time.Second))

		job := client.WaitDelivered(t, id, 30*time.Second)
		is.Equal(len(job.Deliveries), 1)
		d := job.Deliveries[0]
		t.Logf("%s: SIGKILL %s mid-attempt; delivery %s after %d attempts, %s after the kill; log %+v",
			channel, holder.Name, d.Status, d.Attempts, time.Since(killAt).Round(10*time.Millisecond), d.Log)
		is.Equal(d.Channel, channel)
		is.Equal(d.Status, "delivered") // the delivery still ends delivered
		is.Equal(d.Attempts, 2)         // the interrupted attempt and the one that delivered
		is.Equal(len(d.Log), 2)
		is.Equal(d.Log[0].Outcome, "retry") // the interrupted attempt counts as failed
		is.True(strings.Contains(d.Log[0].Error, "interrupted"))
		is.Equal(d.Log[1].Outcome, "delivered")
		is.True(survivor.Said(id, "an attempt's run stopped before it finished; counted as failed")) // the survivor's sweeper took it back

		switch channel {
		case "callback":
			cbs := push.rcv.For(id)
			is.Equal(len(cbs), 2) // the held attempt and the one that delivered
			sameEvent(t, id, cbs)
			opensWithoutKey(t, apiAddr, id, cbs[len(cbs)-1])
		case "email":
			got := push.mail.Received()
			t.Logf("emails received: %d (the stalled one was kept before its reply)", len(got))
			is.True(len(got) >= 1 && len(got) <= 2) // at least once, at most twice
			for _, m := range got {
				is.Equal(m.To, []string{recipient})
			}
		}
	})
}

// A delivery attempt that takes longer than THUMBNAILED_STALE_AFTER in a
// live worker (a slow receiver, a slow SMTP server, both within their
// timeouts) keeps its lease: it is not taken back as interrupted and sent
// again while it still runs. One attempt, one callback, one email.
func TestSlowDeliveryKeepsItsLease(t *testing.T) {
	eachChannel(t, func(t *testing.T, channel string, env map[string]string, apiAddr string) {
		is := is.New(t)
		const slow = 6 * time.Second // three times the lease
		push := holdFirst(t, env, channel)
		svc := startProcess(t, "all", "all", env, "THUMBNAILED_ADDR", apiAddr)
		client := svc.API().WithKey(apiKey)

		resp := client.Upload(t, readTestdata(t, "go-video-001.jpeg"), push.fields, nil)
		is.Equal(resp.Status, http.StatusAccepted)
		id := resp.Job(t).ID
		push.await()
		heldAt := time.Now()
		time.AfterFunc(slow, push.release) // the receiver answers, slowly

		job := client.WaitDelivered(t, id, 30*time.Second)
		is.Equal(len(job.Deliveries), 1)
		d := job.Deliveries[0]
		t.Logf("%s: answered after %s (lease 2s): delivery %s after %d attempt(s), %s after it arrived; log %+v",
			channel, slow, d.Status, d.Attempts, time.Since(heldAt).Round(10*time.Millisecond), d.Log)
		is.Equal(d.Status, "delivered")
		is.Equal(d.Attempts, 1) // the slow attempt was not taken back
		switch channel {
		case "callback":
			is.Equal(len(push.rcv.For(id)), 1) // one callback
		case "email":
			is.Equal(len(push.mail.Received()), 1) // one email
		}
	})
}

// push is where a delivery test's job pushes to: a callback receiver that
// holds the first callback's request open, or an SMTP server that stalls
// the first message in DATA (keeping it before its reply).
type push struct {
	fields  map[string]string // the upload's form fields: the size and the push
	rcv     *testapi.Receiver // callback
	mail    *testsmtp.Server  // email
	await   func()            // waits until the held attempt has arrived
	release func()            // lets it be answered
}

// holdFirst sets up channel's push for a job, in env.
func holdFirst(t *testing.T, env map[string]string, channel string) *push {
	p := &push{fields: map[string]string{"width": "16"}}
	switch channel {
	case "callback":
		p.rcv = testapi.NewReceiver(t, webhookSecret)
		held, release := p.rcv.HoldNext(t, http.StatusNoContent)
		p.await = func() { awaitHeld(t, held, "the first callback attempt") }
		p.release = release
		p.fields["callback_url"] = p.rcv.URL + "/hook"
	case "email":
		p.mail = testsmtp.New(t)
		env["THUMBNAILED_SMTP_URL"] = p.mail.URL()
		held, release := p.mail.StallNext(t)
		p.await = func() { awaitHeld(t, held, "the first email attempt") }
		p.release = release
		p.fields["email"] = recipient
	default:
		t.Fatalf("no channel %q", channel)
	}
	return p
}

// eachChannel runs story for the callback and the email channel, in
// parallel, each on a Redis of its own with the environment of the delivery
// tests: API keys, an api address chosen ahead so that links are absolute,
// a lease of 2 s and attempts 1 s apart.
func eachChannel(t *testing.T, story func(t *testing.T, channel string, env map[string]string, apiAddr string)) {
	needProcesses(t)
	t.Parallel()
	for _, channel := range []string{"callback", "email"} {
		t.Run(channel, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t)
			apiAddr := testnet.FreeAddr(t)
			env["THUMBNAILED_API_KEYS"] = apiKey
			env["THUMBNAILED_PUBLIC_URL"] = "http://" + apiAddr
			env["THUMBNAILED_STALE_AFTER"] = "2s"
			env["THUMBNAILED_CALLBACK_RETRY_SCHEDULE"] = "1s,1s,1s,1s"
			env["THUMBNAILED_EMAIL_RETRY_SCHEDULE"] = "1s,1s,1s,1s"
			story(t, channel, env, apiAddr)
		})
	}
}

// sameEvent fails t unless every callback is job id's event, signed, with
// the same webhook-id and the same bytes.
func sameEvent(t *testing.T, id string, cbs []testapi.Callback) {
	t.Helper()
	for i, c := range cbs {
		if c.ID != "msg_"+id {
			t.Errorf("callback %d has webhook-id %q, not msg_%s", i+1, c.ID, id)
		}
		if !c.Signed {
			t.Errorf("callback %d is not signed: %v", i+1, c.SignError)
		}
		if !bytes.Equal(c.Body, cbs[0].Body) {
			t.Errorf("callback %d's body differs from the first's:\n%s\n%s", i+1, c.Body, cbs[0].Body)
		}
		if c.Event.Type != "thumbnail.succeeded" || c.Event.Data.ID != id {
			t.Errorf("callback %d is a %q event about job %q", i+1, c.Event.Type, c.Event.Data.ID)
		}
	}
}

// opensWithoutKey checks that the signed link of a callback, made by a
// worker, opens at the api (the same link secret) without the API key the
// rest of the API needs.
func opensWithoutKey(t *testing.T, apiAddr, id string, cb testapi.Callback) {
	t.Helper()
	is := is.NewRelaxed(t)
	img := cb.Event.Data.Image
	is.True(img != nil) // the callback names the image
	if img == nil {
		return
	}
	link := img.URL
	is.True(strings.HasPrefix(link, "http://"+apiAddr+"/v1/thumbnails/"+id+"/outputs/")) // an absolute link to the api
	api := testapi.New("http://" + apiAddr)
	r := api.Open(t, http.MethodGet, link)
	is.Equal(r.Status, http.StatusOK)                    // the signed link opens without a key
	is.Equal(r.Header.Get("Content-Type"), "image/jpeg") // the thumbnail
	is.True(len(r.Body) > 0)
	_, code := api.Get(t, id)
	is.Equal(code, http.StatusUnauthorized) // while the job itself needs the key
}

// awaitHeld waits until the held attempt has arrived.
func awaitHeld[T any](t *testing.T, held <-chan T, what string) {
	t.Helper()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not arrive within 20s", what)
	}
}
