package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/jobs"
)

// Promises under faults and abuse (DESIGN.md): storage trouble is a 503
// within 2 s, limits fail closed, memory and metric series are bounded by
// settings, not by clients.

// promptly is the contract's bound on an answer when storage is in trouble
// (with timeSlack under the race detector).
func promptly() time.Duration { return 2*time.Second + timeSlack }

// timeSlack is added to wall-time bounds (race_test.go sets it under -race).
var timeSlack time.Duration

func TestRedisDownAnswers503Promptly(t *testing.T) {
	for name, addr := range map[string]string{
		"nothing listening":         testnet.FreeAddr(t),
		"accepts and never answers": testnet.StalledAddr(t),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool := redisPoolAt(t, addr)
			api := newAPIWith(t, apiOptions{pool: pool})
			id := "aaaaaaaaaaaaaaaaaaaaaaaaaa"
			get := func(path string) (testapi.Response, error) {
				return api.Try(context.Background(), http.MethodGet, path, nil, nil)
			}
			body, ct := testapi.Multipart(tinyJPEG(t), map[string]string{"width": "64"})
			jsonBody := `{"url": "https://images.example.com/cat.jpg", "width": 64}`
			asJSON := header("Content-Type", "application/json")
			// Sent at once, with Try: no t.Fatal off the test's goroutine.
			requests := map[string]func() (testapi.Response, error){
				"submit JSON": func() (testapi.Response, error) {
					return api.Try(context.Background(), http.MethodPost, "/v1/thumbnails", strings.NewReader(jsonBody), asJSON)
				},
				"submit upload": func() (testapi.Response, error) {
					return api.Try(context.Background(), http.MethodPost, "/v1/thumbnails", bytes.NewReader(body), header("Content-Type", ct))
				},
				"submit with a key": func() (testapi.Response, error) {
					return api.Try(context.Background(), http.MethodPost, "/v1/thumbnails", strings.NewReader(jsonBody),
						header("Content-Type", "application/json", "Idempotency-Key", "k1"))
				},
				"get":    func() (testapi.Response, error) { return get("/v1/thumbnails/" + id) },
				"list":   func() (testapi.Response, error) { return get("/v1/thumbnails") },
				"image":  func() (testapi.Response, error) { return get("/v1/thumbnails/" + id + "/image") },
				"readyz": func() (testapi.Response, error) { return get("/readyz") },
				"delete": func() (testapi.Response, error) {
					return api.Try(context.Background(), http.MethodDelete, "/v1/thumbnails/"+id, nil, nil)
				},
				"redeliver": func() (testapi.Response, error) {
					return api.Try(context.Background(), http.MethodPost, "/v1/thumbnails/"+id+"/deliveries/callback/redeliver", nil, nil)
				},
			}
			type answer struct {
				r    testapi.Response
				err  error
				took time.Duration
			}
			answers := map[string]answer{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for what, send := range requests {
				wg.Go(func() {
					start := time.Now()
					r, err := send()
					mu.Lock()
					answers[what] = answer{r, err, time.Since(start)}
					mu.Unlock()
				})
			}
			wg.Wait()
			for what, a := range answers {
				t.Run(what, func(t *testing.T) {
					is := is.New(t)
					is.NoErr(a.err) // an answer came
					t.Logf("%d in %s", a.r.Status, a.took.Round(time.Millisecond))
					is.Equal(a.r.Status, http.StatusServiceUnavailable)
					is.Equal(a.r.Problem(t).Code, "storage_unavailable")
					is.True(a.r.Header.Get("Retry-After") != "")
					is.True(a.took < promptly()) // never a hang
				})
			}
		})
	}
}

func TestRateLimiterFailsClosed(t *testing.T) {
	// The store answers; the limiter's Redis does not: a request that would
	// pass gets 503, never a free pass.
	for name, addr := range map[string]string{"nothing listening": testnet.FreeAddr(t), "accepts and never answers": testnet.StalledAddr(t)} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			api := newAPIWith(t, apiOptions{rate: 1000, burst: 1000, limiterPool: redisPoolAt(t, addr)})
			for _, send := range []func() testapi.Response{
				func() testapi.Response {
					return api.Submit(t, map[string]any{"url": "https://images.example.com/cat.jpg", "width": 64}, nil)
				},
				func() testapi.Response { return api.Do(t, http.MethodGet, "/v1/thumbnails", nil, nil) },
			} {
				start := time.Now()
				r := send()
				is.Equal(r.Status, http.StatusServiceUnavailable) // not a pass
				is.Equal(r.Problem(t).Code, "storage_unavailable")
				is.True(r.Header.Get("Retry-After") != "")
				is.True(time.Since(start) < promptly())
			}
			is.Equal(len(api.redisKeys(t, "record:*")), 0) // nothing got through
			// The control: operations endpoints have no limit and answer.
			is.Equal(api.Do(t, http.MethodGet, "/healthz", nil, nil).Status, http.StatusOK)
		})
	}
}

