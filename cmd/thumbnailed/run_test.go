package main

import (
	"bytes"
	"context"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/internal/testrun"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// The end-to-end tests: the real program, started through run(), takes
// uploads and URLs, makes thumbnails in its workers and pushes them. The
// API's validation has its tests beside the server (server/).

// service is the real program started through run() on a free port, with a
// test client of its API (no key).
type service struct {
	*testapi.Client
	Logs *testlog.Buffer
}

// jobTimeout bounds how long a test waits for one job to end.
const jobTimeout = 60 * time.Second

// testEnv is env on top of test defaults: the real Redis when
// THUMBNAILED_TEST_REDIS_URL is set (else the embedded one in role all),
// private networks allowed (httptest servers live on loopback), an outbox
// in a temp dir.
func testEnv(t *testing.T, env map[string]string) map[string]string {
	t.Helper()
	full := map[string]string{
		"THUMBNAILED_ADDR":                   testnet.FreeAddr(t),
		"THUMBNAILED_ALLOW_PRIVATE_NETWORKS": "true",
		"THUMBNAILED_OUTBOX_DIR":             t.TempDir(),
		"THUMBNAILED_WEBUI_ADDR":             testnet.FreeAddr(t),
		"THUMBNAILED_SHUTDOWN_TIMEOUT":       "10s",
		"THUMBNAILED_LOG_LEVEL":              "debug",
		// Tests poll fast; the rate limit has tests of its own.
		"THUMBNAILED_RATE_LIMIT": "10000",
		"THUMBNAILED_RATE_BURST": "10000",
	}
	if testredis.Real() {
		r := testredis.New(t)
		full["THUMBNAILED_REDIS_URL"] = r.URL
		full["THUMBNAILED_NAMESPACE"] = r.Namespace
	}
	for k, v := range env {
		full[k] = v
	}
	return full
}

// environ is env as "NAME=value" pairs, the form run takes.
func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// startService runs role with env on top of the test defaults (testEnv). It
// stops the program when the test ends and checks it exited cleanly.
func startService(t *testing.T, role string, env map[string]string) *service {
	t.Helper()
	full := testEnv(t, env)
	logs := &testlog.Buffer{}
	t.Cleanup(func() { // after the service has stopped: its logs are whole
		if t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})
	done := testrun.Background(t, "the service", 20*time.Second, func(ctx context.Context) error {
		return run(ctx, []string{"thumbnailed", role}, environ(full), logs, logs)
	})
	svc := &service{Client: testapi.New("http://" + full["THUMBNAILED_ADDR"]), Logs: logs}
	exited, healthy := false, false
	var ended error
	testapi.Eventually(10*time.Second, func() bool {
		select {
		case ended = <-done:
			exited = true
			return true
		default:
		}
		r, err := svc.Try(context.Background(), http.MethodGet, "/healthz", nil, nil)
		healthy = err == nil && r.Status == http.StatusOK
		return healthy
	})
	if exited {
		done <- ended // for the cleanup
		t.Fatalf("run ended at start: %v\n%s", ended, logs.String())
	}
	if !healthy {
		t.Fatalf("service not healthy within 10s:\n%s", logs.String())
	}
	return svc
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// accepted checks a 202 and returns its job.
func accepted(t *testing.T, r testapi.Response) testapi.Job {
	t.Helper()
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit: %d, want 202: %s", r.Status, r.Body)
	}
	return r.Job(t)
}

// submitURL submits a job of the image at url, width px wide.
func (s *service) submitURL(t *testing.T, url string, width int) testapi.Job {
	t.Helper()
	return accepted(t, s.Submit(t, map[string]any{"url": url, "width": width}, nil))
}

// urlJob submits a job of the image at url, width px wide, and waits for it
// to end.
func (s *service) urlJob(t *testing.T, url string, width int) testapi.Job {
	t.Helper()
	return s.WaitEnded(t, s.submitURL(t, url, width).ID, jobTimeout)
}

// image opens link (a signed link the service gave) as a person would and
// decodes the image.
func (s *service) image(t *testing.T, link string) (image.Image, string, testapi.Response) {
	t.Helper()
	r := s.Open(t, http.MethodGet, link)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", link, r.Status, r.Body)
	}
	img, format, err := image.Decode(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("decode thumbnail: %v", err)
	}
	return img, format, r
}

// meanDiff is the mean absolute difference of two same-sized images, 0..255.
func meanDiff(a, b image.Image) float64 {
	r := a.Bounds()
	var sum, n float64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ar, ag, ab, _ := a.At(x, y).RGBA()
			br, bg, bb, _ := b.At(x-r.Min.X+b.Bounds().Min.X, y-r.Min.Y+b.Bounds().Min.Y).RGBA()
			sum += absDiff(ar, br) + absDiff(ag, bg) + absDiff(ab, bb)
			n += 3
		}
	}
	return sum / n / 257
}

