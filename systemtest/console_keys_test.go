package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// Log lines of a keys reload (cmd/thumbnailed).
const (
	msgKeysReloaded = "SIGHUP: API keys reloaded"
	msgKeysRefused  = "SIGHUP: the API keys were not reloaded; the keys in force stay"
)

// Issue 15: a key's own webhook secrets, and their rotation, through the
// real binary (api and worker reading one keys file). While the key has
// two secrets [new, old] every callback carries two signatures, and a
// receiver that knows only the old secret and one that knows only the new
// one both accept the same callback (the same bytes and headers). The
// global THUMBNAILED_WEBHOOK_SECRET signs none of them. Once the old
// secret is dropped from the file and the worker is sent SIGHUP, a
// callback carries one signature, which the old-only receiver refuses.
func TestWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	key := newKey("acme")
	oldSecret, newSecret := newSecret(), newSecret()
	file, env := keysFileEnv(t, []keyEntry{{Name: "acme", KeySHA256: digest(key), WebhookSecrets: []string{newSecret, oldSecret}}})
	// Receivers that answer 401 to what they cannot verify, as real ones do.
	onlyOld := testapi.NewReceiver(t, oldSecret)
	onlyOld.SetAnswer(testapi.Verified)
	onlyNew := testapi.NewReceiver(t, newSecret)
	onlyNew.SetAnswer(testapi.Verified)
	api := startProcess(t, "api", "api", env)
	w := startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	client := api.API().WithKey(key)
	image := readTestdata(t, "go-video-001.jpeg")
	deliver := func(rcv *testapi.Receiver) testapi.Callback {
		t.Helper()
		resp := client.Upload(t, image, map[string]string{"width": "16", "callback_url": rcv.URL + "/hook"}, nil)
		is.Equal(resp.Status, http.StatusAccepted)
		id := resp.Job(t).ID
		job := client.WaitDelivered(t, id, 20*time.Second)
		is.Equal(job.Deliveries[0].Status, "delivered") // the receiver verified it and answered 204
		is.Equal(job.Deliveries[0].Attempts, 1)
		cbs := rcv.For(id)
		is.Equal(len(cbs), 1)
		return cbs[0]
	}
	signatures := func(c testapi.Callback) []string { return strings.Fields(c.Header.Get(webhook.HeaderSignature)) }

	// During the rotation: two signatures, either receiver accepts.
	for _, c := range []struct {
		name     string
		to, also *testapi.Receiver
	}{{"to the old-secret receiver", onlyOld, onlyNew}, {"to the new-secret receiver", onlyNew, onlyOld}} {
		cb := deliver(c.to)
		is.True(cb.Signed)
		sigs := signatures(cb)
		is.Equal(len(sigs), 2) // one signature per secret, space-separated
		for _, s := range sigs {
			is.True(strings.HasPrefix(s, "v1,"))
		}
		is.Equal(c.also.Replay(t, cb), http.StatusNoContent)                             // the other receiver accepts the same callback
		is.True(webhook.Verify(webhookSecret, cb.Header, cb.Body, 5*time.Minute) != nil) // the global secret signs none of it
		t.Logf("%s: webhook-signature %d signatures; both receivers accept", c.name, len(sigs))
	}
	all := onlyOld.All()
	replayed := all[len(all)-1] // the callback replayed to the old-only receiver
	is.True(replayed.Signed)

	// The rotation ends: the old secret leaves the file, the processes are told.
	writeKeysFile(t, file, []keyEntry{{Name: "acme", KeySHA256: digest(key), WebhookSecrets: []string{newSecret}}})
	for _, p := range []*process{api, w} {
		p.Signal(syscall.SIGHUP)
		waitLog(t, p, 10*time.Second, "the reload", func() bool { return p.count(msgKeysReloaded) == 1 })
	}
	cb := deliver(onlyNew)
	is.True(cb.Signed)
	is.Equal(len(signatures(cb)), 1)
	is.Equal(onlyOld.Replay(t, cb), http.StatusUnauthorized) // the old secret no longer verifies

	// The job records the key's name, never the key.
	is.True(w.Said(cb.Event.Data.ID, "delivering"))
	named := false
	for _, l := range w.Lines() {
		if l.str("job_id") == cb.Event.Data.ID && l.str("msg") == "delivering" {
			named = l.str("key_name") == "acme"
		}
	}
	is.True(named) // the worker names the key in its log
	for _, p := range []*process{api, w} {
		is.True(!strings.Contains(p.Logs.String(), key)) // and never writes the key
	}
}

