package worker_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/worker"
)

// world is a real worker pool on a real Redis, with the real notifier and
// outbound client, started for one test.
type world struct {
	store *jobs.Store
	queue *jobs.Queue
	logs  *testlog.Buffer
	stop  func()
}

func start(t *testing.T, cfg worker.Config) *world {
	t.Helper()
	r := testredis.New(t)
	store := jobs.NewStore(r.Pool, r.Namespace, time.Hour)
	queue := jobs.NewQueue(store)
	logs := &testlog.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	client := safehttp.New(safehttp.Options{AllowPrivate: true, Timeout: 5 * time.Second})
	n, err := notifier.New(log, notifier.Config{OutboxDir: t.TempDir(), AllowPrivateNetworks: true}, store, queue, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = 10 * time.Second
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = 30 * time.Second
	}
	cfg.MaxPixels = 50_000_000
	cfg.WakeOnEnqueue = true
	w := worker.New(log, cfg, store, queue, client, n, thumbnail.Default, nil)
	w.Start()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = w.Stop(ctx)
		})
	}
	t.Cleanup(stop)
	return &world{store: store, queue: queue, logs: logs, stop: stop}
}

func (w *world) submit(t *testing.T, id string, req jobs.Request, upload []byte) {
	t.Helper()
	job := &jobs.Job{ID: id, Status: jobs.StatusQueued, CreatedAt: time.Now().UTC(), Request: req}
	if err := w.store.Create(context.Background(), job, upload); err != nil {
		t.Fatal(err)
	}
	if err := w.queue.EnqueueThumbnail(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func (w *world) waitEnded(t *testing.T, id string, within time.Duration) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		job, err := w.store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if job.Status.Ended() {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s", id, job.Status, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func photo(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../thumbnail/testdata/photos/go-video-001.jpeg")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func urlRequest(url string) jobs.Request {
	return jobs.Request{Source: jobs.SourceURL, URL: url, Width: 32, Fit: "contain", Format: "jpeg", Quality: 80}
}

// fastRetries makes transient failures retry at once (gocraft/work counts whole seconds).
var fastRetries = retry.Schedule{time.Millisecond, time.Millisecond, time.Millisecond}

func TestTransientSourceFailuresAreRetried(t *testing.T) {
	is := is.New(t)
	img := photo(t)
	var calls atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(img)
	}))
	defer src.Close()
	w := start(t, worker.Config{RetrySchedule: fastRetries})
	w.submit(t, "flaky", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "flaky", 30*time.Second)
	is.Equal(job.Status, jobs.StatusSucceeded)
	is.Equal(job.Attempts, 3) // two 503s, then the image
	is.Equal(job.Crashes, 0)
	is.Equal(calls.Load(), int32(3))
}

func TestTransientFailuresEndInSourceUnreachable(t *testing.T) {
	is := is.New(t)
	var calls atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer src.Close()
	w := start(t, worker.Config{RetrySchedule: fastRetries})
	w.submit(t, "down", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "down", 30*time.Second)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, "source_unreachable")
	is.Equal(calls.Load(), int32(4)) // the first run and three retries
}

func TestPermanentFailuresAreNotRetried(t *testing.T) {
	is := is.New(t)
	var calls atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.NotFound(w, r)
	}))
	defer src.Close()
	w := start(t, worker.Config{RetrySchedule: fastRetries})
	w.submit(t, "missing", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "missing", 10*time.Second)
	is.Equal(job.Error.Code, "source_not_found")
	is.Equal(job.Attempts, 1)
	time.Sleep(100 * time.Millisecond)
	is.Equal(calls.Load(), int32(1))
}

func TestLogsDoNotCarryASourceURLsQuery(t *testing.T) {
	is := is.New(t)
	// A closed port: the connection error's text names the URL.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	w := start(t, worker.Config{RetrySchedule: fastRetries})
	w.submit(t, "signed", urlRequest(closed.URL+"/cat.jpg?X-Amz-Signature=s3cr3t"), nil)
	w.waitEnded(t, "signed", 10*time.Second)
	w.stop()
	is.True(strings.Contains(w.logs.String(), "/cat.jpg")) // the failure is logged with its path
	is.True(!strings.Contains(w.logs.String(), "s3cr3t"))  // but not the URL's query
}