func absDiff(a, b uint32) float64 {
	if a > b {
		return float64(a - b)
	}
	return float64(b - a)
}

func TestUploadAndURLEndToEnd(t *testing.T) {
	is := is.New(t)
	svc := startService(t, "all", nil)

	// An upload stored on its side (EXIF orientation 6) comes out upright.
	r := svc.Upload(t, readFile(t, "jmatsu-portrait-3-4_6.jpg"), map[string]string{"width": "90"}, nil)
	job := accepted(t, r)
	is.Equal(r.Header.Get("Location"), "/v1/thumbnails/"+job.ID)
	is.Equal(job.Status, "queued")
	is.Equal(job.Request.Source, "upload")

	job = svc.WaitEnded(t, job.ID, jobTimeout)
	is.Equal(job.Status, "succeeded")
	is.Equal(job.Result.Width, 90)
	is.Equal(job.Result.Height, 120) // portrait 3:4 once rotated
	is.Equal(job.Result.ContentType, "image/jpeg")
	// The image's URL is a signed link to the first output (issue 12).
	is.True(regexp.MustCompile(`^/v1/thumbnails/` + job.ID + `/outputs/default\?expires=\d+&signature=[A-Za-z0-9_-]+$`).MatchString(job.Result.ImageURL))
	is.Equal(job.Result.Outputs[0].URL, job.Result.ImageURL)

	rotated, format, imgResp := svc.image(t, job.Result.ImageURL)
	is.Equal(format, "jpeg")
	is.Equal(imgResp.Header.Get("Content-Type"), "image/jpeg")
	is.True(imgResp.Header.Get("ETag") != "")
	is.Equal(rotated.Bounds().Dx(), 90)
	is.Equal(rotated.Bounds().Dy(), 120)
	byPath := svc.Do(t, http.MethodGet, "/v1/thumbnails/"+job.ID+"/image", nil, nil)
	is.Equal(byPath.Status, http.StatusOK)
	is.Equal(byPath.Body, imgResp.Body) // the same image by the job's path

	// The same picture stored upright (orientation 1) is the reference.
	ref := svc.WaitEnded(t, accepted(t, svc.Upload(t, readFile(t, "jmatsu-portrait-3-4_1.jpg"), map[string]string{"width": "90"}, nil)).ID, jobTimeout)
	upright, _, _ := svc.image(t, ref.Result.ImageURL)
	diff := meanDiff(rotated, upright)
	t.Logf("mean difference to the upright reference: %.1f", diff)
	is.True(diff < 12) // the rotated upload matches the upright reference

	// A URL source served by a real HTTP server.
	storm := readFile(t, "Storm.jpg")
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream") // the type is sniffed, never trusted
		_, _ = w.Write(storm)
	}))
	defer src.Close()
	job = svc.urlJob(t, src.URL+"/storm.jpg", 256)
	is.Equal(job.Status, "succeeded")
	is.Equal(job.Result.Width, 256)
	is.Equal(job.Result.Height, 171) // 1920x1280 keeps its aspect
	img, _, _ := svc.image(t, job.Result.ImageURL)
	is.Equal(img.Bounds().Dx(), 256)

	// cover answers exactly the box.
	job = svc.WaitEnded(t, accepted(t, svc.Submit(t, map[string]any{"url": src.URL + "/storm.jpg", "width": 100, "height": 100, "fit": "cover", "format": "png"}, nil)).ID, jobTimeout)
	is.Equal(job.Result.Width, 100)
	is.Equal(job.Result.Height, 100)
	is.Equal(job.Result.ContentType, "image/png")

	// Several outputs from one source in one job, each behind its own link.
	job = svc.WaitEnded(t, accepted(t, svc.Submit(t, map[string]any{"url": src.URL + "/storm.jpg", "width": 64,
		"outputs": []any{map[string]any{"name": "small"}, map[string]any{"name": "large", "width": 200, "format": "png"}, map[string]any{"name": "mid", "width": 128}}}, nil)).ID, jobTimeout)
	is.Equal(job.Status, "succeeded")
	is.Equal(len(job.Result.Outputs), 3)
	for i, want := range []struct {
		name, format string
		width        int
	}{{"small", "jpeg", 64}, {"large", "png", 200}, {"mid", "jpeg", 128}} {
		o := job.Result.Outputs[i]
		is.Equal(o.Name, want.name)
		is.Equal(o.Width, want.width)
		img, format, _ := svc.image(t, o.URL)
		is.Equal(format, want.format)
		is.Equal(img.Bounds().Dx(), want.width)
	}
	is.True(strings.Contains(job.Result.Srcset["jpeg"], " 64w, ")) // small and mid make a srcset
	is.True(job.Result.Placeholder != nil && strings.HasPrefix(job.Result.Placeholder.DominantColor, "#"))
}