func TestStalledBlobStoreAnswers503Promptly(t *testing.T) {
	// Redis answers; the object store accepts connections and never answers.
	// An upload answers 503 within 2 s of its last byte, and so does an
	// image whose bytes are there.
	is := is.New(t)
	silent := testnet.StalledAddr(t)
	creds := func(k string) string {
		return map[string]string{blob.EnvAccessKey: "stalled-test", blob.EnvSecretKey: "stalled-test-secret"}[k]
	}
	stalled, err := blob.Open("s3://thumbs?endpoint=http://"+silent+"&region=us-east-1&path_style=true", creds, nil, "ns")
	is.NoErr(err)
	api := newAPIWith(t, apiOptions{blobs: stalled})

	start := time.Now()
	r := api.Upload(t, tinyJPEG(t), map[string]string{"width": "64"}, nil)
	t.Logf("upload: %d in %s", r.Status, time.Since(start).Round(time.Millisecond))
	is.Equal(r.Status, http.StatusServiceUnavailable)
	is.Equal(r.Problem(t).Code, "storage_unavailable")
	is.True(r.Header.Get("Retry-After") != "")
	is.True(time.Since(start) < promptly())
	is.Equal(len(api.redisKeys(t, "record:*")), 0) // no job was made of it

	job := submitURL(t, api.Client, nil)
	_, _, err = api.store.Begin(context.Background(), job.ID, 3)
	is.NoErr(err)
	_, _, err = api.store.Succeed(context.Background(), job.ID, resultOf(64, 48))
	is.NoErr(err)
	for _, path := range []string{"/v1/thumbnails/" + job.ID + "/image", "/readyz"} {
		start = time.Now()
		r = api.Do(t, http.MethodGet, path, nil, nil)
		t.Logf("%s: %d in %s", path, r.Status, time.Since(start).Round(time.Millisecond))
		is.Equal(r.Status, http.StatusServiceUnavailable)
		is.Equal(r.Problem(t).Code, "storage_unavailable")
		is.True(time.Since(start) < promptly())
	}
}

func TestInflightUploadsAreBounded(t *testing.T) {
	// THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES: uploads past the budget get 503
	// uploads_busy with Retry-After; the budget is whole again afterwards.
	is := is.New(t)
	const slots = 3
	api := newTestAPI(t, Config{MaxInflightUploadBytes: slots * headerWindow})
	img := tinyJPEG(t)
	body, ct := testapi.Multipart(img, map[string]string{"width": "64"})
	at := bytes.Index(body, img) + 8<<10 // past the image part's header and the client's write buffer

	release := make(chan struct{})
	answers := make(chan testapi.Response, slots)
	errs := make(chan error, slots)
	for range slots {
		go func() {
			r, err := api.Try(context.Background(), http.MethodPost, "/v1/thumbnails", pausedBody(body[:at], body[at:], release), header("Content-Type", ct))
			if err != nil {
				errs <- err
				return
			}
			answers <- r
		}()
	}
	// The three hold their share while their bytes are on the way.
	if !testapi.Eventually(10*time.Second, func() bool { return api.uploads.held.Load() == slots*headerWindow }) {
		close(release)
		t.Fatalf("the uploads hold %d bytes, want %d", api.uploads.held.Load(), slots*headerWindow)
	}
	r := api.Upload(t, img, map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusServiceUnavailable)
	is.Equal(r.Problem(t).Code, "uploads_busy")
	is.True(r.Header.Get("Retry-After") != "")
	is.Equal(api.uploads.held.Load(), int64(slots*headerWindow)) // the refused one took nothing

	close(release)
	for range slots {
		select {
		case r := <-answers:
			is.Equal(r.Status, http.StatusAccepted) // the held uploads finish
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("a held upload did not finish")
		}
	}
	is.True(testapi.Eventually(5*time.Second, func() bool { return api.uploads.held.Load() == 0 })) // all handed back
	r = api.Upload(t, img, map[string]string{"width": "64"}, nil)
	is.Equal(r.Status, http.StatusAccepted) // and there is room again
	is.Equal(api.uploads.held.Load(), int64(0))
}

func TestInventedAndHugeMethodsLeaveMetricsTheSameSize(t *testing.T) {
	// Issue 13, item 1: a request counter labelled by the method a client
	// sent grew /metrics by a series per invented method (20k requests:
	// 21.6 KB -> 28.6 MB), before auth. Every label now comes from a fixed
	// set: after the first request of a kind, more of them add no series.
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{"metrics-key-0123456789"}, metrics: true, rate: 1e6, burst: 1_000_000})
	paths := []string{"/healthz", "/v1/thumbnails", "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa", "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa/image", "/no/such/path"}
	send := func(method, path string) int {
		t.Helper()
		return api.Do(t, method, path, nil, nil).Status
	}
	huge := strings.Repeat("M", 100<<10)
	// One of each kind first: its series is the one the rest count in.
	for _, p := range paths {
		send("M00000000", p)
		send("GET", p)
	}
	send(huge, "/healthz")
	scrape := func() (series []string, size int) {
		r := api.Do(t, http.MethodGet, "/metrics", nil, nil)
		is.Equal(r.Status, http.StatusOK)
		sc := bufio.NewScanner(bytes.NewReader(r.Body))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			series = append(series, line[:strings.LastIndexByte(line, ' ')])
		}
		sort.Strings(series)
		return series, len(r.Body)
	}
	scrape() // the scrape counts itself once
	before, sizeBefore := scrape()

	statuses := map[int]int{}
	for i := range 2000 {
		statuses[send(fmt.Sprintf("M%08d", i+1), paths[i%len(paths)])]++
	}
	statuses[send(huge, "/v1/thumbnails")]++
	after, sizeAfter := scrape()
	t.Logf("answers %v; /metrics %d bytes before, %d after; %d series", statuses, sizeBefore, sizeAfter, len(after))

	is.Equal(statuses[http.StatusMethodNotAllowed]+statuses[http.StatusNotFound], 2001) // refused before auth
	is.Equal(after, before)                                                             // not one series more
	is.True(sizeAfter-sizeBefore < 2<<10)                                               // only counters' digits grew
	for _, s := range after {
		is.True(!strings.Contains(s, "M0000")) // no client-chosen label value
	}
}

// resultOf is the result of one default output of w x h.
func resultOf(w, h int) jobs.Result {
	return jobs.Result{Outputs: []jobs.OutputResult{{Name: "default", Width: w, Height: h, Format: "jpeg", ContentType: "image/jpeg", Bytes: 100, ETag: "e"}}}
}