// Issue 15: a keys file reloaded on SIGHUP while requests flow. Key A
// submits and reads jobs at a steady rate from a goroutine; the keys file
// gains key B and the api gets SIGHUP: B works from then on, and not one
// request of A fails across the reload (no 5xx, no 401, no connection
// error). A broken file on SIGHUP is refused with a log line and the keys
// in force stay; a valid file without B then takes B away.
func TestKeysReloadOnSIGHUPWhileRequestsFlow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	keyA, keyB := newKey("a"), newKey("b")
	onlyA := []keyEntry{{Name: "alpha", Key: keyA}}
	file, env := keysFileEnv(t, onlyA)
	api := startProcess(t, "api", "api", env) // no worker: the jobs stay queued
	a, b := api.API().WithKey(keyA), api.API().WithKey(keyB)
	source := "http://127.0.0.1:9/never-fetched.jpg"

	// Key A's traffic: a submit and a GET of it every 20 ms.
	var done atomic.Int64
	var mu sync.Mutex
	var failures []string
	var idsA []string
	ctx, stop := context.WithCancel(context.Background())
	var flow sync.WaitGroup
	flow.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		fail := func(format string, args ...any) {
			mu.Lock()
			failures = append(failures, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			body := strings.NewReader(fmt.Sprintf(`{"url":%q,"width":16}`, source))
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := a.Try(rctx, http.MethodPost, "/v1/thumbnails", body, http.Header{"Content-Type": {"application/json"}})
			cancel()
			done.Add(1)
			if err != nil || resp.Status != http.StatusAccepted {
				fail("submit: %v %d %s", err, resp.Status, resp.Body)
				continue
			}
			id := jobID(resp)
			mu.Lock()
			idsA = append(idsA, id)
			mu.Unlock()
			rctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			resp, err = a.Try(rctx, http.MethodGet, "/v1/thumbnails/"+id, nil, nil)
			cancel()
			done.Add(1)
			if err != nil || resp.Status != http.StatusOK {
				fail("get %s: %v %d %s", id, err, resp.Status, resp.Body)
			}
		}
	})
	t.Cleanup(func() { stop(); flow.Wait() })
	flowing := func(more int64) {
		t.Helper()
		n := done.Load() + more
		is.True(testapi.Eventually(10*time.Second, func() bool { return done.Load() >= n })) // A's requests go on
	}
	flowing(20)

	_, resp := b.List(t, nil)
	is.Equal(resp.Status, http.StatusUnauthorized) // B is not a key yet

	// B is added: the file is replaced and the api told.
	writeKeysFile(t, file, []keyEntry{onlyA[0], {Name: "beta", KeySHA256: digest(keyB)}})
	api.Signal(syscall.SIGHUP)
	waitLog(t, api, 10*time.Second, "the reload", func() bool { return api.count(msgKeysReloaded) == 1 })
	_, resp = b.List(t, nil)
	is.Equal(resp.Status, http.StatusOK) // B works
	resp = b.Submit(t, map[string]any{"url": source, "width": 16}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	idB := resp.Job(t).ID
	_, code := b.Get(t, idB)
	is.Equal(code, http.StatusOK)
	mu.Lock()
	someA := idsA[0]
	mu.Unlock()
	_, code = b.Get(t, someA)
	is.Equal(code, http.StatusNotFound) // and sees only its own jobs
	_, code = a.Get(t, idB)
	is.Equal(code, http.StatusNotFound)
	flowing(20)

	// A broken file is refused; the keys in force stay.
	writeKeysFile(t, file, `[{"name": "alpha", "key": "`+keyA+`"`) // cut short
	api.Signal(syscall.SIGHUP)
	waitLog(t, api, 10*time.Second, "the refusal", func() bool { return api.count(msgKeysRefused) == 1 })
	is.Equal(api.count(msgKeysReloaded), 1)
	_, resp = b.List(t, nil)
	is.Equal(resp.Status, http.StatusOK) // B still works
	flowing(20)

	// A valid file without B: B goes.
	writeKeysFile(t, file, onlyA)
	api.Signal(syscall.SIGHUP)
	waitLog(t, api, 10*time.Second, "the second reload", func() bool { return api.count(msgKeysReloaded) == 2 })
	_, resp = b.List(t, nil)
	is.Equal(resp.Status, http.StatusUnauthorized)
	flowing(20)

	stop()
	flow.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("key A: %d requests across three SIGHUPs, %d failed", done.Load(), len(failures))
	for _, f := range failures {
		t.Errorf("a request of key A failed: %s", f)
	}
	is.True(!api.Exited())
	is.True(!strings.Contains(api.Logs.String(), keyA)) // no key in the log, even quoting the broken file
}

// A keys file that lists no key must not open the API. At start, with
// SMTP set, config refuses a service without keys ("an open service would
// relay mail for anyone"); a SIGHUP that reads a file emptied of its keys
// (an operator revoking every key at once) must not get round that: the
// reload is refused like any bad file, the keys in force stay, and a
// request without a key is still 401 -- in particular an email job.
// (DESIGN.md "HTTP API": with THUMBNAILED_API_KEYS_FILE set every /v1
// call needs a key; "API keys file": a bad file is refused on SIGHUP.)
func TestKeysFileEmptiedOnSIGHUPKeepsTheAPIClosed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	key := newKey("only")
	mail := testsmtp.New(t)
	file, env := keysFileEnv(t, []keyEntry{{Name: "only", Key: key}}, "THUMBNAILED_SMTP_URL", mail.URL())
	api := startProcess(t, "api", "api", env)
	anonymous := api.API()
	emailJob := map[string]any{"url": "http://127.0.0.1:9/x.jpg", "width": 16, "email": recipient}
	is.Equal(anonymous.Submit(t, emailJob, nil).Status, http.StatusUnauthorized) // closed

	writeKeysFile(t, file, `[]`) // every key revoked
	api.Signal(syscall.SIGHUP)
	waitLog(t, api, 10*time.Second, "the reload or its refusal", func() bool {
		return api.count(msgKeysReloaded)+api.count(msgKeysRefused) == 1
	})
	resp := anonymous.Submit(t, emailJob, nil)
	t.Logf("after SIGHUP with an empty keys file: reloaded %d, refused %d; a submit without a key: %d",
		api.count(msgKeysReloaded), api.count(msgKeysRefused), resp.Status)
	is.Equal(resp.Status, http.StatusUnauthorized) // still closed: no open mail relay
	is.Equal(api.count(msgKeysRefused), 1)         // the empty file was refused
	_, list := api.API().WithKey(key).List(t, nil)
	is.Equal(list.Status, http.StatusOK) // and the key in force still works
}