func TestHostileInputFailsAndTheServiceKeepsServing(t *testing.T) {
	// Through the worker. (The uploads refused at submit have their test
	// beside the server: TestUploadsAreRefusedAtSubmitWhenTheBytesAlreadyTell.)
	is := is.New(t)
	svc := startService(t, "all", nil)

	files := map[string][]byte{
		"/bomb.jpg":      readFile(t, "fuzzdb-lottapixel.jpg"),
		"/truncated.jpg": readFile(t, "sharp-truncated.jpg"),
		"/page.jpg":      readFile(t, "corkami-html-document.jpg"),
	}
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	defer src.Close()

	for path, code := range map[string]string{
		"/bomb.jpg":      "too_many_pixels",
		"/truncated.jpg": "corrupt_image",
		"/page.jpg":      "unsupported_format",
		"/missing.jpg":   "source_not_found",
	} {
		job := svc.urlJob(t, src.URL+path, 64)
		is.Equal(job.Status, "failed")
		is.Equal(job.Error.Code, code)   // each failure names its reason
		is.True(job.Error.Message != "") // and says it in words

		r := svc.Do(t, http.MethodGet, "/v1/thumbnails/"+job.ID+"/image", nil, nil)
		is.Equal(r.Status, http.StatusConflict)
		is.Equal(r.Problem(t).Code, code)
	}

	// A truncated upload passes the header check and fails in the worker.
	job := svc.WaitEnded(t, accepted(t, svc.Upload(t, readFile(t, "sharp-truncated.jpg"), map[string]string{"width": "64"}, nil)).ID, jobTimeout)
	is.Equal(job.Error.Code, "corrupt_image")

	// And everyone else is still served.
	job = svc.WaitEnded(t, accepted(t, svc.Upload(t, readFile(t, "go-video-001.jpeg"), map[string]string{"width": "50"}, nil)).ID, jobTimeout)
	is.Equal(job.Status, "succeeded")
}

func TestRolesThatNeedRedisRefuseToStartWithoutIt(t *testing.T) {
	for _, role := range []string{"api", "worker", "webui"} {
		t.Run(role, func(t *testing.T) {
			is := is.New(t)
			var out bytes.Buffer
			err := run(context.Background(), []string{"thumbnailed", role}, nil, &out, &out)
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), "THUMBNAILED_REDIS_URL"))
		})
	}
}

func TestEveryBadSettingIsReportedBeforeStart(t *testing.T) {
	is := is.New(t)
	var out bytes.Buffer
	err := run(context.Background(), []string{"thumbnailed"}, []string{"THUMBNAILED_MAX_PIXELS=many", "THUMBNAILED_FETCH_TIMEOUT=soon"}, &out, &out)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "THUMBNAILED_MAX_PIXELS"))
	is.True(strings.Contains(err.Error(), "THUMBNAILED_FETCH_TIMEOUT"))
}

func TestSettingsThatSwitchProtectionsOffStopTheStart(t *testing.T) {
	// Issue 13, item 11: each of these started fine and disabled a
	// protection; now the start stops with a message naming the setting.
	for _, setting := range []string{
		"THUMBNAILED_RATE_LIMIT=NaN",
		"THUMBNAILED_RATE_LIMIT=1e-300",
		"THUMBNAILED_RATE_LIMIT=+Inf",
		"THUMBNAILED_RATE_LIMIT=-5",
		"THUMBNAILED_RESULT_TTL=1ns",
		"THUMBNAILED_STALE_AFTER=1ns",
		"THUMBNAILED_WORKER_CONCURRENCY=1024",
		"THUMBNAILED_TRUSTED_PROXIES=0.0.0.0/0",
		"THUMBNAILED_TRUSTED_PROXIES=::/0",
		"THUMBNAILED_TRUSTED_PROXIES=10.0.0.0/8,::/0",
	} {
		t.Run(setting, func(t *testing.T) {
			is := is.New(t)
			name, _, _ := strings.Cut(setting, "=")
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			env := testEnv(t, nil)
			err := run(ctx, []string{"thumbnailed", "all"}, append(environ(env), setting), &out, &out)
			if err == nil {
				t.Fatalf("%s: the service started (and stopped after 10 s)", setting)
			}
			t.Log(err)
			is.True(strings.Contains(err.Error(), name)) // the message names the setting
			is.True(!strings.Contains(out.String(), `"listening"`))
		})
	}
	// The control: the same settings within bounds start.
	is := is.New(t)
	svc := startService(t, "all", map[string]string{"THUMBNAILED_RATE_LIMIT": "0.5", "THUMBNAILED_RESULT_TTL": "1s",
		"THUMBNAILED_STALE_AFTER": "1s", "THUMBNAILED_WORKER_CONCURRENCY": "2", "THUMBNAILED_TRUSTED_PROXIES": "10.0.0.0/8,fd00::/8"})
	is.Equal(svc.Do(t, http.MethodGet, "/healthz", nil, nil).Status, http.StatusOK)
}

