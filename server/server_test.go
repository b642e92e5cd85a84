package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/matryer/is"
	"gopkg.in/yaml.v3"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

func TestEveryRouteIsInTheOpenAPIDocument(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{metrics: true, events: true, page: true})

	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	is.NoErr(yaml.Unmarshal(openAPI, &doc))
	is.True(strings.HasPrefix(doc.OpenAPI, "3.1"))

	param := regexp.MustCompile(`:(\w+)`)
	routes := 0
	served := map[string]bool{}
	for _, r := range api.handler.Routes() {
		if strings.HasSuffix(r.Path, "/*") || r.Method == echo.RouteNotFound {
			continue
		}
		routes++
		path := param.ReplaceAllString(r.Path, "{$1}")
		served[strings.ToLower(r.Method)+" "+path] = true
		ops, ok := doc.Paths[path]
		if !ok {
			t.Errorf("route %s %s is not in openapi.yaml", r.Method, path)
			continue
		}
		if _, ok := ops[strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s: openapi.yaml has the path but not the method", r.Method, path)
		}
	}
	is.True(routes >= 14) // every route of routes.go, /metrics included
	// And nothing documented is missing from the server.
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			if !served[method+" "+path] {
				t.Errorf("openapi.yaml documents %s %s, which the server does not serve", strings.ToUpper(method), path)
			}
		}
	}
}

func TestOpenAPIDocumentIsServed(t *testing.T) {
	// Moved from cmd/thumbnailed: the API serves its own contract.
	is := is.New(t)
	api := newTestAPI(t, Config{})
	r := api.Do(t, http.MethodGet, "/openapi.yaml", nil, nil)
	is.Equal(r.Status, http.StatusOK)
	is.True(strings.HasPrefix(r.Header.Get("Content-Type"), "application/yaml"))
	is.True(strings.HasPrefix(string(r.Body), "openapi: 3.1"))
	is.Equal(string(r.Body), string(openAPI)) // the embedded document, whole
}

func TestAPIKeys(t *testing.T) {
	is := is.New(t)
	keyA, keyB := "key-a-0123456789abcdef", "key-b-0123456789abcdef"
	api := newAPIWith(t, apiOptions{keys: []string{keyA, keyB}})
	a, b := api.WithKey(keyA), api.WithKey(keyB)

	r := api.Upload(t, tinyJPEG(t), map[string]string{"width": "32"}, nil)
	is.Equal(r.Status, http.StatusUnauthorized)
	is.Equal(r.Problem(t).Code, "unauthorized")
	is.True(r.Header.Get("WWW-Authenticate") != "")

	r = api.WithKey("wrong-key-0123456789").Upload(t, tinyJPEG(t), map[string]string{"width": "32"}, nil)
	is.Equal(r.Status, http.StatusUnauthorized)

	r = a.Upload(t, tinyJPEG(t), map[string]string{"width": "32"}, nil)
	is.Equal(r.Status, http.StatusAccepted)
	job := r.Job(t)

	r = a.Do(t, http.MethodGet, "/v1/thumbnails/"+job.ID, nil, nil)
	is.Equal(r.Status, http.StatusOK)
	is.True(!strings.Contains(string(r.Body), "owner")) // the owner digest is not shown
	is.True(!strings.Contains(string(r.Body), keyA))    // nor the key
	_, status := b.Get(t, job.ID)
	is.Equal(status, http.StatusNotFound) // another key's job is as unknown as a missing one
	r = b.Do(t, http.MethodGet, "/v1/thumbnails/"+job.ID+"/image", nil, nil)
	is.Equal(r.Status, http.StatusNotFound)
	r = b.Do(t, http.MethodGet, "/v1/thumbnails/"+job.ID+"/outputs/default", nil, nil)
	is.Equal(r.Status, http.StatusNotFound)
	is.Equal(b.Delete(t, job.ID).Status, http.StatusNotFound)
	_, status = a.Get(t, job.ID)
	is.Equal(status, http.StatusOK) // B's DELETE did nothing

	// Operations endpoints need no key.
	is.Equal(api.Do(t, http.MethodGet, "/healthz", nil, nil).Status, http.StatusOK)
	is.Equal(api.Do(t, http.MethodGet, "/openapi.yaml", nil, nil).Status, http.StatusOK)
}