func TestAJobThatKeepsCrashingItsWorkerFails(t *testing.T) {
	is := is.New(t)
	w := start(t, worker.Config{StaleAfter: 50 * time.Millisecond})
	req := jobs.Request{Source: jobs.SourceUpload, Width: 32, Fit: "contain", Format: "jpeg", Quality: 80}
	job := &jobs.Job{ID: "poison", Status: jobs.StatusQueued, CreatedAt: time.Now().UTC(), Request: req}
	is.NoErr(w.store.Create(context.Background(), job, photo(t)))
	// Three runs began and never finished: their processes died.
	for i := 0; i < 3; i++ {
		_, _, err := w.store.Begin(context.Background(), "poison", 3, 0)
		is.NoErr(err)
	}
	time.Sleep(100 * time.Millisecond) // the last run's heartbeat goes stale
	is.NoErr(w.queue.EnqueueThumbnail(context.Background(), "poison"))
	job = w.waitEnded(t, "poison", 10*time.Second)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, jobs.CodeWorkerCrashed)
}

func TestTheSweeperRerunsAJobWhoseWorkerDied(t *testing.T) {
	is := is.New(t)
	w := start(t, worker.Config{StaleAfter: 300 * time.Millisecond})
	req := jobs.Request{Source: jobs.SourceUpload, Width: 32, Fit: "contain", Format: "jpeg", Quality: 80}
	job := &jobs.Job{ID: "orphan", Status: jobs.StatusQueued, CreatedAt: time.Now().UTC(), Request: req}
	is.NoErr(w.store.Create(context.Background(), job, photo(t)))
	// A run began on a worker that then died: the job is processing, its
	// heartbeat stops, and no queue entry is left that this pool would see.
	_, _, err := w.store.Begin(context.Background(), "orphan", 3, 0)
	is.NoErr(err)
	began := time.Now()
	job = w.waitEnded(t, "orphan", 10*time.Second)
	t.Logf("re-run and finished %s after the run died", time.Since(began).Round(time.Millisecond))
	is.Equal(job.Status, jobs.StatusSucceeded)
	is.Equal(job.Crashes, 1) // the re-run knew the run before it died
	is.Equal(job.Attempts, 2)
}

// Issue 10: gocraft/work moved a job to the in-progress list of a live pool,
// and Redis died before the pool heard of it (the move stood, the reply was
// lost). The record says queued and no queue holds the job; the library's
// reaper never looks at a live pool. The sweeper puts it back within about
// twice STALE_AFTER.
func TestTheSweeperRequeuesAJobStrandedInProgress(t *testing.T) {
	is := is.New(t)
	const staleAfter = 300 * time.Millisecond
	w := start(t, worker.Config{StaleAfter: staleAfter})
	req := jobs.Request{Source: jobs.SourceUpload, Width: 32, Fit: "contain", Format: "jpeg", Quality: 80}
	job := &jobs.Job{ID: "stranded", Status: jobs.StatusQueued, CreatedAt: time.Now().UTC(), Request: req}
	is.NoErr(w.store.Create(context.Background(), job, photo(t)))

	conn := w.store.Pool().Get()
	defer conn.Close()
	ns := w.store.Namespace()
	pools, err := redis.Strings(conn.Do("SMEMBERS", ns+":worker_pools"))
	is.NoErr(err)
	is.True(len(pools) > 0) // the worker's pools are up
	entry := `{"name":"thumbnail","id":"0123456789abcdef01234567","t":1700000000,"args":{"job_id":"stranded"}}`
	_, err = conn.Do("LPUSH", ns+":jobs:thumbnail:"+pools[0]+":inprogress", entry)
	is.NoErr(err)
	stranded := time.Now()

	job = w.waitEnded(t, "stranded", 10*time.Second)
	t.Logf("re-queued and finished %s after it was stranded", time.Since(stranded).Round(time.Millisecond))
	is.Equal(job.Status, jobs.StatusSucceeded)
	n, err := redis.Int(conn.Do("LLEN", ns+":jobs:thumbnail:"+pools[0]+":inprogress"))
	is.NoErr(err)
	is.Equal(n, 0) // the stranded entry left the in-progress list
	is.True(strings.Contains(w.logs.String(), "re-queued queue entries stranded in progress"))
}

func TestAJobThatOverrunsItsDeadlineTimesOut(t *testing.T) {
	is := is.New(t)
	release := make(chan struct{})
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = w.Write([]byte{0xff, 0xd8})
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer src.Close()
	defer close(release)
	w := start(t, worker.Config{JobTimeout: 300 * time.Millisecond})
	w.submit(t, "slow", urlRequest(src.URL), nil)
	job := w.waitEnded(t, "slow", 10*time.Second)
	is.Equal(job.Status, jobs.StatusFailed)
	is.Equal(job.Error.Code, "timeout")
}
