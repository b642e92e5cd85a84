// Package web is the try-it page at / (DESIGN.md "Try-it page"): one
// hand-written HTML page, its script and its style sheet, embedded in the
// binary. The page talks only to the documented API (POST /v1/thumbnails,
// GET /v1/thumbnails/{id}/events and the signed links of the outputs).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/thumbnailed/thumbnailed/codes"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every answer: scripts and styles from
// this origin only (no inline code, no inline style attributes), images from
// anywhere a signed link may point (THUMBNAILED_PUBLIC_URL may name another
// host) and from blob: (the preview of a chosen file), requests to this
// origin only, and no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' blob: data: http: https:; connect-src 'self'; " +
	"form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// site is what Handler serves: "/" and "/assets/<name>".
type site struct {
	index   file
	assets  map[string]file
	version string // the assets' digest, in their links from the page
}

// Handler serves the page at "/" and its files at "/assets/<name>"; any other
// path, or an asset that does not exist, is 404. Every answer carries the
// Content-Security-Policy and the other security headers. The page links the
// assets with ?v=<digest of the assets>, so they may be cached for long.
func Handler() http.Handler {
	p, err := load(static)
	if err != nil {
		panic("web: the embedded files are broken: " + err.Error()) // a build mistake, found by the tests
	}
	return p
}

func load(fsys fs.FS) (*site, error) {
	index, err := fs.ReadFile(fsys, "static/index.html")
	if err != nil {
		return nil, err
	}
	p := &site{assets: map[string]file{}}
	entries, err := fs.ReadDir(fsys, "static/assets")
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		body, err := fs.ReadFile(fsys, "static/assets/"+e.Name())
		if err != nil {
			return nil, err
		}
		p.assets[e.Name()] = newFile(e.Name(), body)
		sum.Write([]byte(e.Name()))
		sum.Write(body)
	}
	p.version = hex.EncodeToString(sum.Sum(nil))[:12]
	// The page names its assets "/assets/x"; it gets "/assets/x?v=…" so a
	// new build is never mixed with an old cached script.
	for name := range p.assets {
		index = bytes.ReplaceAll(index, []byte(`"/assets/`+name+`"`), []byte(`"/assets/`+name+`?v=`+p.version+`"`))
	}
	p.index = newFile("index.html", index)
	return p, nil
}

func newFile(name string, body []byte) file {
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) { // not left to the system's MIME tables
	case ".html":
		ct = "text/html; charset=utf-8"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	case ".svg":
		ct = "image/svg+xml"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	d := sha256.Sum256(body)
	return file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(d[:8]) + `"`}
}

func (p *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")

	var f file
	cache := "no-cache" // the page: always revalidated (its ETag makes that cheap)
	switch name, isAsset := strings.CutPrefix(r.URL.Path, "/assets/"); {
	case r.URL.Path == "/":
		f = p.index
	case isAsset:
		var ok bool
		if f, ok = p.assets[name]; !ok {
			h.Set("Cache-Control", "no-store")
			notFound(w, "no such asset: "+name)
			return
		}
		if r.URL.Query().Get("v") == p.version {
			cache = "public, max-age=31536000, immutable"
		}
	default:
		h.Set("Cache-Control", "no-store")
		notFound(w, "no such page")
		return
	}
	h.Set("Cache-Control", cache)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		h.Set("Cache-Control", "no-store")
		writeProblem(w, codes.MethodNotAllowed, "this page answers GET and HEAD")
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

func notFound(w http.ResponseWriter, detail string) {
	writeProblem(w, codes.NotFound, detail)
}

// writeProblem answers as the API does: problem+json with a stable code
// from the one list.
func writeProblem(w http.ResponseWriter, code, detail string) {
	status := codes.Status(code)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   "https://thumbnailed.dev/problems/" + code,
		"title":  http.StatusText(status),
		"status": status,
		"detail": detail,
		"code":   code,
	})
}
