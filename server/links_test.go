package server

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/jobs"
)

const linkTestKey = "links-key-0123456789abcdef"

func TestSignedLinksOpenImagesWithoutAKey(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{linkTestKey}})
	c := api.WithKey(linkTestKey)
	job := submitURL(t, c, map[string]any{"outputs": []any{map[string]any{"name": "small", "width": 64}, map[string]any{"name": "large", "width": 128}}})
	images := api.succeed(t, job.ID, outputSpec{"small", 64, 48}, outputSpec{"large", 128, 96})

	job, status := c.Get(t, job.ID)
	is.Equal(status, http.StatusOK)
	is.Equal(job.Status, "succeeded")
	res := job.Result
	is.Equal(len(res.Outputs), 2)
	is.Equal(res.ImageURL, res.Outputs[0].URL) // image_url is the first output's link
	is.Equal(res.Width, 64)
	is.Equal(res.Bytes, len(images["small"]))
	is.True(strings.Contains(res.Srcset["jpeg"], res.Outputs[0].URL+" 64w"))
	is.True(strings.Contains(res.Srcset["jpeg"], res.Outputs[1].URL+" 128w"))

	link := regexp.MustCompile(`^/v1/thumbnails/` + job.ID + `/outputs/(small|large)\?expires=(\d+)&signature=([A-Za-z0-9_-]{43})$`)
	for _, o := range res.Outputs {
		m := link.FindStringSubmatch(o.URL)
		if m == nil {
			t.Fatalf("output %s: %q is not a signed link", o.Name, o.URL)
		}
		exp, _ := strconv.ParseInt(m[2], 10, 64)
		is.Equal(exp, o.URLExpiresAt.Unix()) // url_expires_at says when the link expires
		is.True(o.URLExpiresAt.After(time.Now().Add(50 * time.Minute)))

		// Opened by a person who has only the link.
		r := api.Open(t, http.MethodGet, o.URL)
		is.Equal(r.Status, http.StatusOK)
		is.Equal(r.Body, images[o.Name])
		is.Equal(r.Header.Get("Content-Type"), "image/jpeg")
		is.True(r.Header.Get("ETag") != "")
		is.True(r.Header.Get("Cache-Control") != "")
	}

	small := res.Outputs[0].URL
	u, _ := url.Parse(small)
	q := u.Query()

	// Without a link, the output needs the key like everything else.
	r := api.Do(t, http.MethodGet, u.Path, nil, nil)
	is.Equal(r.Status, http.StatusUnauthorized)
	r = c.Do(t, http.MethodGet, u.Path, nil, nil)
	is.Equal(r.Status, http.StatusOK)
	is.Equal(r.Body, images["small"])

	refused := func(link, code string) {
		t.Helper()
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r := api.Open(t, method, link)
			if r.Status != http.StatusForbidden {
				t.Fatalf("%s %s: %d, want 403 %s", method, link, r.Status, code)
			}
			if method == http.MethodHead {
				is.Equal(len(r.Body), 0)
				continue
			}
			is.Equal(r.Problem(t).Code, code)
			is.True(hasNoImage(r.Body, images["small"])) // no byte of the image
		}
	}
	with := func(path string, expires, signature string) string {
		return path + "?" + url.Values{"expires": {expires}, "signature": {signature}}.Encode()
	}
	sig := q.Get("signature")
	forged := []byte(sig)
	forged[0] = map[bool]byte{true: 'B', false: 'A'}[sig[0] == 'A'] // one character off
	refused(with(u.Path, q.Get("expires"), string(forged)), "link_invalid")
	refused(with(u.Path, q.Get("expires"), ""), "link_invalid")
	refused(with(u.Path, "", sig), "link_invalid")
	later, _ := strconv.ParseInt(q.Get("expires"), 10, 64)
	refused(with(u.Path, strconv.FormatInt(later+86400, 10), sig), "link_invalid")                       // a later expiry under the same signature
	refused(with(strings.Replace(u.Path, "/small", "/large", 1), q.Get("expires"), sig), "link_invalid") // another output's signature
	refused(api.links.Output(job.ID, "small", time.Now().Add(-time.Minute)), "link_expired")             // signed, and past
	// Even with the key, a link that is presented is checked.
	r = c.Do(t, http.MethodGet, with(u.Path, q.Get("expires"), string(forged)), nil, nil)
	is.Equal(r.Status, http.StatusForbidden)

	// A well-signed link to an output the job did not make is 404.
	r = api.Open(t, http.MethodGet, api.links.Output(job.ID, "huge", time.Now().Add(time.Hour)))
	is.Equal(r.Status, http.StatusNotFound)
	is.Equal(r.Problem(t).Code, "not_found")
}

