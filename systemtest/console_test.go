package systemtest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/view"
)

// The client console's API (issue 15) through the real binary, each test on
// a service of its own: a job's event stream, across processes, at an api's
// shutdown and after a long silence; the list of a key's jobs; DELETE; and
// the redelivery of a push that failed for good.

// ---------------------------------------------------------------- events

// Issue 15: GET /v1/thumbnails/{id}/events through the real binary, the
// api and the worker in separate processes (the stream follows the job
// through Redis pub/sub). A client that opens the stream right after the
// submit sees queued -> processing -> succeeded and then the callback's
// delivery event with status delivered, in that order, with growing ids,
// and the stream ends. A second client hangs up while the job is queued
// and comes back with Last-Event-ID while it is processing: it gets the
// current status at once, then the rest. The 11th stream of one key is 429.
func TestEventsFollowAJobAcrossProcesses(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	rcv := testapi.NewReceiver(t, webhookSecret)
	src := newGateSource(t, readTestdata(t, "go-video-001.jpeg"))
	source, arrived, release := src.Gate(t)
	env, _, client := startKeyed(t, "api")

	resp := client.Submit(t, map[string]any{"url": source, "width": 16, "callback_url": rcv.URL + "/hook"}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	id := resp.Job(t).ID
	first, open := client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	is.Equal(open.Header.Get("Content-Type"), "text/event-stream")
	is.Equal(open.Header.Get("Cache-Control"), "no-store")
	var seen1 []testapi.SSE
	ev := first.Next(t, 5*time.Second)
	seen1 = append(seen1, ev)
	is.Equal(ev.Job(t).Status, "queued") // the current status on connect
	is.Equal(ev.Job(t).ID, id)

	second, open := client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	ev = second.Next(t, 5*time.Second)
	seen2 := []testapi.SSE{ev}
	is.Equal(ev.Job(t).Status, "queued")

	// The per-key limit: 10 streams, the 11th is 429.
	var extra []*testapi.Stream
	for range 8 {
		s, open := client.Events(t, id, nil)
		is.Equal(open.Status, http.StatusOK)
		extra = append(extra, s)
	}
	s, refused := client.Events(t, id, nil)
	is.True(s == nil)
	is.Equal(refused.Status, http.StatusTooManyRequests)
	is.Equal(refused.Problem(t).Code, "too_many_streams")
	is.True(refused.Header.Get("Retry-After") != "")
	for _, s := range extra {
		s.Close()
	}

	second.Close() // the second client hangs up while the job is queued
	lastID := ev.ID

	w := startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	awaitHeld(t, arrived, "the source request") // the job is processing, held in its fetch
	ev = first.Next(t, 10*time.Second)
	seen1 = append(seen1, ev)
	is.Equal(ev.Job(t).Status, "processing")

	// Back with Last-Event-ID: the current status at once. (The hung-up
	// streams are counted off once the api has seen them close.)
	var again *testapi.Stream
	var reconnected time.Time
	is.True(testapi.Eventually(5*time.Second, func() bool {
		var open testapi.Response
		reconnected = time.Now()
		again, open = client.Events(t, id, http.Header{"Last-Event-ID": {lastID}})
		return open.Status == http.StatusOK
	}))
	ev = again.Next(t, 2*time.Second)
	atOnce := time.Since(reconnected)
	seen2 = append(seen2, ev)
	is.Equal(ev.Job(t).Status, "processing") // the current status, not a replay
	last, _ := strconv.ParseInt(lastID, 10, 64)
	is.True(testapi.EventID(ev) > last) // and its id follows the last one the client saw

	release() // the source answers: the job succeeds and its callback goes
	seen1 = append(seen1, first.Rest(t, 20*time.Second)...)
	seen2 = append(seen2, again.Rest(t, 20*time.Second)...)
	t.Logf("first client: %s", testapi.Describe(seen1))
	t.Logf("second client: %s (current status %s after the reconnect)", testapi.Describe(seen2), atOnce.Round(time.Millisecond))

	for _, c := range []struct {
		name   string
		events []testapi.SSE
		want   []string
	}{
		{"first", seen1, []string{"queued", "processing", "succeeded"}},
		{"second", seen2, []string{"queued", "processing", "succeeded"}},
	} {
		increasing(t, 0, c.events)
		if got := statuses(c.events); !slices.Equal(got, c.want) {
			t.Errorf("%s client: statuses %v, want %v", c.name, got, c.want)
		}
		// The last event is the callback's delivery, delivered, after the
		// job succeeded; the stream then ended (Rest).
		end := c.events[len(c.events)-1]
		if end.Event != "delivery" {
			t.Fatalf("%s client: the last event is %s %s, not the delivery", c.name, end.Event, end.ID)
		}
		d := end.Delivery(t)
		is.Equal(d.Channel, "callback")
		is.Equal(d.Status, "delivered")
		is.Equal(d.Attempts, 1)
		is.Equal(len(d.Log), 1) // the delivery event carries its log
		is.Equal(d.Log[0].Outcome, "delivered")
		is.Equal(d.Log[0].StatusCode, http.StatusNoContent)
		succeededAt := -1
		for i, ev := range c.events {
			if ev.Event == "status" && testapi.Status(ev) == "succeeded" && succeededAt < 0 {
				succeededAt = i
			}
			if ev.Event == "delivery" && testapi.Status(ev) == "delivered" && (succeededAt < 0 || i < succeededAt) {
				t.Errorf("%s client: delivered before succeeded: %s", c.name, testapi.Describe(c.events))
			}
		}
	}
	is.Equal(len(rcv.For(id)), 1)
	is.True(w.Said(id, "job succeeded"))
	// After the end a new stream gets the final status and ends at once.
	s, open = client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	final := s.Rest(t, 5*time.Second)
	is.Equal(len(final), 1)
	is.Equal(final[0].Job(t).Status, "succeeded")
}

// An api process told to stop (SIGTERM) while event streams are open ends
// them and exits 0 promptly. A stream is a request that never finishes by
// itself (it lasts until its job is over, or 10 minutes), and a client
// reconnects with Last-Event-ID to any api: graceful shutdown must not
// wait THUMBNAILED_SHUTDOWN_TIMEOUT for it and then fail.
func TestAPIEndsEventStreamsOnSIGTERM(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	_, api, client := startKeyed(t, "api") // no worker: the job stays queued
	resp := client.Submit(t, map[string]any{"url": "http://127.0.0.1:9/x.jpg", "width": 16}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	s, open := client.Events(t, resp.Job(t).ID, nil)
	is.Equal(open.Status, http.StatusOK)
	is.Equal(s.Next(t, 5*time.Second).Job(t).Status, "queued")

	sigAt := api.Signal(syscall.SIGTERM)
	ended := s.Ends(t, 20*time.Second)
	endedAfter := time.Since(sigAt)
	exited := api.WaitExit(20 * time.Second)
	t.Logf("SIGTERM with one event stream open: stream ended %v after %s; api exited %v (code %d) %s after SIGTERM (THUMBNAILED_SHUTDOWN_TIMEOUT 15s)",
		ended, endedAfter.Round(time.Millisecond), exited, api.ExitCode(), api.exitedAt.Sub(sigAt).Round(time.Millisecond))
	is.True(ended)
	is.True(endedAfter < 5*time.Second) // the stream is ended, not left to the shutdown timeout
	is.True(exited)
	is.Equal(api.ExitCode(), 0)                      // a clean stop
	is.True(api.exitedAt.Sub(sigAt) < 5*time.Second) // promptly
}

// Debug log lines of the pub/sub subscriptions going down.
const (
	msgWakeLost   = "wake-up subscription lost; resubscribing"   // worker
	msgEventsLost = "event subscription lost; subscribing again" // api
)

// The pub/sub subscriptions (the workers' wake-ups, the api's job events)
// must outlive silence: on an idle service a job submitted after 15 s or
// more without any message is picked up at once (the wake-up) and its
// events reach an open stream at once.
//
// (Found by TestMeasureOpenStreams: the first job after a long idle took
// 1.2-2.4 s instead of ~10 ms. jobs.Store.Subscribe read with a 15 s
// timeout and meant to PING on it, but a redigo read that times out
// closes the connection: every 15 s of silence the subscription broke and
// was re-made a second later, and a wake-up or event published in between
// was lost. The job then waited for gocraft/work's poll.)
func TestSubscriptionsOutliveSilence(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env, api, client := startKeyed(t, "api", "THUMBNAILED_LOG_LEVEL", "debug")
	w := startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	image := readTestdata(t, "go-video-001.jpeg")
	fields := map[string]string{"width": "16"}

	resp := client.Upload(t, image, fields, nil) // the last message for a while
	is.Equal(resp.Status, http.StatusAccepted)
	client.WaitEnded(t, resp.Job(t).ID, 20*time.Second)
	quietFrom := time.Now()

	// Silence: past the 15 s after which the subscription used to break;
	// the submit goes the moment it does (into the gap before it is
	// re-made), or at 16.5 s when it does not.
	testapi.Eventually(16500*time.Millisecond, func() bool { return w.count(msgWakeLost) > 0 })
	silence := time.Since(quietFrom)
	submitted := time.Now()
	resp = client.Upload(t, image, fields, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	id := resp.Job(t).ID
	s, open := client.Events(t, id, nil)
	is.Equal(open.Status, http.StatusOK)
	var learned time.Duration
	for _, ev := range s.Rest(t, 20*time.Second) {
		if ev.Event == "status" && testapi.Status(ev) == "succeeded" {
			learned = time.Since(submitted)
		}
	}
	var started time.Time
	for _, l := range w.Lines() {
		if l.str("job_id") == id && l.str("msg") == "job started" {
			started, _ = time.Parse(time.RFC3339Nano, l.str("time"))
		}
	}
	pickup := started.Sub(submitted)
	t.Logf("after %s of silence (worker: %d wake-up subscription losses, api: %d event subscription losses): picked up %s after the submit, succeeded event %s after it",
		silence.Round(time.Millisecond), w.count(msgWakeLost), api.count(msgEventsLost), pickup.Round(time.Millisecond), learned.Round(time.Millisecond))
	is.True(!started.IsZero())
	is.True(pickup < 500*time.Millisecond)        // the wake-up reached the worker (its poll takes a second or more)
	is.True(learned > 0 && learned < time.Second) // the events reached the stream
	is.Equal(w.count(msgWakeLost), 0)             // the subscriptions did not break in the silence
	is.Equal(api.count(msgEventsLost), 0)
}

// ---------------------------------------------------------------- list

// Issue 15: GET /v1/thumbnails through the real binary, with two API keys:
// each key pages through its own jobs only, newest first, three pages
// each, with no next_cursor on the last page; the status filter pages too.
func TestListPagesEachKeysOwnJobs(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	keyA, keyB := newKey("list-a"), newKey("list-b")
	env := newEnv(t, "THUMBNAILED_API_KEYS", keyA+","+keyB)
	src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
	gone := httptest.NewServer(http.NotFoundHandler()) // a source that answers 404: the job fails
	t.Cleanup(gone.Close)
	svc := startProcess(t, "all", "all", env)
	a, b := svc.API().WithKey(keyA), svc.API().WithKey(keyB)

	// Interleaved: A's 7 jobs (odd ones fail) and B's 5 (the third fails).
	var idsA, idsB, failedA, failedB []string
	submit := func(c *testapi.Client, fail bool, n int) string {
		source := src.slow(0, n)
		if fail {
			source = gone.URL + "/missing.jpg"
		}
		resp := c.Submit(t, map[string]any{"url": source, "width": 16}, nil)
		if resp.Status != http.StatusAccepted {
			t.Fatalf("submit: %d %s", resp.Status, resp.Body)
		}
		// Two submits in one millisecond would have no order to check
		// (the index orders by creation time in ms): the next one starts
		// at least 2 ms after this one was answered.
		time.Sleep(2 * time.Millisecond)
		return resp.Job(t).ID
	}
	for i := range 7 {
		id := submit(a, i%2 == 1, i)
		idsA = append(idsA, id)
		if i%2 == 1 {
			failedA = append(failedA, id)
		}
		if i < 5 {
			id := submit(b, i == 2, 100+i)
			idsB = append(idsB, id)
			if i == 2 {
				failedB = append(failedB, id)
			}
		}
	}
	for _, c := range []struct {
		client *testapi.Client
		ids    []string
	}{{a, idsA}, {b, idsB}} {
		last, _, err := c.client.EndAll(c.ids, 30*time.Second)
		is.NoErr(err)
		for _, id := range c.ids {
			is.True(testapi.Ended(last[id])) // every job ended
		}
	}

	// A: 7 jobs, 3 a page: 3 pages, newest first, and no leak of B's.
	pages := a.ListAll(t, url.Values{"limit": {"3"}})
	is.Equal(sizes(pages), []int{3, 3, 1})
	is.True(pages[0].NextCursor != "" && pages[1].NextCursor != "") // a cursor on every page but the last
	is.Equal(pages[2].NextCursor, "")                               // (ListAll stops on the page without one)
	is.Equal(ids(pages), reversed(idsA))                            // all of A's, newest first, none of B's
	// B: 5 jobs, 2 a page: 3 pages.
	pages = b.ListAll(t, url.Values{"limit": {"2"}})
	is.Equal(sizes(pages), []int{2, 2, 1})
	is.Equal(ids(pages), reversed(idsB))

	// The items are the jobs as GET shows them.
	first, resp := a.List(t, url.Values{"limit": {"3"}})
	is.Equal(resp.Header.Get("Cache-Control"), "no-store")
	for _, item := range first.Items {
		job, code := a.Get(t, item.ID)
		is.Equal(code, http.StatusOK)
		is.Equal(item.Status, job.Status)
		is.Equal(item.Request.URL, job.Request.URL)
	}

	// The status filter: A's 3 failed ones over 2 pages, B's one failed.
	pages = a.ListAll(t, url.Values{"limit": {"2"}, "status": {"failed"}})
	is.Equal(sizes(pages), []int{2, 1})
	is.Equal(ids(pages), reversed(failedA))
	for _, p := range pages {
		for _, j := range p.Items {
			is.Equal(j.Status, "failed")
			is.Equal(j.Error.Code, "source_not_found")
		}
	}
	pages = a.ListAll(t, url.Values{"limit": {"3"}, "status": {"succeeded"}})
	is.Equal(sizes(pages), []int{3, 1})
	is.Equal(ids(pages), reversed(without(idsA, failedA)))
	pages = b.ListAll(t, url.Values{"status": {"failed"}})
	is.Equal(ids(pages), failedB)
	pages = a.ListAll(t, url.Values{"status": {"queued"}})
	is.Equal(sizes(pages), []int{0}) // none queued: one empty page, no cursor
	// Without limit: the default page (20) holds them all.
	page, _ := a.List(t, nil)
	is.Equal(len(page.Items), 7)
	is.Equal(page.NextCursor, "")

	// No leak across keys the other way either: B's GET of an A job is 404.
	_, code := b.Get(t, idsA[0])
	is.Equal(code, http.StatusNotFound)
	// A cursor that is not one the API gave is 422 naming the field.
	_, resp = a.List(t, url.Values{"cursor": {"not-a-cursor"}})
	is.Equal(resp.Status, http.StatusUnprocessableEntity)
	is.True(resp.Problem(t).Field("cursor") != "")
	t.Logf("A: %d jobs (%d failed), B: %d jobs (%d failed); pages checked", len(idsA), len(failedA), len(idsB), len(failedB))
}

func sizes(pages []testapi.Page) []int {
	var out []int
	for _, p := range pages {
		out = append(out, len(p.Items))
	}
	return out
}

func ids(pages []testapi.Page) []string {
	var out []string
	for _, p := range pages {
		for _, j := range p.Items {
			out = append(out, j.ID)
		}
	}
	return out
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func without(s, drop []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(drop, v) {
			out = append(out, v)
		}
	}
	return out
}

func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------- delete

// Issue 15: DELETE /v1/thumbnails/{id} through the real binary (api and
// worker processes), for a queued job (no worker yet), a processing one
// (its source held open) and a finished one (its callback and email
// failed once and are due again): 204; then 404 everywhere (the job, its
// image, its outputs, a signed link, its events), and an open event
// stream ends; its upload and images gone from the blob store; and no
// callback attempt and no email attempt after the 204 -- waited for until
// the worker says it dropped the work, not for a guessed time. With the
// Redis blob store and with S3 (a real versitygw).
func TestDeleteErasesEverywhere(t *testing.T) {
	needProcesses(t)
	t.Parallel()
	for _, storage := range []string{"redis", "s3"} {
		t.Run(storage, func(t *testing.T) {
			t.Parallel()
			eraseStory(t, storage)
		})
	}
}

// Worker log lines that say erased work was dropped.
const (
	msgDroppedBeforeRun      = "job expired or erased before it ran; dropping it"
	msgErasedWhileRan        = "job erased while it ran"
	msgErasedImagesDeleted   = "job erased while it ran; its images are deleted"
	msgDroppedBeforeDelivery = "job expired or erased before its delivery; nothing to deliver"
)

func eraseStory(t *testing.T, storage string) {
	is := is.New(t)
	other := newKey("other")
	r, ns, env := redisEnv(t, "THUMBNAILED_API_KEYS", apiKey+","+other,
		"THUMBNAILED_CALLBACK_RETRY_SCHEDULE", "2s,2s", "THUMBNAILED_EMAIL_RETRY_SCHEDULE", "2s,2s")

	// stored lists the blobs of job id in the store.
	var stored func(id string) []string
	switch storage {
	case "redis":
		stored = func(id string) []string { return sorted(blobs(t, r, ns)[id]) }
	case "s3":
		bucket := tests3.New(t)
		env["THUMBNAILED_STORAGE_URL"] = bucket.URL
		env["AWS_ACCESS_KEY_ID"] = bucket.Getenv("AWS_ACCESS_KEY_ID")
		env["AWS_SECRET_ACCESS_KEY"] = bucket.Getenv("AWS_SECRET_ACCESS_KEY")
		stored = func(id string) []string {
			var names []string
			for _, f := range bucket.Files(t, id) {
				names = append(names, strings.TrimPrefix(f, id+"/"))
			}
			return sorted(names)
		}
	}

	// Every push fails, so every attempt is seen: a callback is answered
	// 503, an email's recipient is refused with 451 (both retried).
	rcv := testapi.NewReceiver(t, webhookSecret)
	rcv.SetAnswer(func(w http.ResponseWriter, _ testapi.Callback) { w.WriteHeader(http.StatusServiceUnavailable) })
	mail := testsmtp.New(t)
	var mu sync.Mutex
	var emailAttempts []time.Time
	mail.SetReply(func(rcpt string) error {
		mu.Lock()
		emailAttempts = append(emailAttempts, time.Now())
		mu.Unlock()
		return testsmtp.TempFailure(rcpt)
	})
	emailsSince := func(at time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range emailAttempts {
			if !a.Before(at) {
				n++
			}
		}
		return n
	}
	callbacksSince := func(at time.Time) int {
		n := 0
		for _, c := range rcv.All() {
			if !c.Received.Before(at) {
				n++
			}
		}
		return n
	}
	env["THUMBNAILED_SMTP_URL"] = mail.URL()
	image := readTestdata(t, "go-video-001.jpeg")
	push := map[string]string{"width": "16", "callback_url": rcv.URL + "/hook", "email": recipient}
	links := view.Links{Secret: []byte(linkSecret)}

	api := startProcess(t, "api", "api", env)
	client := api.API().WithKey(apiKey)

	// ---- queued: no worker runs yet.
	resp := client.Upload(t, image, push, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	queued := resp.Job(t).ID
	is.Equal(stored(queued), []string{jobs.UploadBlob}) // the upload is stored
	link := links.Output(queued, "default", time.Now().Add(time.Hour))
	is.Equal(client.Open(t, http.MethodGet, link).Status, http.StatusConflict) // a valid link: not ready yet
	watching, _ := client.Events(t, queued, nil)
	is.True(watching != nil)
	is.Equal(watching.Next(t, 5*time.Second).Job(t).Status, "queued")
	resp = client.Delete(t, queued)
	erasedAt := time.Now()
	is.Equal(resp.Status, http.StatusNoContent)
	is.Equal(len(resp.Body), 0)
	is.Equal(len(watching.Rest(t, 5*time.Second)), 0) // an open event stream ends, saying nothing more
	erasedEverywhere(t, client, queued, link)
	is.Equal(stored(queued), []string(nil)) // the upload is gone

	w := startProcess(t, "worker", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	waitLog(t, w, 15*time.Second, "that it dropped the erased queued job", func() bool { return w.Said(queued, msgDroppedBeforeRun) })
	is.True(!w.Said(queued, "job started")) // it never ran

	// ---- processing: the worker holds the job in its fetch.
	src := newGateSource(t, image)
	source, arrived, release := src.Gate(t)
	resp = client.Submit(t, map[string]any{"url": source, "width": 16, "callback_url": push["callback_url"], "email": recipient}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	processing := resp.Job(t).ID
	awaitHeld(t, arrived, "the source request")
	job, code := client.Get(t, processing)
	is.Equal(code, http.StatusOK)
	is.Equal(job.Status, "processing")
	link = links.Output(processing, "default", time.Now().Add(time.Hour))
	resp = client.Delete(t, processing)
	is.Equal(resp.Status, http.StatusNoContent)
	erasedEverywhere(t, client, processing, link)
	release() // the run goes on: it makes and stores the images, then finds the job gone
	waitLog(t, w, 15*time.Second, "that the run found the job erased", func() bool {
		return w.Said(processing, msgErasedImagesDeleted) || w.Said(processing, msgErasedWhileRan)
	})
	is.True(testapi.Eventually(10*time.Second, func() bool { return len(stored(processing)) == 0 })) // the images it stored are deleted

	// ---- finished: succeeded; callback and email failed once, due in 2 s.
	resp = client.Upload(t, image, push, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	finished := resp.Job(t).ID
	job = client.WaitFor(t, finished, 20*time.Second, "succeeded with both pushes due again", func(j testapi.Job) bool {
		if j.Status != "succeeded" || len(j.Deliveries) != 2 {
			return false
		}
		for _, d := range j.Deliveries {
			if d.Status != "pending" || d.Attempts != 1 || d.NextAttemptAt == nil {
				return false
			}
		}
		return true
	})
	before := stored(finished)
	is.True(slices.Contains(before, jobs.EventBlob))                                         // the frozen callback body
	is.True(slices.ContainsFunc(before, func(n string) bool { return n != jobs.EventBlob })) // and the image
	link = job.Result.Outputs[0].URL
	is.Equal(client.Open(t, http.MethodGet, link).Status, http.StatusOK)               // the signed link opens
	is.Equal(api.API().WithKey(other).Delete(t, finished).Status, http.StatusNotFound) // another key's DELETE: 404
	_, code = client.Get(t, finished)
	is.Equal(code, http.StatusOK) // and the job is still there
	resp = client.Delete(t, finished)
	erasedAt = time.Now()
	is.Equal(resp.Status, http.StatusNoContent)
	erasedEverywhere(t, client, finished, link)
	is.Equal(stored(finished), []string(nil)) // images and callback body gone by the 204
	waitLog(t, w, 15*time.Second, "that it dropped both due pushes", func() bool {
		return w.saidOn(finished, "callback", msgDroppedBeforeDelivery) && w.saidOn(finished, "email", msgDroppedBeforeDelivery)
	})

	// No push after the 204s: the only callback and email attempts ever
	// made were the finished job's, before its erasure (its first ones:
	// the second were due 2 s after them).
	is.Equal(callbacksSince(erasedAt), 0)
	is.Equal(emailsSince(erasedAt), 0)
	is.Equal(len(rcv.For(queued))+len(rcv.For(processing)), 0)
	is.Equal(len(rcv.All()), len(rcv.For(finished)))
	is.True(len(rcv.For(finished)) >= 1 && emailsSince(time.Time{}) >= 1)
	for _, id := range []string{queued, processing} {
		is.True(!w.Said(id, "delivering")) // no delivery of the queued or processing job was even started
	}
	t.Logf("%s: erased queued %s, processing %s, finished %s; worker said: %q / %q / %q", storage,
		queued, processing, finished, msgs(w, queued), msgs(w, processing), msgs(w, finished))
}

// erasedEverywhere fails t unless job id answers 404 everywhere: the job,
// its image (GET and HEAD), its output by key, its signed link (GET and
// HEAD), its event stream, its redelivery, a second DELETE, and the list.
func erasedEverywhere(t *testing.T, client *testapi.Client, id, link string) {
	t.Helper()
	is := is.NewRelaxed(t)
	r := client.Do(t, http.MethodGet, "/v1/thumbnails/"+id, nil, nil)
	is.Equal(r.Status, http.StatusNotFound)
	if r.Status == http.StatusNotFound {
		is.Equal(r.Problem(t).Code, "not_found")
	}
	for _, probe := range []struct{ method, path string }{
		{http.MethodGet, "/v1/thumbnails/" + id + "/image"},
		{http.MethodHead, "/v1/thumbnails/" + id + "/image"},
		{http.MethodGet, "/v1/thumbnails/" + id + "/outputs/default"},
		{http.MethodGet, "/v1/thumbnails/" + id + "/events"},
		{http.MethodPost, "/v1/thumbnails/" + id + "/deliveries/callback/redeliver"},
		{http.MethodDelete, "/v1/thumbnails/" + id},
	} {
		if got := client.Do(t, probe.method, probe.path, nil, nil).Status; got != http.StatusNotFound {
			t.Errorf("%s %s after DELETE: %d, want 404", probe.method, probe.path, got)
		}
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if got := client.Open(t, method, link).Status; got != http.StatusNotFound {
			t.Errorf("%s of the signed link after DELETE: %d, want 404", method, got)
		}
	}
	for _, p := range client.ListAll(t, url.Values{"limit": {"100"}}) {
		for _, j := range p.Items {
			if j.ID == id {
				t.Errorf("job %s still listed after DELETE", id)
			}
		}
	}
}

// ---------------------------------------------------------------- redelivery

// Issue 15: redeliver after retries_exhausted, through the real binary. A
// receiver answers 500 until the callback fails for good (three attempts:
// THUMBNAILED_CALLBACK_RETRY_SCHEDULE=100ms,100ms); each redelivery while
// it is still down is a new series of three, and the attempts go on
// counting; once the receiver is fixed, a redelivery arrives with the same
// webhook-id, a valid signature and the same body bytes as every attempt
// before it, and the log holds the last 20 attempts, oldest first.
func TestRedeliverAfterRetriesExhausted(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	rcv := testapi.NewReceiver(t, webhookSecret)
	down := func(w http.ResponseWriter, _ testapi.Callback) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("receiver down for maintenance"))
	}
	rcv.SetAnswer(down)
	_, _, client := startKeyed(t, "all", "THUMBNAILED_CALLBACK_RETRY_SCHEDULE", "100ms,100ms")

	resp := client.Upload(t, readTestdata(t, "go-video-001.jpeg"), map[string]string{"width": "16", "callback_url": rcv.URL + "/hook"}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	id := resp.Job(t).ID
	failedAfter := func(attempts int) testapi.Delivery {
		t.Helper()
		job := client.WaitFor(t, id, 20*time.Second, "callback failed after the series", func(j testapi.Job) bool {
			return len(j.Deliveries) == 1 && j.Deliveries[0].Status == "failed" && j.Deliveries[0].Attempts == attempts
		})
		d := job.Deliveries[0]
		is.Equal(d.ErrorCode, "retries_exhausted")
		return d
	}
	d := failedAfter(3)
	is.Equal(len(rcv.For(id)), 3)

	// Not a channel of this job, or no channel at all: 404.
	is.Equal(client.Redeliver(t, id, "email").Status, http.StatusNotFound)
	is.Equal(client.Redeliver(t, id, "sms").Status, http.StatusNotFound)

	// Redelivered while still down: each a new series of three attempts.
	for series := 2; d.Attempts < 21; series++ {
		resp := client.Redeliver(t, id, "callback")
		is.Equal(resp.Status, http.StatusAccepted)
		after := resp.Job(t).Deliveries[0]
		is.Equal(after.Status, "pending")    // a new series has begun
		is.Equal(after.Attempts, d.Attempts) // the count is not reset
		is.Equal(after.ErrorCode, "")        // nor is it failed any more
		if series == 2 {                     // while the series runs (200 ms at least):
			again := client.Redeliver(t, id, "callback")
			is.Equal(again.Status, http.StatusConflict) // 409
			is.Equal(again.Problem(t).Code, "delivery_pending")
		}
		d = failedAfter(d.Attempts + 3)
	}
	is.Equal(d.Attempts, 21)

	// The receiver is fixed: redeliver once more.
	rcv.SetAnswer(nil) // 204
	resp = client.Redeliver(t, id, "callback")
	is.Equal(resp.Status, http.StatusAccepted)
	job := client.WaitDelivered(t, id, 20*time.Second)
	d = job.Deliveries[0]
	is.Equal(d.Status, "delivered")
	is.Equal(d.Attempts, 22)
	is.Equal(d.ErrorCode, "")
	is.Equal(len(d.Log), 20) // the last 20 attempts, oldest first: 3..22
	for i, e := range d.Log {
		attempt := 3 + i
		if e.Attempt != attempt {
			t.Fatalf("log entry %d is attempt %d, want %d: %+v", i, e.Attempt, attempt, d.Log)
		}
		switch {
		case attempt == 22:
			is.Equal(e.Outcome, "delivered")
			is.Equal(e.StatusCode, http.StatusNoContent)
		case attempt%3 == 0: // the last of a series
			is.Equal(e.Outcome, "failed")
			is.Equal(e.StatusCode, http.StatusInternalServerError)
			is.Equal(e.Response, "receiver down for maintenance")
		default:
			is.Equal(e.Outcome, "retry")
			is.Equal(e.StatusCode, http.StatusInternalServerError)
		}
		if i > 0 && e.At.Before(d.Log[i-1].At) {
			t.Errorf("log entry %d at %s is before entry %d at %s", i, e.At, i-1, d.Log[i-1].At)
		}
	}

	// Every attempt, the redelivered one too: same webhook-id, signed
	// (with its own timestamp), same bytes.
	cbs := rcv.For(id)
	is.Equal(len(cbs), 22)
	sameEvent(t, id, cbs)
	is.True(cbs[21].Header.Get("webhook-timestamp") != "")
	t.Logf("22 attempts in 8 series; first callback at %s, the redelivered one at %s",
		cbs[0].Received.Format(time.TimeOnly), cbs[21].Received.Format(time.TimeOnly))
}
