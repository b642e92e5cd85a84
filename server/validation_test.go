package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/jobs"
)

// The API validation tests (moved here from cmd/thumbnailed, issue 11 item
// 5): what a client sends wrong is refused with a problem that says what to
// fix, and nothing is stored.

func TestBadRequestsSayWhatToFix(t *testing.T) {
	is := is.New(t)
	api := newTestAPI(t, Config{MaxUploadBytes: 100000})

	// Every bad field at once.
	r := api.Post(t, "application/json", []byte(`{"url": "ftp://example.com/a.jpg", "width": 0, "height": 99999, "fit": "squash", "quality": 101, "email": "not-an-address", "callback_url": "http://169.254.169.254/latest"}`), nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	p := r.Problem(t)
	is.Equal(r.Header.Get("Content-Type"), "application/problem+json")
	is.Equal(p.Code, "validation_failed")
	for _, e := range p.Errors {
		is.True(e.Message != "")
	}
	for _, f := range []string{"url", "width", "height", "fit", "quality", "email", "callback_url"} {
		is.True(p.Field(f) != "") // every bad field is listed
	}

	r = api.Post(t, "application/json", []byte(`{"url": "https://example.com/a.jpg", "width": "wide"}`), nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	is.Equal(r.Problem(t).Errors[0].Field, "width")

	r = api.Post(t, "application/json", []byte(`{"url": "https://example.com/a.jpg", "outputs": [{"width": 64}, {"width": "wide"}]}`), nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	is.Equal(r.Problem(t).Errors[0].Field, "outputs[1].width") // the output is named by its index

	// A bad top-level field is named once, not again in every output that takes it.
	r = api.Post(t, "application/json", []byte(`{"url": "https://example.com/a.jpg", "focal": {"x": 2, "y": 0.5}, "outputs": [{"width": 64}, {"width": 32}]}`), nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	p = r.Problem(t)
	is.Equal(len(p.Errors), 1)
	is.Equal(p.Errors[0].Field, "focal.x")

	r = api.Post(t, "application/json", []byte(`{"url": "https://example.com/a.jpg", "outputs": [{"width": 64, "colour": "red"}]}`), nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	is.Equal(r.Problem(t).Errors[0].Field, "outputs[0].colour")

	r = api.Post(t, "application/json", []byte(`{"url": `), nil)
	is.Equal(r.Status, http.StatusBadRequest)
	is.Equal(r.Problem(t).Code, "malformed_body")

	r = api.Post(t, "application/json", []byte(`{"url": "https://example.com/a.jpg"}`), nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity) // no size at all
	is.True(r.Problem(t).Field("width") != "")

	r = api.Upload(t, bytes.Repeat([]byte{0xff}, 200_000), map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusRequestEntityTooLarge)
	is.Equal(r.Problem(t).Code, "upload_too_large")

	r = api.Post(t, "text/plain", []byte("hello"), nil)
	is.Equal(r.Status, http.StatusUnsupportedMediaType)
	is.Equal(r.Problem(t).Code, "unsupported_media_type")

	r = api.Post(t, "application/json", bytes.Repeat([]byte(" "), 70<<10), nil)
	is.Equal(r.Status, http.StatusRequestEntityTooLarge)
	is.Equal(r.Problem(t).Code, "body_too_large")

	r = api.Do(t, http.MethodGet, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa", nil, nil)
	is.Equal(r.Status, http.StatusNotFound)
	is.Equal(r.Problem(t).Code, "not_found")

	r = api.Submit(t, map[string]any{"url": "https://example.com/a.jpg", "width": 64}, header("Idempotency-Key", "has space"))
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	is.True(r.Problem(t).Field("Idempotency-Key") != "")

	noJobs(t, api) // nothing of it was stored or queued
}

func TestOutputsGravityAndFocalAreValidatedByPath(t *testing.T) {
	is := is.New(t)
	api := newTestAPI(t, Config{MaxOutputPixels: 1_000_000})
	url := "https://images.example.com/cat.jpg"
	for _, c := range []struct {
		name  string
		req   map[string]any
		field string
	}{
		{"a bad output name", map[string]any{"url": url, "width": 64, "outputs": []any{map[string]any{"name": "ok"}, map[string]any{"name": "Bad Name"}}}, "outputs[1].name"},
		{"a name used twice", map[string]any{"url": url, "width": 64, "outputs": []any{map[string]any{"name": "a"}, map[string]any{"name": "a"}}}, "outputs[1].name"},
		{"an output without a size", map[string]any{"url": url, "outputs": []any{map[string]any{"name": "a", "width": 10}, map[string]any{"name": "b"}}}, "outputs[1].width"},
		{"an output's own bad field", map[string]any{"url": url, "width": 64, "outputs": []any{map[string]any{"quality": 0}}}, "outputs[0].quality"},
		{"nine outputs", map[string]any{"url": url, "width": 8, "outputs": []any{map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}}}, "outputs"},
		{"an empty list", map[string]any{"url": url, "width": 64, "outputs": []any{}}, "outputs"},
		{"too many pixels together", map[string]any{"url": url, "outputs": []any{map[string]any{"width": 800}, map[string]any{"width": 700}}}, "outputs"},
		{"gravity focal without a point", map[string]any{"url": url, "width": 64, "height": 64, "fit": "cover", "gravity": "focal"}, "focal"},
		{"a point with another gravity", map[string]any{"url": url, "width": 64, "fit": "cover", "gravity": "attention", "focal": map[string]any{"x": 0.5, "y": 0.5}}, "focal"},
		{"a point outside the image", map[string]any{"url": url, "width": 64, "focal": map[string]any{"x": 1.5, "y": 0.5}}, "focal.x"},
		{"an unknown gravity", map[string]any{"url": url, "width": 64, "gravity": "north"}, "gravity"},
		{"an output's point outside", map[string]any{"url": url, "width": 64, "outputs": []any{map[string]any{"focal": map[string]any{"x": 0.5, "y": -0.1}}}}, "outputs[0].focal.y"},
	} {
		t.Run(c.name, func(t *testing.T) {
			onlyField(t, api.Submit(t, c.req, nil), c.field)
		})
	}

	// And a request that uses them all is taken, with the defaults filled in.
	r := api.Submit(t, map[string]any{"url": url, "width": 300, "fit": "cover", "focal": map[string]any{"x": 0.3, "y": 0.6},
		"outputs": []any{map[string]any{"name": "small", "width": 100, "format": "png"}, map[string]any{"height": 200, "gravity": "entropy"}}}, nil)
	is.Equal(r.Status, http.StatusAccepted)
	job := r.Job(t)
	is.Equal(job.Request.Gravity, "focal") // a point without a gravity means focal
	is.Equal(len(job.Request.Outputs), 2)
	small, second := job.Request.Outputs[0], job.Request.Outputs[1]
	is.Equal(small.Name, "small")
	is.Equal(small.Width, 100)
	is.Equal(small.Format, "png")
	is.Equal(small.Fit, "cover")     // from the top level
	is.Equal(small.Gravity, "focal") // from the top level
	is.Equal(*small.Focal, *job.Request.Focal)
	is.Equal(small.Quality, 80) // the default
	is.Equal(second.Name, "o2") // named by its place
	is.Equal(second.Height, 200)
	is.Equal(second.Width, 0) // its own size wins whole: the height alone
	is.Equal(second.Gravity, "entropy")
	is.True(second.Focal == nil)

	// Multipart takes outputs and focal as JSON values.
	r = api.Upload(t, tinyJPEG(t), map[string]string{"width": "64", "focal": `{"x": 0.2, "y": 0.8}`,
		"outputs": `[{"name": "a"}, {"name": "b", "width": 32}]`}, nil)
	is.Equal(r.Status, http.StatusAccepted)
	job = r.Job(t)
	is.Equal(len(job.Request.Outputs), 2)
	is.Equal(job.Request.Outputs[1].Width, 32)
	is.Equal(job.Request.Focal.X, 0.2)
	r = api.Upload(t, tinyJPEG(t), map[string]string{"width": "64", "outputs": `[{"name": "a", "colour": "red"}]`}, nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	is.True(strings.HasPrefix(r.Problem(t).Errors[0].Field, "outputs"))
}

func TestEmailAddressesAreAcceptedByOneRule(t *testing.T) {
	// Issue 13, items 2 and 3: an address is a plain ASCII local@domain on
	// a DNS name with a dot (mailaddr); anything a mail system could read
	// as another address, or that points inside, is 422 naming email. The
	// email limit counts the exact address sent to (mailaddr's own tests).
	api := newTestAPI(t, Config{})
	for _, addr := range []string{
		"me@localhost", // accepted before mailaddr: a single label
		"a@localhost",
		"a@internal-host",
		"=?utf-8?q?victim?=@example.com",
		"=?utf-8?b?dmljdGlt?=@example.com",
		"=?iso-8859-1?q?victim?=@example.com",
		"a@[127.0.0.1]",
		"a@10.0.0.1",
		"a@169.254.169.254",
		"a\u200b@example.com",
		"a\u2028b@example.com",
		"a\u202e@example.com",
		"jos\u00e9@example.com",
		"Mary <mary@example.com>",
		"mary@example.com, victim@example.com",
		"not-an-address",
		strings.Repeat("a", 250) + "@example.com",
	} {
		t.Run(addr, func(t *testing.T) {
			onlyField(t, api.Submit(t, map[string]any{"url": "https://images.example.com/cat.jpg", "width": 64, "email": addr}, nil), "email")
		})
	}
	t.Run("invalid UTF-8 in a form", func(t *testing.T) {
		onlyField(t, api.Upload(t, tinyJPEG(t), map[string]string{"width": "64", "email": "a\xff@example.com"}, nil), "email")
	})
	noJobs(t, api)

	// The control: plain addresses are taken, and shown masked.
	is := is.New(t)
	for _, addr := range []string{"mary@example.com", "a.b+tag@sub.example.co.uk"} {
		r := api.Submit(t, map[string]any{"url": "https://images.example.com/cat.jpg", "width": 64, "email": addr}, nil)
		is.Equal(r.Status, http.StatusAccepted)
		job := r.Job(t)
		is.Equal(len(job.Deliveries), 1)
		is.Equal(job.Deliveries[0].Channel, "email")
		is.True(!strings.Contains(job.Deliveries[0].Target, addr)) // masked
		is.True(strings.HasSuffix(job.Deliveries[0].Target, addr[strings.IndexByte(addr, '@'):]))
	}
}

func TestUploadsAreRefusedAtSubmitWhenTheBytesAlreadyTell(t *testing.T) {
	// From cmd/thumbnailed's TestHostileInputFailsAndTheServiceKeepsServing,
	// its submit half: the type is sniffed from the bytes, never the name,
	// and a header that gives the size is read before anything is stored.
	is := is.New(t)
	api := newTestAPI(t, Config{})

	r := api.Upload(t, readTestdata(t, "hostile/misc/corkami-html-document.jpg"), map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusUnsupportedMediaType)
	is.Equal(r.Problem(t).Code, "unsupported_format")

	r = api.Upload(t, readTestdata(t, "hostile/bomb/fuzzdb-lottapixel.jpg"), map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	p := r.Problem(t)
	is.Equal(p.Code, "too_many_pixels")
	is.True(strings.Contains(p.Detail, "64250x64250"))

	r = api.Upload(t, []byte{}, map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusUnsupportedMediaType) // an empty file is no image
	noJobs(t, api)

	// The control: the same request with an image is taken.
	r = api.Upload(t, tinyJPEG(t), map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusAccepted)
	is.Equal(r.Job(t).Request.Source, "upload")
}

// keyedUpload makes a test API and submits to it a first upload under the
// Idempotency-Key key, which must be accepted. It returns the API, the job,
// and a submit of the same image under the same key with fields (width 40
// when nil).
func keyedUpload(t *testing.T, key string) (*testAPI, testapi.Job, func(fields map[string]string) testapi.Response) {
	t.Helper()
	api := newTestAPI(t, Config{})
	h := header("Idempotency-Key", key)
	img := tinyJPEG(t)
	submit := func(fields map[string]string) testapi.Response {
		if fields == nil {
			fields = map[string]string{"width": "40"}
		}
		return api.Upload(t, img, fields, h)
	}
	first := submit(nil)
	if first.Status != http.StatusAccepted {
		t.Fatalf("the first submit under %s: %d, want 202: %s", key, first.Status, first.Body)
	}
	return api, first.Job(t), submit
}

func TestIdempotencyKey(t *testing.T) {
	// Moved from cmd/thumbnailed.
	is := is.New(t)
	api, a, submit := keyedUpload(t, "order-42")

	again := submit(nil)
	is.Equal(again.Status, http.StatusOK) // the same request: the first job
	is.Equal(again.Job(t).ID, a.ID)
	is.Equal(again.Header.Get("Location"), "/v1/thumbnails/"+a.ID)

	other := submit(map[string]string{"width": "41"})
	is.Equal(other.Status, http.StatusUnprocessableEntity) // the same key, another request
	is.Equal(other.Problem(t).Code, "idempotency_key_reused")

	// Another client's key of the same name is its own.
	r := api.From("127.0.0.9").Upload(t, tinyJPEG(t), map[string]string{"width": "40"}, header("Idempotency-Key", "order-42"))
	is.Equal(r.Status, http.StatusAccepted)
	is.True(r.Job(t).ID != a.ID)

	is.Equal(len(api.queued(t)), 2) // one run queued per job, none for the repeats
}

func TestARepeatedSubmitDeletesItsOwnStoredUpload(t *testing.T) {
	// An upload is stored as it arrives, before the store says whether its
	// Idempotency-Key already names a job. When it does, the repeat's bytes
	// are deleted at once; only the first job's upload stays. So is an
	// upload whose request turns out invalid after it was stored.
	is := is.New(t)
	api, first, submit := keyedUpload(t, "order-43")
	id := first.ID
	stored, err := api.blobs.Get(context.Background(), id, jobs.UploadBlob)
	is.NoErr(err)
	is.Equal(stored, tinyJPEG(t)) // the first upload is kept, whole

	for range 3 {
		r := submit(nil)
		is.Equal(r.Status, http.StatusOK)
		is.Equal(r.Job(t).ID, id)
	}
	r := api.Upload(t, tinyJPEG(t), map[string]string{"width": "40", "fit": "squash"}, nil) // stored, then found invalid
	is.Equal(r.Status, http.StatusUnprocessableEntity)

	only := []string{api.ns + ":blob:" + id}
	is.True(testapi.Eventually(5*time.Second, func() bool { return slices.Equal(api.redisKeys(t, "blob:*"), only) })) // the first job's upload alone
	_, err = api.blobs.Get(context.Background(), id, jobs.UploadBlob)
	is.NoErr(err) // still there, not deleted
	is.Equal(len(api.redisKeys(t, "record:*")), 1)
}

func TestConcurrentSubmitsWithOneKeyMakeOneJob(t *testing.T) {
	// Issue 13, item 10: concurrent submits with one Idempotency-Key made
	// one job, but some clients got a 500. Now each pair gets 202 and 200
	// (in either order) naming one job, and nothing fails.
	is := is.New(t)
	api := newTestAPI(t, Config{})
	const pairs = 40
	type answer struct {
		key    string
		status int
		id     string
	}
	answers := make(chan answer, 2*pairs)
	var wg sync.WaitGroup
	for i := range pairs {
		key := fmt.Sprintf("pair-%d", i)
		for range 2 {
			wg.Go(func() {
				r, err := api.Try(context.Background(), http.MethodPost, "/v1/thumbnails",
					strings.NewReader(`{"url": "https://images.example.com/cat.jpg", "width": 64}`),
					header("Content-Type", "application/json", "Idempotency-Key", key))
				if err != nil {
					answers <- answer{key, 0, err.Error()}
					return
				}
				a := answer{key: key, status: r.Status, id: string(r.Body)}
				var job testapi.Job
				if r.Status < 300 && json.Unmarshal(r.Body, &job) == nil {
					a.id = job.ID // (no t.Fatal off the test's goroutine)
				}
				answers <- a
			})
		}
	}
	wg.Wait()
	close(answers)
	jobOf := map[string]string{}
	statuses := map[int]int{}
	for a := range answers {
		statuses[a.status]++
		if a.status != http.StatusAccepted && a.status != http.StatusOK {
			t.Errorf("key %s: %d %s", a.key, a.status, a.id)
			continue
		}
		if first, ok := jobOf[a.key]; ok && first != a.id {
			t.Errorf("key %s named two jobs: %s and %s", a.key, first, a.id)
		}
		jobOf[a.key] = a.id
	}
	t.Logf("answers: %v", statuses)
	is.Equal(statuses[http.StatusAccepted], pairs) // one job per key
	is.Equal(statuses[http.StatusOK], pairs)       // and its repeat
	is.Equal(len(api.redisKeys(t, "record:*")), pairs)
	is.Equal(len(api.queued(t)), pairs)
}
