package systemtest

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/tests3"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/view"
)

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
	r := startRedis(t)
	ns := namespace()
	env := serviceEnv(t, r, ns)
	other := newKey("other")
	env["THUMBNAILED_API_KEYS"] = apiKey + "," + other
	env["THUMBNAILED_CALLBACK_RETRY_SCHEDULE"] = "2s,2s"
	env["THUMBNAILED_EMAIL_RETRY_SCHEDULE"] = "2s,2s"

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

func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
