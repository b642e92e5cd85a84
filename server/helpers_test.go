package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/labstack/echo/v4"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/keys"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/web"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testLinkSecret signs the test APIs' links.
const testLinkSecret = "test-link-secret-0123456789abcdef"

// apiOptions say how a test API is built; the zero value is an open API on
// the test's Redis, with the Redis blob store and no rate limit.
type apiOptions struct {
	cfg Config
	// keys are THUMBNAILED_API_KEYS; none: the service is open.
	keys []string
	// rate and burst limit each client through the Redis rate limiter; rate
	// 0: no limit.
	rate  float64
	burst int
	// pool, when set, is the Redis of the store (and of the Redis blob
	// store) instead of the test's Redis: a broken one, say.
	pool *redis.Pool
	// limiterPool, when set, is the Redis of the rate limiter alone.
	limiterPool *redis.Pool
	// blobs, when set, is the blob store instead of the Redis one.
	blobs blob.Store
	// events serves event streams (subscribed to the store's changes).
	events bool
	// metrics serves /metrics.
	metrics bool
	// page serves the try-it page at /.
	page bool
	// beside, when set, is another API process of the same service: this
	// one uses its Redis and namespace.
	beside *testAPI
	// wrapStore, when set, wraps the store the handlers use (the test's
	// own api.store stays the real one).
	wrapStore func(Store) Store
}

// testAPI is the real API (server.New's handler) on a real Redis (see
// testredis), served by an httptest server, with the pieces behind it at
// hand for a test to drive and inspect.
type testAPI struct {
	*testapi.Client // the open client (no key)
	handler         *echo.Echo
	uploads         *budget
	redis           *testredis.Redis
	store           *jobs.Store
	blobs           blob.Store
	links           view.Links
	ns              string
}

func newTestAPI(t *testing.T, cfg Config) *testAPI {
	t.Helper()
	return newAPIWith(t, apiOptions{cfg: cfg})
}

func newAPIWith(t *testing.T, o apiOptions) *testAPI {
	t.Helper()
	r := testredis.New(t)
	if o.beside != nil {
		r = o.beside.redis
	}
	cfg := o.cfg
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 1 << 20
	}
	if cfg.MaxDimension == 0 {
		cfg.MaxDimension = 4096
	}
	if cfg.MaxPixels == 0 {
		cfg.MaxPixels = 50_000_000
	}
	if cfg.MaxOutputPixels == 0 {
		cfg.MaxOutputPixels = 40_000_000
	}
	if cfg.MaxInflightUploadBytes == 0 {
		cfg.MaxInflightUploadBytes = 256 << 20
	}
	if cfg.ResultTTL == 0 {
		cfg.ResultTTL = time.Hour
	}
	pool := r.Pool
	if o.pool != nil {
		pool = o.pool
	}
	store := jobs.NewStore(pool, jobs.Options{Namespace: r.Namespace, TTL: cfg.ResultTTL, Lease: 30 * time.Second, Queue: testQueue{r.Namespace}})
	blobs := o.blobs
	if blobs == nil {
		var err error
		blobs, err = blob.Open("", nil, pool, r.Namespace)
		if err != nil {
			t.Fatal(err)
		}
	}
	ring, err := keys.Load(o.keys, "")
	if err != nil {
		t.Fatal(err)
	}
	links := view.Links{Secret: []byte(testLinkSecret)}
	d := Deps{Store: store, Blobs: blobs, Keys: ring, Links: links, Engine: thumbnail.Default}
	if o.wrapStore != nil {
		d.Store = o.wrapStore(store)
	}
	if o.rate > 0 {
		ls := store
		if o.limiterPool != nil {
			ls = jobs.NewStore(o.limiterPool, jobs.Options{Namespace: r.Namespace, TTL: time.Hour, Lease: time.Minute, Queue: testQueue{r.Namespace}})
		}
		d.Limiter = jobs.NewRateLimiter(ls, o.rate, o.burst)
	}
	if o.metrics {
		d.Metrics = metrics.New()
	}
	if o.page {
		d.Page = web.Handler()
	}
	if o.events {
		d.Events = NewEvents(quiet)
		subscribeEvents(t, r, store, d.Events)
	}
	e, uploads := newAPI(quiet, cfg, d)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &testAPI{Client: testapi.New(srv.URL), handler: e, uploads: uploads, redis: r, store: store, blobs: blobs, links: links, ns: r.Namespace}
}

