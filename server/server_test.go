package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matryer/is"
	"gopkg.in/yaml.v3"

	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testAPI is the real API on a real Redis (see testredis).
type testAPI struct {
	handler http.Handler
	store   *jobs.Store
}

func newTestAPI(t *testing.T, cfg Config) *testAPI {
	t.Helper()
	return newLimitedTestAPI(t, cfg, 0, 0)
}

// newLimitedTestAPI limits each client to rate requests per second, bursts
// of burst, through the Redis rate limiter; rate 0 means no limit.
func newLimitedTestAPI(t *testing.T, cfg Config, rate float64, burst int) *testAPI {
	t.Helper()
	r := testredis.New(t)
	store := jobs.NewStore(r.Pool, r.Namespace, time.Hour)
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 1 << 20
	}
	if cfg.MaxDimension == 0 {
		cfg.MaxDimension = 4096
	}
	if cfg.MaxPixels == 0 {
		cfg.MaxPixels = 50_000_000
	}
	var limiter RateLimiter
	if rate > 0 {
		limiter = jobs.NewRateLimiter(store, rate, burst)
	}
	return &testAPI{handler: New(quiet, cfg, store, jobs.NewQueue(store), limiter, thumbnail.Default, nil), store: store}
}

func (a *testAPI) do(method, path string, body io.Reader, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, body)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	return rec
}

func tinyJPEG(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../thumbnail/testdata/photos/go-video-001.jpeg")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func multipartBody(image []byte, fields map[string]string) (io.Reader, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if image != nil {
		w, _ := mw.CreateFormFile("image", "x.jpg")
		_, _ = w.Write(image)
	}
	_ = mw.Close()
	return &buf, mw.FormDataContentType()
}

func TestEveryRouteIsInTheOpenAPIDocument(t *testing.T) {
	is := is.New(t)
	api := newTestAPI(t, Config{})
	e := api.handler.(*echo.Echo)

	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	is.NoErr(yaml.Unmarshal(openAPI, &doc))
	is.True(strings.HasPrefix(doc.OpenAPI, "3.1"))

	param := regexp.MustCompile(`:(\w+)`)
	routes := 0
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Path, "/*") || r.Method == echo.RouteNotFound {
			continue
		}
		routes++
		path := param.ReplaceAllString(r.Path, "{$1}")
		ops, ok := doc.Paths[path]
		if !ok {
			t.Errorf("route %s %s is not in openapi.yaml", r.Method, path)
			continue
		}
		if _, ok := ops[strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s: openapi.yaml has the path but not the method", r.Method, path)
		}
	}
	is.True(routes >= 6)
	// And nothing documented is missing from the server.
	served := map[string]bool{}
	for _, r := range e.Routes() {
		served[strings.ToLower(r.Method)+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			if path == "/metrics" {
				continue // served only when the process has metrics wired
			}
			is.True(served[method+" "+path]) // documented operation is served
		}
	}
}

func TestAPIKeys(t *testing.T) {
	is := is.New(t)
	keyA, keyB := "key-a-0123456789abcdef", "key-b-0123456789abcdef"
	api := newTestAPI(t, Config{APIKeys: []string{keyA, keyB}})

	body, ct := multipartBody(tinyJPEG(t), map[string]string{"width": "32"})
	rec := api.do(http.MethodPost, "/v1/thumbnails", body, map[string]string{"Content-Type": ct})
	is.Equal(rec.Code, http.StatusUnauthorized)
	is.Equal(rec.Header().Get("Content-Type"), "application/problem+json")

	body, ct = multipartBody(tinyJPEG(t), map[string]string{"width": "32"})
	rec = api.do(http.MethodPost, "/v1/thumbnails", body, map[string]string{"Content-Type": ct, "Authorization": "Bearer wrong-key-0123456789"})
	is.Equal(rec.Code, http.StatusUnauthorized)

	body, ct = multipartBody(tinyJPEG(t), map[string]string{"width": "32"})
	rec = api.do(http.MethodPost, "/v1/thumbnails", body, map[string]string{"Content-Type": ct, "Authorization": "Bearer " + keyA})
	is.Equal(rec.Code, http.StatusAccepted)
	var job struct{ ID string }
	is.NoErr(json.Unmarshal(rec.Body.Bytes(), &job))

	rec = api.do(http.MethodGet, "/v1/thumbnails/"+job.ID, nil, map[string]string{"Authorization": "Bearer " + keyA})
	is.Equal(rec.Code, http.StatusOK)
	is.True(!strings.Contains(rec.Body.String(), "owner")) // the owner digest is not shown
	rec = api.do(http.MethodGet, "/v1/thumbnails/"+job.ID, nil, map[string]string{"Authorization": "Bearer " + keyB})
	is.Equal(rec.Code, http.StatusNotFound) // another key's job is as unknown as a missing one
	rec = api.do(http.MethodGet, "/v1/thumbnails/"+job.ID+"/image", nil, map[string]string{"Authorization": "Bearer " + keyB})
	is.Equal(rec.Code, http.StatusNotFound)

	// Operations endpoints need no key.
	rec = api.do(http.MethodGet, "/healthz", nil, nil)
	is.Equal(rec.Code, http.StatusOK)
}

func TestRateLimitIsPerClientAndIgnoresForgedForwardedFor(t *testing.T) {
	is := is.New(t)
	api := newLimitedTestAPI(t, Config{}, 0.01, 3)
	get := func(xff, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa", nil)
		req.RemoteAddr = remote
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		rec := httptest.NewRecorder()
		api.handler.ServeHTTP(rec, req)
		return rec
	}
	for i := 0; i < 3; i++ {
		is.Equal(get("", "198.51.100.7:1234").Code, http.StatusNotFound) // the burst passes
	}
	// Rotating X-Forwarded-For does not make a new client.
	for i := 0; i < 5; i++ {
		rec := get("203.0.113."+string(rune('1'+i)), "198.51.100.7:1234")
		is.Equal(rec.Code, http.StatusTooManyRequests)
		is.True(rec.Header().Get("Retry-After") != "")
	}
	// Another client is not affected.
	is.Equal(get("", "198.51.100.8:1234").Code, http.StatusNotFound)
}

func TestTrustedProxyForwardsTheClientAddress(t *testing.T) {
	is := is.New(t)
	api := newLimitedTestAPI(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, 0.01, 1)
	get := func(xff string) int {
		req := httptest.NewRequest(http.MethodGet, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa", nil)
		req.RemoteAddr = "10.1.2.3:5555"
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		api.handler.ServeHTTP(rec, req)
		return rec.Code
	}
	is.Equal(get("203.0.113.1"), http.StatusNotFound)
	is.Equal(get("203.0.113.1"), http.StatusTooManyRequests)
	is.Equal(get("203.0.113.2"), http.StatusNotFound) // behind a trusted proxy, clients are told apart
}

func TestUploadLimitIsEnforcedWhileStreaming(t *testing.T) {
	is := is.New(t)
	api := newTestAPI(t, Config{MaxUploadBytes: 64 << 10})
	// A body that would be 50 MB: the reader stops just past the limit.
	counter := &countingReader{r: io.MultiReader(strings.NewReader("--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"), zeros{})}
	req := httptest.NewRequest(http.MethodPost, "/v1/thumbnails", io.LimitReader(counter, 50<<20))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	rec := httptest.NewRecorder()
	api.handler.ServeHTTP(rec, req)
	is.Equal(rec.Code, http.StatusRequestEntityTooLarge)
	t.Logf("read %d bytes of a 50 MB body with a 64 KiB limit", counter.n)
	is.True(counter.n < 1<<20) // never read much past the limit
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