func TestTheProfilerHasALoopbackListenerOfItsOwn(t *testing.T) {
	is := is.New(t)
	debug := testnet.FreeAddr(t)
	svc := startService(t, "all", map[string]string{"THUMBNAILED_DEBUG_ADDR": debug})
	resp, err := http.Get("http://" + debug + "/debug/pprof/cmdline")
	is.NoErr(err)
	defer resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusOK) // the profiler answers on its own address
	// and nowhere on the public listener
	is.Equal(svc.Do(t, http.MethodGet, "/debug/pprof/cmdline", nil, nil).Status, http.StatusNotFound)

	// A public address is refused at start, with a message naming the setting.
	var out bytes.Buffer
	err = run(context.Background(), []string{"thumbnailed", "all"}, append(environ(testEnv(t, nil)), "THUMBNAILED_DEBUG_ADDR=0.0.0.0:6060"), &out, &out)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "THUMBNAILED_DEBUG_ADDR must be a loopback address"))
}

func TestUnknownVariablesAreNamedWithTheClosestKnownOne(t *testing.T) {
	is := is.New(t)
	svc := startService(t, "all", map[string]string{"THUMBNAILED_RATELIMIT": "5", "THUMBNAILED_WEBUI_PASWORD": "x"})
	logs := svc.Logs.String()
	is.True(strings.Contains(logs, "THUMBNAILED_RATELIMIT is not a setting of this service and is ignored; did you mean THUMBNAILED_RATE_LIMIT?"))
	is.True(strings.Contains(logs, "did you mean THUMBNAILED_WEBUI_PASSWORD?"))
	is.True(strings.Contains(logs, `"level":"WARN"`))
	is.True(!strings.Contains(logs, "THUMBNAILED_RATE_BURST is not a setting")) // known names are not warned about

	// When the start fails, the hint is in the error: a misspelt name is
	// often why a setting is missing.
	var out bytes.Buffer
	err := run(context.Background(), []string{"thumbnailed", "api"},
		[]string{"THUMBNAILED_REDIS_URL=redis://127.0.0.1:1", "THUMBNAILED_LINKSECRET=0123456789abcdef0123"}, &out, &out)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "THUMBNAILED_LINK_SECRET is required"))
	is.True(strings.Contains(err.Error(), "THUMBNAILED_LINKSECRET is not a setting of this service and is ignored; did you mean THUMBNAILED_LINK_SECRET?"))
}

func TestVersion(t *testing.T) {
	// Issue 15: `thumbnailed version` (and --version, -v) print the version,
	// commit, Go version and engine, e.g.
	// "thumbnailed v0.3.0 (commit 1a2b3c4) go1.26.8 engine=vips 8.14.1".
	engine := "pure-go"
	if thumbnail.Default.Name() == "vips" {
		engine = `vips 8\.\d+(\.\d+)?`
	}
	line := regexp.MustCompile(`^thumbnailed \S+ \(commit \S+\) go1\.\d+(\.\d+)?\S* engine=` + engine + "\n$")
	for _, arg := range []string{"version", "--version", "-v"} {
		t.Run(arg, func(t *testing.T) {
			is := is.New(t)
			var out, errOut bytes.Buffer
			// No environment at all: printing the version needs no settings.
			is.NoErr(run(context.Background(), []string{"thumbnailed", arg}, nil, &out, &errOut))
			if !line.MatchString(out.String()) {
				t.Fatalf("%s printed %q", arg, out.String())
			}
			is.Equal(errOut.Len(), 0)
		})
	}
	// The version and commit set at build time are the ones printed.
	is := is.New(t)
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v9.8.7", "1a2b3c4d5e6f"
	var out bytes.Buffer
	is.NoErr(run(context.Background(), []string{"thumbnailed", "version"}, nil, &out, &out))
	is.True(strings.HasPrefix(out.String(), "thumbnailed v9.8.7 (commit 1a2b3c4) go"))
}
