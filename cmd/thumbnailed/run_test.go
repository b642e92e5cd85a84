package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testlog"
	"github.com/thumbnailed/thumbnailed/internal/testnet"
	"github.com/thumbnailed/thumbnailed/internal/testredis"
)

// service is the real program started through run() on a free port.
type service struct {
	URL  string
	Logs *testlog.Buffer
}

// startService runs role with env on top of test defaults: the real Redis
// when THUMBNAILED_TEST_REDIS_URL is set (else the embedded one in role all),
// private networks allowed (httptest servers live on loopback), an outbox in
// a temp dir. It stops the program when the test ends and checks it exited cleanly.
func startService(t *testing.T, role string, env map[string]string) *service {
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
	logs := &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"thumbnailed", role}, func(k string) string { return full[k] }, logs, logs)
	}()
	svc := &service{URL: "http://" + full["THUMBNAILED_ADDR"], Logs: logs}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("the service did not stop within 20s")
		}
		if t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("run ended at start: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(svc.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return svc
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not healthy within 10s:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type jobJSON struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Request struct {
		Source string `json:"source"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
		Fit    string `json:"fit"`
	} `json:"request"`
	Result *struct {
		Width       int    `json:"width"`
		Height      int    `json:"height"`
		Format      string `json:"format"`
		ContentType string `json:"content_type"`
		Bytes       int    `json:"bytes"`
		ImageURL    string `json:"image_url"`
	} `json:"result"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Deliveries []struct {
		Channel  string `json:"channel"`
		Target   string `json:"target"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
	} `json:"deliveries"`
}

type problemJSON struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upload posts a multipart request with the image and the form fields.
func upload(t *testing.T, svc *service, header http.Header, image []byte, fields map[string]string) *http.Response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if image != nil {
		fw, _ := mw.CreateFormFile("image", "cat.jpg")
		_, _ = fw.Write(image)
	}
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, svc.URL+"/v1/thumbnails", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func postJSON(t *testing.T, svc *service, header http.Header, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, svc.URL+"/v1/thumbnails", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	defer resp.Body.Close()
	var v T
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, b, err)
	}
	return v
}

// waitEnded polls the job until it succeeds or fails.
func waitEnded(t *testing.T, svc *service, header http.Header, id string) jobJSON {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, svc.URL+"/v1/thumbnails/"+id, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET job %s: %d", id, resp.StatusCode)
		}
		job := decode[jobJSON](t, resp)
		if job.Status == "succeeded" || job.Status == "failed" {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after 60s", id, job.Status)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func getImage(t *testing.T, svc *service, id string) (image.Image, string, *http.Response) {
	t.Helper()
	resp, err := http.Get(svc.URL + "/v1/thumbnails/" + id + "/image")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET image: %d %s", resp.StatusCode, b)
	}
	img, format, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode thumbnail: %v", err)
	}
	return img, format, resp
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
	resp := upload(t, svc, nil, readFile(t, "jmatsu-portrait-3-4_6.jpg"), map[string]string{"width": "90"})
	is.Equal(resp.StatusCode, http.StatusAccepted)
	loc := resp.Header.Get("Location")
	accepted := decode[jobJSON](t, resp)
	is.Equal(loc, "/v1/thumbnails/"+accepted.ID)
	is.Equal(accepted.Status, "queued")
	is.Equal(accepted.Request.Source, "upload")

	job := waitEnded(t, svc, nil, accepted.ID)
	is.Equal(job.Status, "succeeded")
	is.Equal(job.Result.Width, 90)
	is.Equal(job.Result.Height, 120) // portrait 3:4 once rotated
	is.Equal(job.Result.ContentType, "image/jpeg")
	is.Equal(job.Result.ImageURL, "/v1/thumbnails/"+job.ID+"/image")

	rotated, format, imgResp := getImage(t, svc, job.ID)
	is.Equal(format, "jpeg")
	is.Equal(imgResp.Header.Get("Content-Type"), "image/jpeg")
	is.True(imgResp.Header.Get("ETag") != "")
	is.Equal(rotated.Bounds().Dx(), 90)
	is.Equal(rotated.Bounds().Dy(), 120)

	// The same picture stored upright (orientation 1) is the reference.
	resp = upload(t, svc, nil, readFile(t, "jmatsu-portrait-3-4_1.jpg"), map[string]string{"width": "90"})
	is.Equal(resp.StatusCode, http.StatusAccepted)
	ref := waitEnded(t, svc, nil, decode[jobJSON](t, resp).ID)
	upright, _, _ := getImage(t, svc, ref.ID)
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
	resp = postJSON(t, svc, nil, fmt.Sprintf(`{"url": %q, "width": 256}`, src.URL+"/storm.jpg"))
	is.Equal(resp.StatusCode, http.StatusAccepted)
	job = waitEnded(t, svc, nil, decode[jobJSON](t, resp).ID)
	is.Equal(job.Status, "succeeded")
	is.Equal(job.Result.Width, 256)
	is.Equal(job.Result.Height, 171) // 1920x1280 keeps its aspect
	img, _, _ := getImage(t, svc, job.ID)
	is.Equal(img.Bounds().Dx(), 256)

	// cover answers exactly the box.
	resp = postJSON(t, svc, nil, fmt.Sprintf(`{"url": %q, "width": 100, "height": 100, "fit": "cover", "format": "png"}`, src.URL+"/storm.jpg"))
	is.Equal(resp.StatusCode, http.StatusAccepted)
	job = waitEnded(t, svc, nil, decode[jobJSON](t, resp).ID)
	is.Equal(job.Result.Width, 100)
	is.Equal(job.Result.Height, 100)
	is.Equal(job.Result.ContentType, "image/png")
}

func TestHostileInputFailsAndTheServiceKeepsServing(t *testing.T) {
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
		resp := postJSON(t, svc, nil, fmt.Sprintf(`{"url": %q, "width": 64}`, src.URL+path))
		is.Equal(resp.StatusCode, http.StatusAccepted)
		job := waitEnded(t, svc, nil, decode[jobJSON](t, resp).ID)
		is.Equal(job.Status, "failed")
		is.Equal(job.Error.Code, code)   // each failure names its reason
		is.True(job.Error.Message != "") // and says it in words

		imgResp, err := http.Get(svc.URL + "/v1/thumbnails/" + job.ID + "/image")
		is.NoErr(err)
		p := decode[problemJSON](t, imgResp)
		is.Equal(imgResp.StatusCode, http.StatusConflict)
		is.Equal(p.Code, code)
	}

	// Uploads are refused at submit when the bytes already tell.
	resp := upload(t, svc, nil, readFile(t, "corkami-html-document.jpg"), map[string]string{"width": "64"})
	is.Equal(resp.StatusCode, http.StatusUnsupportedMediaType)
	is.Equal(decode[problemJSON](t, resp).Code, "unsupported_format")
	resp = upload(t, svc, nil, readFile(t, "fuzzdb-lottapixel.jpg"), map[string]string{"width": "64"})
	is.Equal(resp.StatusCode, http.StatusUnprocessableEntity)
	p := decode[problemJSON](t, resp)
	is.Equal(p.Code, "too_many_pixels")
	is.True(strings.Contains(p.Detail, "64250x64250"))

	// A truncated upload passes the header check and fails in the worker.
	resp = upload(t, svc, nil, readFile(t, "sharp-truncated.jpg"), map[string]string{"width": "64"})
	is.Equal(resp.StatusCode, http.StatusAccepted)
	job := waitEnded(t, svc, nil, decode[jobJSON](t, resp).ID)
	is.Equal(job.Error.Code, "corrupt_image")

	// And everyone else is still served.
	resp = upload(t, svc, nil, readFile(t, "go-video-001.jpeg"), map[string]string{"width": "50"})
	is.Equal(resp.StatusCode, http.StatusAccepted)
	job = waitEnded(t, svc, nil, decode[jobJSON](t, resp).ID)
	is.Equal(job.Status, "succeeded")
}

func TestBadRequestsSayWhatToFix(t *testing.T) {
	is := is.New(t)
	svc := startService(t, "all", map[string]string{"THUMBNAILED_MAX_UPLOAD_BYTES": "100000"})

	// Every bad field at once.
	resp := postJSON(t, svc, nil, `{"url": "ftp://example.com/a.jpg", "width": 0, "height": 99999, "fit": "squash", "quality": 101, "email": "not-an-address", "callback_url": "http://169.254.169.254/latest"}`)
	is.Equal(resp.StatusCode, http.StatusUnprocessableEntity)
	p := decode[problemJSON](t, resp)
	is.Equal(resp.Header.Get("Content-Type"), "application/problem+json")
	fields := map[string]bool{}
	for _, e := range p.Errors {
		fields[e.Field] = true
		is.True(e.Message != "")
	}
	for _, f := range []string{"url", "width", "height", "fit", "quality", "email"} {
		is.True(fields[f]) // every bad field is listed
	}

	resp = postJSON(t, svc, nil, `{"url": "https://example.com/a.jpg", "width": "wide"}`)
	is.Equal(resp.StatusCode, http.StatusUnprocessableEntity)
	is.Equal(decode[problemJSON](t, resp).Errors[0].Field, "width")

	resp = postJSON(t, svc, nil, `{"url": `)
	is.Equal(resp.StatusCode, http.StatusBadRequest)
	is.Equal(decode[problemJSON](t, resp).Code, "malformed_body")

	resp = postJSON(t, svc, nil, `{"url": "https://example.com/a.jpg"}`)
	is.Equal(resp.StatusCode, http.StatusUnprocessableEntity) // no size at all

	resp = upload(t, svc, nil, bytes.Repeat([]byte{0xff}, 200_000), map[string]string{"width": "64"})
	is.Equal(resp.StatusCode, http.StatusRequestEntityTooLarge)
	is.Equal(decode[problemJSON](t, resp).Code, "upload_too_large")

	req, _ := http.NewRequest(http.MethodPost, svc.URL+"/v1/thumbnails", strings.NewReader("hello"))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	is.NoErr(err)
	is.Equal(resp.StatusCode, http.StatusUnsupportedMediaType)
	resp.Body.Close()

	resp, err = http.Get(svc.URL + "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa")
	is.NoErr(err)
	is.Equal(resp.StatusCode, http.StatusNotFound)
	is.Equal(decode[problemJSON](t, resp).Code, "not_found")
}

func TestIdempotencyKey(t *testing.T) {
	is := is.New(t)
	svc := startService(t, "all", nil)
	h := http.Header{"Idempotency-Key": {"order-42"}}
	img := readFile(t, "go-video-001.jpeg")

	first := upload(t, svc, h, img, map[string]string{"width": "40"})
	is.Equal(first.StatusCode, http.StatusAccepted)
	a := decode[jobJSON](t, first)

	again := upload(t, svc, h, img, map[string]string{"width": "40"})
	is.Equal(again.StatusCode, http.StatusOK) // the same request: the first job
	is.Equal(decode[jobJSON](t, again).ID, a.ID)

	other := upload(t, svc, h, img, map[string]string{"width": "41"})
	is.Equal(other.StatusCode, http.StatusUnprocessableEntity) // the same key, another request
	is.Equal(decode[problemJSON](t, other).Code, "idempotency_key_reused")
}

func TestOpenAPIDocumentIsServed(t *testing.T) {
	is := is.New(t)
	svc := startService(t, "all", nil)
	resp, err := http.Get(svc.URL + "/openapi.yaml")
	is.NoErr(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	is.Equal(resp.StatusCode, http.StatusOK)
	is.True(bytes.HasPrefix(b, []byte("openapi: 3.1")))
}

func TestRolesThatNeedRedisRefuseToStartWithoutIt(t *testing.T) {
	for _, role := range []string{"api", "worker"} {
		t.Run(role, func(t *testing.T) {
			is := is.New(t)
			var out bytes.Buffer
			err := run(context.Background(), []string{"thumbnailed", role}, func(string) string { return "" }, &out, &out)
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), "THUMBNAILED_REDIS_URL"))
		})
	}
}

func TestEveryBadSettingIsReportedBeforeStart(t *testing.T) {
	is := is.New(t)
	env := map[string]string{"THUMBNAILED_MAX_PIXELS": "many", "THUMBNAILED_FETCH_TIMEOUT": "soon"}
	var out bytes.Buffer
	err := run(context.Background(), []string{"thumbnailed"}, func(k string) string { return env[k] }, &out, &out)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "THUMBNAILED_MAX_PIXELS"))
	is.True(strings.Contains(err.Error(), "THUMBNAILED_FETCH_TIMEOUT"))
}