// subscribeEvents runs the fan-out of job changes as the api role does, and
// waits until its subscription is in place, so no change is missed.
func subscribeEvents(t *testing.T, r *testredis.Redis, store *jobs.Store, events *Events) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		events.Run(ctx, func(ctx context.Context, fn func(string)) error {
			return store.Subscribe(ctx, func(ctx context.Context) (redis.Conn, error) {
				return redis.DialURLContext(ctx, r.URL)
			}, "events", fn)
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	if !testapi.Eventually(5*time.Second, func() bool {
		conn := r.Pool.Get()
		defer conn.Close()
		v, err := redis.Values(conn.Do("PUBSUB", "NUMSUB", r.Namespace+":events"))
		if err != nil || len(v) != 2 {
			return false
		}
		n, _ := redis.Int(v[1], nil)
		return n > 0
	}) {
		t.Fatal("the event subscription did not start within 5 s")
	}
}

// testQueue puts work on one list, {ns}:test-queue, as "kind id attempt":
// the server's tests need to see what was queued, not gocraft/work's format
// (the worker's tests own that).
type testQueue struct{ ns string }

func (q testQueue) Entry(w jobs.Work) jobs.Push {
	return jobs.Push{List: q.ns + ":test-queue", Payload: fmt.Sprintf("%s %s %d", w.Kind, w.JobID, w.Attempt)}
}

// queued is what was queued, oldest first.
func (a *testAPI) queued(t *testing.T) []string {
	t.Helper()
	conn := a.redis.Pool.Get()
	defer conn.Close()
	list, err := redis.Strings(conn.Do("LRANGE", a.ns+":test-queue", 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i] // LPUSH keeps the newest first
	}
	return list
}

// redisKeys lists the keys of the test's namespace that match pattern
// (after "{ns}:").
func (a *testAPI) redisKeys(t *testing.T, pattern string) []string {
	t.Helper()
	conn := a.redis.Pool.Get()
	defer conn.Close()
	list, err := redis.Strings(conn.Do("KEYS", a.ns+":"+pattern))
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// outputSpec is one output a test makes a job succeed with.
type outputSpec struct {
	name          string
	width, height int
}

// succeed runs job id as a worker would, without one: Begin takes it, its
// images go to the blob store, Succeed records them. It returns the bytes
// of each output by name (one output named default, 64x48, when outs is
// empty).
func (a *testAPI) succeed(t *testing.T, id string, outs ...outputSpec) map[string][]byte {
	t.Helper()
	_, res, err := a.store.Begin(context.Background(), id, 3)
	if err != nil || res != jobs.Run {
		t.Fatalf("begin %s: %v (%v)", id, res, err)
	}
	return a.finish(t, id, outs...)
}

// finish is the second half of succeed, for a job a test has begun.
func (a *testAPI) finish(t *testing.T, id string, outs ...outputSpec) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	if len(outs) == 0 {
		outs = []outputSpec{{jobs.DefaultOutput, 64, 48}}
	}
	images := map[string][]byte{}
	var result jobs.Result
	for _, o := range outs {
		b := jpegOf(t, o.width, o.height)
		sum := sha256.Sum256(b)
		out := jobs.OutputResult{Name: o.name, Width: o.width, Height: o.height, Format: "jpeg", ContentType: "image/jpeg",
			Bytes: len(b), ETag: hex.EncodeToString(sum[:8])}
		if _, err := a.blobs.Put(ctx, id, out.Blob(), bytes.NewReader(b), time.Now().Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		result.Outputs = append(result.Outputs, out)
		images[o.name] = b
	}
	if _, ended, err := a.store.Succeed(ctx, id, result); err != nil || !ended {
		t.Fatalf("succeed %s: %v (ended %v)", id, err, ended)
	}
	return images
}

// jpegOf is a JPEG of w x h pixels.
func jpegOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tinyJPEG(t *testing.T) []byte { return readTestdata(t, "photos/go-video-001.jpeg") }

// readTestdata reads a file of the thumbnail package's test images.
func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../thumbnail/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// submitURL submits a job from a URL source (never fetched: no worker runs
// in these tests) and returns it.
func submitURL(t *testing.T, c *testapi.Client, fields map[string]any) testapi.Job {
	t.Helper()
	req := map[string]any{"url": "https://images.example.com/cat.jpg", "width": 64}
	for k, v := range fields {
		req[k] = v
	}
	r := c.Submit(t, req, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.Status, r.Body)
	}
	return r.Job(t)
}

// redisPoolAt is a pool like the program's (cmd/thumbnailed/redis.go):
// dial and I/O timeouts, every call bounded by its context.
func redisPoolAt(t *testing.T, addr string) *redis.Pool {
	t.Helper()
	p := &redis.Pool{
		MaxIdle: 8,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialURLContext(ctx, "redis://"+addr,
				redis.DialConnectTimeout(2*time.Second), redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
		},
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pausedBody is a request body that sends head, waits until release is
// closed, then sends tail.
func pausedBody(head, tail []byte, release <-chan struct{}) io.Reader {
	return io.MultiReader(bytes.NewReader(head), &waitReader{release: release}, bytes.NewReader(tail))
}

type waitReader struct{ release <-chan struct{} }

func (w *waitReader) Read([]byte) (int, error) {
	<-w.release
	return 0, io.EOF
}

// header is an http.Header of name, value pairs.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// hasNoImage reports whether body carries none of image's bytes (a problem
// answer must not leak the picture).
func hasNoImage(body, image []byte) bool {
	return !bytes.Contains(body, image[:min(len(image), 64)]) && !strings.Contains(string(body), "\xff\xd8\xff")
}

// noJobs checks that the API stored and queued nothing: no record, no
// queue entry, and no upload left (one stored before its request was found
// invalid is deleted beside the answer).
func noJobs(t *testing.T, api *testAPI) {
	t.Helper()
	records, queued := api.redisKeys(t, "record:*"), api.queued(t)
	if len(records) != 0 || len(queued) != 0 {
		t.Fatalf("a refused request left %d job records and %d queued jobs", len(records), len(queued))
	}
	if !testapi.Eventually(5*time.Second, func() bool { return len(api.redisKeys(t, "blob:*")) == 0 }) {
		t.Fatalf("a refused request left stored uploads: %v", api.redisKeys(t, "blob:*"))
	}
}

// onlyField checks a 422 that names field, and field alone.
func onlyField(t *testing.T, r testapi.Response, field string) {
	t.Helper()
	is := is.NewRelaxed(t)
	is.Equal(r.Status, http.StatusUnprocessableEntity)
	is.Equal(r.Header.Get("Content-Type"), "application/problem+json")
	p := r.Problem(t)
	is.Equal(p.Code, "validation_failed")
	if len(p.Errors) != 1 || p.Errors[0].Field != field || p.Errors[0].Message == "" {
		t.Errorf("want one error naming %s, got %+v", field, p.Errors)
	}
	is.True(strings.HasPrefix(p.Detail, field+": ")) // the detail names the field too
}