func TestHeadOnImagesAndOutputs(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{linkTestKey}})
	c := api.WithKey(linkTestKey)
	job := submitURL(t, c, nil)
	heads := []string{"/v1/thumbnails/" + job.ID + "/image", "/v1/thumbnails/" + job.ID + "/outputs/default"}

	// Not ready: 409 with Retry-After, and no body.
	for _, path := range heads {
		r := c.Do(t, http.MethodHead, path, nil, nil)
		is.Equal(r.Status, http.StatusConflict)
		is.True(r.Header.Get("Retry-After") != "")
		is.Equal(len(r.Body), 0)
		r = c.Do(t, http.MethodGet, path, nil, nil)
		is.Equal(r.Status, http.StatusConflict)
		is.Equal(r.Problem(t).Code, "not_ready")
	}

	image := api.succeed(t, job.ID)[jobs.DefaultOutput]
	job, _ = c.Get(t, job.ID)
	for _, h := range []struct {
		who  *testapi.Client
		path string
	}{{c, heads[0]}, {c, heads[1]}, {api.Client, job.Result.ImageURL}} {
		r := h.who.Do(t, http.MethodHead, h.path, nil, nil)
		is.Equal(r.Status, http.StatusOK)
		is.Equal(len(r.Body), 0) // the headers alone
		is.Equal(r.Header.Get("Content-Type"), "image/jpeg")
		is.Equal(r.Header.Get("Content-Length"), strconv.Itoa(len(image)))
		etag := r.Header.Get("ETag")
		is.True(etag != "")
		get := h.who.Do(t, http.MethodGet, h.path, nil, nil)
		is.Equal(get.Header.Get("ETag"), etag) // HEAD says what GET sends
		is.Equal(get.Body, image)
		r = h.who.Do(t, http.MethodGet, h.path, nil, header("If-None-Match", etag))
		is.Equal(r.Status, http.StatusNotModified)
		is.Equal(len(r.Body), 0)
	}
	// Unknown job: 404 without a body.
	r := c.Do(t, http.MethodHead, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa/image", nil, nil)
	is.Equal(r.Status, http.StatusNotFound)
	is.Equal(len(r.Body), 0)

	// A failed job: its image answers 409 with the job's error.
	failed := submitURL(t, c, nil)
	ctx := context.Background()
	_, _, err := api.store.Begin(ctx, failed.ID, 3)
	is.NoErr(err)
	_, _, err = api.store.Fail(ctx, failed.ID, "corrupt_image", "the image is damaged")
	is.NoErr(err)
	r = c.Do(t, http.MethodHead, "/v1/thumbnails/"+failed.ID+"/image", nil, nil)
	is.Equal(r.Status, http.StatusConflict)
	is.Equal(len(r.Body), 0)
	r = c.Do(t, http.MethodGet, "/v1/thumbnails/"+failed.ID+"/image", nil, nil)
	is.Equal(r.Status, http.StatusConflict)
	p := r.Problem(t)
	is.Equal(p.Code, "corrupt_image")
	is.True(strings.Contains(p.Detail, "the image is damaged"))
}

func TestWrongMethodsAnswer405WithAllow(t *testing.T) {
	// Issue 15: a known path with a method it does not serve answers 405
	// with Allow (problem+json), never 404; walked over every route, with
	// and without a key (the answer comes before auth).
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{linkTestKey}, metrics: true, events: true})
	served := map[string][]string{}
	for _, r := range api.handler.Routes() {
		if r.Method == echo.RouteNotFound || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		served[r.Path] = append(served[r.Path], r.Method)
	}
	is.True(len(served) >= 10)
	params := strings.NewReplacer(":id", "aaaaaaaaaaaaaaaaaaaaaaaaaa", ":name", "default", ":channel", "callback")
	tried := 0
	for route, methods := range served {
		path := params.Replace(route)
		want := append([]string{http.MethodOptions}, methods...)
		slices.Sort(want)
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, "BREW"} {
			if slices.Contains(methods, method) {
				continue
			}
			for _, client := range []*testapi.Client{api.Client, api.WithKey(linkTestKey)} {
				tried++
				r := client.Do(t, method, path, nil, nil)
				if r.Status != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %d, want 405", method, route, r.Status)
					continue
				}
				var allow []string
				for _, m := range strings.Split(r.Header.Get("Allow"), ",") {
					allow = append(allow, strings.TrimSpace(m))
				}
				slices.Sort(allow)
				if !slices.Equal(allow, want) {
					t.Errorf("%s %s: Allow %q, want %v", method, route, r.Header.Get("Allow"), want)
				}
				if method == http.MethodHead {
					is.Equal(len(r.Body), 0)
					continue
				}
				is.Equal(r.Problem(t).Code, "method_not_allowed")
			}
		}
		// OPTIONS answers with the same list.
		r := api.Do(t, http.MethodOptions, path, nil, nil)
		is.Equal(r.Status, http.StatusNoContent)
		is.True(r.Header.Get("Allow") != "")
	}
	t.Logf("%d wrong-method requests over %d paths", tried, len(served))
	// The examples of issue 15.
	is.Equal(api.Do(t, http.MethodPut, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa/image", nil, nil).Status, http.StatusMethodNotAllowed)
	// An unknown path is still 404.
	r := api.Do(t, http.MethodGet, "/v1/nothing-here", nil, nil)
	is.Equal(r.Status, http.StatusNotFound)
	is.Equal(r.Problem(t).Code, "not_found")
}
