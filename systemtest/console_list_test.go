package systemtest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// Issue 15: GET /v1/thumbnails through the real binary, with two API keys:
// each key pages through its own jobs only, newest first, three pages
// each, with no next_cursor on the last page; the status filter pages too.
func TestListPagesEachKeysOwnJobs(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r := startRedis(t)
	keyA, keyB := newKey("list-a"), newKey("list-b")
	env := serviceEnv(t, r, namespace())
	env["THUMBNAILED_API_KEYS"] = keyA + "," + keyB
	src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
	gone := httptest.NewServer(http.NotFoundHandler()) // a source that answers 404: the job fails
	t.Cleanup(gone.Close)
	svc := startProcess(t, "all", "all", env)
	a, b := svc.API().WithKey(keyA), svc.API().WithKey(keyB)

	// Interleaved: A's 7 jobs (odd ones fail) and B's 5 (the third fails).
	var idsA, idsB, failedA, failedB []string
	submit := func(c *testapi.Client, fail bool, n int) string {
		source := src.slow(0, n)
		if fail {
			source = gone.URL + "/missing.jpg"
		}
		resp := c.Submit(t, map[string]any{"url": source, "width": 16}, nil)
		if resp.Status != http.StatusAccepted {
			t.Fatalf("submit: %d %s", resp.Status, resp.Body)
		}
		// Two submits in one millisecond would have no order to check
		// (the index orders by creation time in ms): the next one starts
		// at least 2 ms after this one was answered.
		time.Sleep(2 * time.Millisecond)
		return resp.Job(t).ID
	}
	for i := range 7 {
		id := submit(a, i%2 == 1, i)
		idsA = append(idsA, id)
		if i%2 == 1 {
			failedA = append(failedA, id)
		}
		if i < 5 {
			id := submit(b, i == 2, 100+i)
			idsB = append(idsB, id)
			if i == 2 {
				failedB = append(failedB, id)
			}
		}
	}
	for _, c := range []struct {
		client *testapi.Client
		ids    []string
	}{{a, idsA}, {b, idsB}} {
		last, _, err := c.client.EndAll(c.ids, 30*time.Second)
		is.NoErr(err)
		for _, id := range c.ids {
			is.True(testapi.Ended(last[id])) // every job ended
		}
	}

	// A: 7 jobs, 3 a page: 3 pages, newest first, and no leak of B's.
	pages := a.ListAll(t, url.Values{"limit": {"3"}})
	is.Equal(sizes(pages), []int{3, 3, 1})
	is.True(pages[0].NextCursor != "" && pages[1].NextCursor != "") // a cursor on every page but the last
	is.Equal(pages[2].NextCursor, "")                               // (ListAll stops on the page without one)
	is.Equal(ids(pages), reversed(idsA))                            // all of A's, newest first, none of B's
	// B: 5 jobs, 2 a page: 3 pages.
	pages = b.ListAll(t, url.Values{"limit": {"2"}})
	is.Equal(sizes(pages), []int{2, 2, 1})
	is.Equal(ids(pages), reversed(idsB))

	// The items are the jobs as GET shows them.
	first, resp := a.List(t, url.Values{"limit": {"3"}})
	is.Equal(resp.Header.Get("Cache-Control"), "no-store")
	for _, item := range first.Items {
		job, code := a.Get(t, item.ID)
		is.Equal(code, http.StatusOK)
		is.Equal(item.Status, job.Status)
		is.Equal(item.Request.URL, job.Request.URL)
	}

	// The status filter: A's 3 failed ones over 2 pages, B's one failed.
	pages = a.ListAll(t, url.Values{"limit": {"2"}, "status": {"failed"}})
	is.Equal(sizes(pages), []int{2, 1})
	is.Equal(ids(pages), reversed(failedA))
	for _, p := range pages {
		for _, j := range p.Items {
			is.Equal(j.Status, "failed")
			is.Equal(j.Error.Code, "source_not_found")
		}
	}
	pages = a.ListAll(t, url.Values{"limit": {"3"}, "status": {"succeeded"}})
	is.Equal(sizes(pages), []int{3, 1})
	is.Equal(ids(pages), reversed(without(idsA, failedA)))
	pages = b.ListAll(t, url.Values{"status": {"failed"}})
	is.Equal(ids(pages), failedB)
	pages = a.ListAll(t, url.Values{"status": {"queued"}})
	is.Equal(sizes(pages), []int{0}) // none queued: one empty page, no cursor
	// Without limit: the default page (20) holds them all.
	page, _ := a.List(t, nil)
	is.Equal(len(page.Items), 7)
	is.Equal(page.NextCursor, "")

	// No leak across keys the other way either: B's GET of an A job is 404.
	_, code := b.Get(t, idsA[0])
	is.Equal(code, http.StatusNotFound)
	// A cursor that is not one the API gave is 422 naming the field.
	_, resp = a.List(t, url.Values{"cursor": {"not-a-cursor"}})
	is.Equal(resp.Status, http.StatusUnprocessableEntity)
	is.True(resp.Problem(t).Field("cursor") != "")
	t.Logf("A: %d jobs (%d failed), B: %d jobs (%d failed); pages checked", len(idsA), len(failedA), len(idsB), len(failedB))
}

func sizes(pages []testapi.Page) []int {
	var out []int
	for _, p := range pages {
		out = append(out, len(p.Items))
	}
	return out
}

func ids(pages []testapi.Page) []string {
	var out []string
	for _, p := range pages {
		for _, j := range p.Items {
			out = append(out, j.ID)
		}
	}
	return out
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func without(s, drop []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(drop, v) {
			out = append(out, v)
		}
	}
	return out
}
