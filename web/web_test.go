package web

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// get asks the handler for path with method and returns the answer.
func get(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// securityHeaders checks what every answer carries, whatever its status.
func securityHeaders(t *testing.T, res *http.Response) {
	t.Helper()
	is := is.NewRelaxed(t)
	csp := res.Header.Get("Content-Security-Policy")
	is.True(csp != "")                                   // a CSP on every answer
	is.True(!strings.Contains(csp, "unsafe-inline"))     // no inline code or style
	is.True(!strings.Contains(csp, "unsafe-eval"))       // no eval
	is.True(strings.Contains(csp, "default-src 'none'")) // nothing unless listed
	is.True(strings.Contains(csp, "script-src 'self'"))
	is.True(strings.Contains(csp, "connect-src 'self'")) // the page talks to this API only
	is.True(strings.Contains(csp, "frame-ancestors 'none'"))
	is.Equal(res.Header.Get("X-Content-Type-Options"), "nosniff")
	is.Equal(res.Header.Get("Referrer-Policy"), "no-referrer")
	is.True(res.Header.Get("Cache-Control") != "")
}

func TestPageAndAssets(t *testing.T) {
	is := is.New(t)
	h := Handler()

	res := get(t, h, http.MethodGet, "/")
	is.Equal(res.StatusCode, http.StatusOK)
	securityHeaders(t, res)
	is.Equal(res.Header.Get("Content-Type"), "text/html; charset=utf-8")
	is.Equal(res.Header.Get("Cache-Control"), "no-cache") // a new build is seen at once
	body, _ := io.ReadAll(res.Body)
	page := string(body)
	is.True(strings.Contains(page, `<meta name="viewport"`))
	// The page links its assets with the digest of this build.
	links := regexp.MustCompile(`"/assets/([a-z.]+)\?v=([0-9a-f]{12})"`).FindAllStringSubmatch(page, -1)
	is.True(len(links) >= 3) // the style sheet, the script, the icon
	// No inline script, style element or style attribute: the CSP would block them.
	is.True(!regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|\sstyle=|\son[a-z]+=`).MatchString(page))

	types := map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml"}
	for _, l := range links {
		name, version := l[1], l[2]
		res := get(t, h, http.MethodGet, "/assets/"+name+"?v="+version)
		is.Equal(res.StatusCode, http.StatusOK) // every linked asset is there
		securityHeaders(t, res)
		is.Equal(res.Header.Get("Content-Type"), types[name])
		is.Equal(res.Header.Get("Cache-Control"), "public, max-age=31536000, immutable")

		// Without the current digest it is served, but never cached for long.
		res = get(t, h, http.MethodGet, "/assets/"+name)
		is.Equal(res.StatusCode, http.StatusOK)
		is.Equal(res.Header.Get("Cache-Control"), "no-cache")

		// Revalidation by ETag.
		etag := res.Header.Get("ETag")
		is.True(etag != "")
		res = get(t, h, http.MethodGet, "/assets/"+name, "If-None-Match", etag)
		is.Equal(res.StatusCode, http.StatusNotModified)
		securityHeaders(t, res)
	}

	res = get(t, h, http.MethodHead, "/")
	is.Equal(res.StatusCode, http.StatusOK)
	securityHeaders(t, res)
}

func TestUnknownPathsAre404(t *testing.T) {
	is := is.New(t)
	h := Handler()
	for _, path := range []string{
		"/assets/nope.js", "/assets/", "/assets/../web.go", "/assets/app.js/", "/assets/sub/app.js",
		"/index.html", "/static/index.html", "/web.go",
	} {
		res := get(t, h, http.MethodGet, path)
		is.Equal(res.StatusCode, http.StatusNotFound) // path
		securityHeaders(t, res)
		is.Equal(res.Header.Get("Content-Type"), "application/problem+json")
		var p struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		is.NoErr(json.NewDecoder(res.Body).Decode(&p))
		is.Equal(p.Status, http.StatusNotFound)
		is.Equal(p.Code, "not_found")
	}
}

func TestOtherMethodsAre405(t *testing.T) {
	is := is.New(t)
	res := get(t, Handler(), http.MethodPost, "/")
	is.Equal(res.StatusCode, http.StatusMethodNotAllowed)
	is.Equal(res.Header.Get("Allow"), "GET, HEAD")
	securityHeaders(t, res)
}

// TestEmbeddedFilesAreSmall keeps the page under its budget (DESIGN.md: under
// 60 KiB uncompressed in all) and free of anything fetched from elsewhere.
func TestEmbeddedFilesAreSmall(t *testing.T) {
	is := is.New(t)
	total := 0
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		total += len(b)
		// No CDN, no external font or script: only the API's own origin.
		if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).Find(b); m != nil {
			t.Errorf("%s refers to another origin: %s", path, m)
		}
		if regexp.MustCompile(`(?i)@import|url\(\s*["']?(https?:)?//`).Match(b) {
			t.Errorf("%s imports from another origin", path)
		}
		return nil
	})
	is.NoErr(err)
	t.Logf("embedded files: %d bytes", total)
	is.True(total > 0)
	is.True(total < 60<<10) // under 60 KiB in all
}