func TestRateLimitIsPerClientAndIgnoresForgedForwardedFor(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{rate: 0.01, burst: 3})
	// Two clients on two loopback addresses.
	one, other := api.From("127.0.0.7"), api.From("127.0.0.8")
	get := func(c *testapi.Client, xff string) testapi.Response {
		return c.Do(t, http.MethodGet, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa", nil, header("X-Forwarded-For", xff))
	}
	for range 3 {
		is.Equal(get(one, "").Status, http.StatusNotFound) // the burst passes
	}
	// Rotating X-Forwarded-For does not make a new client.
	for i := range 5 {
		r := get(one, "203.0.113."+string(rune('1'+i)))
		is.Equal(r.Status, http.StatusTooManyRequests)
		is.Equal(r.Problem(t).Code, "rate_limited")
		is.True(r.Header.Get("Retry-After") != "")
	}
	// Another client is not affected.
	is.Equal(get(other, "").Status, http.StatusNotFound)
}

func TestTrustedProxyForwardsTheClientAddress(t *testing.T) {
	is := is.New(t)
	// The test's requests come from loopback: here loopback is the proxy.
	api := newAPIWith(t, apiOptions{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, rate: 0.01, burst: 1})
	get := func(xff string) int {
		return api.Do(t, http.MethodGet, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa", nil, header("X-Forwarded-For", xff)).Status
	}
	is.Equal(get("203.0.113.1"), http.StatusNotFound)
	is.Equal(get("203.0.113.1"), http.StatusTooManyRequests)
	is.Equal(get("203.0.113.2"), http.StatusNotFound) // behind a trusted proxy, clients are told apart
}

func TestIPv6ClientsOfOneSlash64ShareOneLimit(t *testing.T) {
	// Issue 13, item 6: in open mode the limit is per IPv4 address and per
	// IPv6 /64, or a client holding a /64 has 2^64 limits. The addresses
	// come through a trusted proxy (loopback) in X-Forwarded-For.
	is := is.New(t)
	api := newAPIWith(t, apiOptions{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, rate: 0.01, burst: 3})
	get := func(xff string) testapi.Response {
		return api.Do(t, http.MethodGet, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa", nil, header("X-Forwarded-For", xff))
	}
	limited := 0
	for i := range 20 {
		// 20 addresses of 2001:db8:aa:bb::/64, none repeated.
		r := get(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0xbb, 0x12, 0x34, byte(i), 0x56, 0, byte(i * 7), 0x9a, byte(i + 1)}).String())
		if r.Status == http.StatusTooManyRequests {
			limited++
			is.Equal(r.Problem(t).Code, "rate_limited")
		} else {
			is.Equal(r.Status, http.StatusNotFound)
		}
	}
	is.Equal(limited, 17) // the /64's burst of 3 passed, and no more
	// Another /64 has a limit of its own, and so does an IPv4 client.
	is.Equal(get("2001:db8:aa:bc::1").Status, http.StatusNotFound)
	is.Equal(get("203.0.113.9").Status, http.StatusNotFound)
	// An IPv4-mapped address is its IPv4 client.
	is.Equal(get("::ffff:203.0.113.9").Status, http.StatusNotFound)
	is.Equal(get("203.0.113.9").Status, http.StatusNotFound)
	is.Equal(get("::ffff:203.0.113.9").Status, http.StatusTooManyRequests)
}

func TestUploadLimitIsEnforcedWhileStreaming(t *testing.T) {
	is := is.New(t)
	api := newTestAPI(t, Config{MaxUploadBytes: 64 << 10})
	// A body that would be 50 MB: the reader stops just past the limit.
	// (Straight to the handler, to count what it reads, not socket buffers.)
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
