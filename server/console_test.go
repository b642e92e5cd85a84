package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/jobs"
)

// The client's console (issue 15): list, erase, redeliver and live events.

const (
	consoleKeyA = "console-key-a-0123456789"
	consoleKeyB = "console-key-b-0123456789"
)

func TestListPagesThroughTheCallersJobsOnly(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{consoleKeyA, consoleKeyB}})
	a, b := api.WithKey(consoleKeyA), api.WithKey(consoleKeyB)

	// Five jobs of A and three of B, interleaved.
	var mine, theirs []string // oldest first
	for i := range 8 {
		if i%3 == 1 {
			theirs = append(theirs, submitURL(t, b, nil).ID)
			continue
		}
		mine = append(mine, submitURL(t, a, nil).ID)
	}
	is.Equal(len(mine), 5)

	pages := a.ListAll(t, url.Values{"limit": {"2"}})
	is.Equal(len(pages), 3) // 2 + 2 + 1
	var listed []string
	for i, p := range pages {
		is.Equal(len(p.Items), []int{2, 2, 1}[i])
		is.Equal(p.NextCursor == "", i == 2) // no next_cursor on the last page alone
		for _, j := range p.Items {
			listed = append(listed, j.ID)
			is.Equal(j.Status, "queued")
		}
	}
	// Every job of A once, none of B, newest first (jobs made within one
	// millisecond may come in either order).
	is.Equal(sorted(listed), sorted(mine))
	created := map[string]time.Time{}
	for _, p := range pages {
		for _, j := range p.Items {
			created[j.ID] = j.CreatedAt
		}
	}
	for i := 1; i < len(listed); i++ {
		is.True(!created[listed[i]].Truncate(time.Millisecond).After(created[listed[i-1]].Truncate(time.Millisecond)))
	}

	pages = b.ListAll(t, url.Values{"limit": {"2"}})
	var theirsListed []string
	for _, p := range pages {
		for _, j := range p.Items {
			theirsListed = append(theirsListed, j.ID)
		}
	}
	is.Equal(sorted(theirsListed), sorted(theirs)) // B sees its own three, and nothing of A

	// The status filter.
	api.succeed(t, mine[1])
	page, r := a.List(t, url.Values{"status": {"succeeded"}})
	is.Equal(r.Status, http.StatusOK)
	is.Equal(len(page.Items), 1)
	is.Equal(page.Items[0].ID, mine[1])
	is.Equal(page.Items[0].Status, "succeeded")
	is.Equal(page.NextCursor, "")
	queued := a.ListAll(t, url.Values{"status": {"queued"}, "limit": {"3"}})
	is.Equal(len(queued), 2)
	is.Equal(len(queued[0].Items)+len(queued[1].Items), 4)
	page, _ = b.List(t, url.Values{"status": {"succeeded"}})
	is.Equal(len(page.Items), 0) // B has none succeeded

	// The default page holds them all; an erased job leaves the list.
	page, _ = a.List(t, nil)
	is.Equal(len(page.Items), 5)
	is.Equal(a.Delete(t, mine[0]).Status, http.StatusNoContent)
	page, _ = a.List(t, nil)
	is.Equal(len(page.Items), 4)
	is.True(!slices.ContainsFunc(page.Items, func(j testapi.Job) bool { return j.ID == mine[0] }))

	// A cursor is the caller's: B following A's cursor still sees only B's.
	first, _ := a.List(t, url.Values{"limit": {"1"}})
	page, r = b.List(t, url.Values{"cursor": {first.NextCursor}})
	is.Equal(r.Status, http.StatusOK)
	for _, j := range page.Items {
		is.True(slices.Contains(theirs, j.ID))
	}

	// Bad parameters say which.
	for q, field := range map[string]string{"status=done": "status", "limit=0": "limit", "limit=101": "limit", "limit=x": "limit",
		"cursor=not-a-cursor": "cursor", "colour=red": "colour"} {
		r := a.Do(t, http.MethodGet, "/v1/thumbnails?"+q, nil, nil)
		is.Equal(r.Status, http.StatusUnprocessableEntity)
		is.True(r.Problem(t).Field(field) != "")
	}
	is.Equal(api.Do(t, http.MethodGet, "/v1/thumbnails", nil, nil).Status, http.StatusUnauthorized)
}

func TestDeleteErasesAJobEverywhere(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{consoleKeyA, consoleKeyB}})
	a, b := api.WithKey(consoleKeyA), api.WithKey(consoleKeyB)
	ctx := context.Background()

	// A queued upload job, and a finished job with two images.
	r := a.Upload(t, tinyJPEG(t), map[string]string{"width": "64", "callback_url": "https://hooks.example.com/t"}, nil)
	is.Equal(r.Status, http.StatusAccepted)
	queued := r.Job(t)
	_, err := api.blobs.Get(ctx, queued.ID, jobs.UploadBlob)
	is.NoErr(err) // the upload is stored
	finished := submitURL(t, a, map[string]any{"outputs": []any{map[string]any{"name": "s", "width": 32}, map[string]any{"name": "m", "width": 64}}})
	api.succeed(t, finished.ID, outputSpec{"s", 32, 24}, outputSpec{"m", 64, 48})
	finished, _ = a.Get(t, finished.ID)
	links := []string{finished.Result.Outputs[0].URL, finished.Result.Outputs[1].URL}
	is.Equal(api.Open(t, http.MethodGet, links[0]).Status, http.StatusOK)

	// Another key cannot erase them.
	is.Equal(b.Delete(t, queued.ID).Status, http.StatusNotFound)
	is.Equal(b.Delete(t, finished.ID).Status, http.StatusNotFound)

	for _, job := range []testapi.Job{queued, finished} {
		r := a.Delete(t, job.ID)
		is.Equal(r.Status, http.StatusNoContent)
		is.Equal(len(r.Body), 0)

		// Then 404 everywhere.
		for _, path := range []string{"", "/image", "/outputs/default", "/outputs/s", "/events"} {
			r := a.Do(t, http.MethodGet, "/v1/thumbnails/"+job.ID+path, nil, nil)
			if r.Status != http.StatusNotFound {
				t.Errorf("GET %s%s after DELETE: %d", job.ID, path, r.Status)
			}
		}
		is.Equal(a.Do(t, http.MethodHead, "/v1/thumbnails/"+job.ID+"/image", nil, nil).Status, http.StatusNotFound)
		is.Equal(a.Redeliver(t, job.ID, "callback").Status, http.StatusNotFound)
		is.Equal(a.Delete(t, job.ID).Status, http.StatusNotFound) // erased once
		// And its bytes are gone from the blob store.
		for _, name := range []string{jobs.UploadBlob, "s.jpg", "m.jpg"} {
			_, err := api.blobs.Get(ctx, job.ID, name)
			is.True(errors.Is(err, blob.ErrNotFound))
		}
		_, err := api.store.Get(ctx, job.ID)
		is.True(errors.Is(err, jobs.ErrNotFound)) // the record too
	}
	for _, link := range links {
		r := api.Open(t, http.MethodGet, link)
		is.Equal(r.Status, http.StatusNotFound) // signed links too
		is.Equal(r.Problem(t).Code, "not_found")
	}
	is.Equal(len(api.redisKeys(t, "blob:*")), 0)

	// Work queued for an erased job finds nothing to do: Begin says so.
	_, _, err = api.store.Begin(ctx, queued.ID, 3)
	is.True(errors.Is(err, jobs.ErrNotFound))
}

func TestRedeliver(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{consoleKeyA, consoleKeyB}})
	a := api.WithKey(consoleKeyA)
	ctx := context.Background()
	job := submitURL(t, a, map[string]any{"callback_url": "https://hooks.example.com/t"})
	path := func(channel string) string {
		return "/v1/thumbnails/" + job.ID + "/deliveries/" + channel + "/redeliver"
	}

	// Pending while the job runs: 409, retry later.
	r := a.Redeliver(t, job.ID, "callback")
	is.Equal(r.Status, http.StatusConflict)
	is.Equal(r.Problem(t).Code, "delivery_pending")
	is.True(r.Header.Get("Retry-After") != "")

	api.succeed(t, job.ID)
	r = a.Redeliver(t, job.ID, "callback")
	is.Equal(r.Status, http.StatusConflict) // still pending: its first attempt is queued

	// The first attempt fails for good.
	_, res, _, err := api.store.Claim(ctx, job.ID, "callback", 1)
	is.NoErr(err)
	is.Equal(res, jobs.Send)
	_, err = api.store.Record(ctx, job.ID, "callback", 1, jobs.Outcome{Final: true, Code: "callback_gone", Message: "the receiver answered 410 Gone",
		Log: jobs.LogEntry{Attempt: 1, At: time.Now(), Outcome: jobs.OutcomeFailed, StatusCode: 410}})
	is.NoErr(err)
	before := len(api.queued(t))

	r = a.Redeliver(t, job.ID, "callback")
	is.Equal(r.Status, http.StatusAccepted)
	got := r.Job(t)
	is.Equal(got.ID, job.ID)
	is.Equal(len(got.Deliveries), 1)
	d := got.Deliveries[0]
	is.Equal(d.Status, "pending") // a new series of attempts
	is.Equal(d.ErrorCode, "")
	is.Equal(d.Attempts, 1) // attempts and log go on counting
	is.Equal(len(d.Log), 1)
	queued := api.queued(t)
	is.Equal(len(queued), before+1)
	is.Equal(queued[len(queued)-1], "callback "+job.ID+" 2") // its next attempt is queued

	// Asked again while that runs: 409.
	r = a.Redeliver(t, job.ID, "callback")
	is.Equal(r.Status, http.StatusConflict)
	is.Equal(r.Problem(t).Code, "delivery_pending")

	// No such delivery, no such channel, another key's job, no such job: 404.
	for _, c := range []struct {
		who  *testapi.Client
		path string
	}{
		{a, path("email")},
		{a, path("sms")},
		{a, path("CALLBACK")},
		{api.WithKey(consoleKeyB), path("callback")},
		{a, "/v1/thumbnails/aaaaaaaaaaaaaaaaaaaaaaaaaa/deliveries/callback/redeliver"},
	} {
		r := c.who.Do(t, http.MethodPost, c.path, nil, nil)
		if r.Status != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", c.path, r.Status)
			continue
		}
		is.Equal(r.Problem(t).Code, "not_found")
	}
	is.Equal(len(api.queued(t)), before+1) // and none of them queued anything
}

func TestEventsFollowTheJob(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{consoleKeyA}, events: true})
	a := api.WithKey(consoleKeyA)
	ctx := context.Background()
	job := submitURL(t, a, map[string]any{"callback_url": "https://hooks.example.com/t"})
	const soon = 5 * time.Second

	s, r := a.Events(t, job.ID, nil)
	if s == nil {
		t.Fatalf("events: %d %s", r.Status, r.Body)
	}
	is.Equal(r.Header.Get("Content-Type"), "text/event-stream")
	is.Equal(r.Header.Get("Cache-Control"), "no-store")

	lastID := 0
	next := func(event string) testapi.SSE {
		t.Helper()
		ev := s.Next(t, soon)
		if ev.Event != event {
			t.Fatalf("event %q (%s), want %q", ev.Event, ev.Data, event)
		}
		id, err := strconv.Atoi(ev.ID)
		is.NoErr(err)
		is.True(id > lastID) // ids increase
		lastID = id
		return ev
	}

	// On connect: the current status.
	is.Equal(next("status").Job(t).Status, "queued")

	// The job runs: processing, then succeeded (no delivery event while
	// nothing was attempted).
	_, res, err := api.store.Begin(ctx, job.ID, 3)
	is.NoErr(err)
	is.Equal(res, jobs.Run)
	is.Equal(next("status").Job(t).Status, "processing")

	// A client that reconnects meanwhile gets the current status at once.
	s2, _ := a.Events(t, job.ID, header("Last-Event-ID", strconv.Itoa(lastID)))
	start := time.Now()
	ev := s2.Next(t, soon)
	is.True(time.Since(start) < time.Second+timeSlack) // at once
	is.Equal(ev.Job(t).Status, "processing")
	id2, _ := strconv.Atoi(ev.ID)
	is.True(id2 >= lastID) // no older than what the client saw
	s2.Close()

	api.finish(t, job.ID)
	succeeded := next("status").Job(t)
	is.Equal(succeeded.Status, "succeeded")
	is.True(succeeded.Result != nil)
	is.Equal(succeeded.Deliveries[0].Status, "pending")

	// A delivery attempt starts: the job's status, then the delivery.
	_, claim, _, err := api.store.Claim(ctx, job.ID, "callback", 1)
	is.NoErr(err)
	is.Equal(claim, jobs.Send)
	is.Equal(next("status").Job(t).Deliveries[0].Attempts, 1)
	d := next("delivery").Delivery(t)
	is.Equal(d.Channel, "callback")
	is.Equal(d.Attempts, 1)
	is.Equal(d.Status, "pending")

	// It is delivered: the status, then the delivery with its log.
	_, err = api.store.Record(ctx, job.ID, "callback", 1, jobs.Outcome{Delivered: true,
		Log: jobs.LogEntry{Attempt: 1, At: time.Now(), DurationMS: 12, Outcome: jobs.OutcomeDelivered, StatusCode: 204}})
	is.NoErr(err)
	is.Equal(next("status").Job(t).Deliveries[0].Status, "delivered")
	d = next("delivery").Delivery(t)
	is.Equal(d.Status, "delivered")
	is.Equal(len(d.Log), 1)
	is.Equal(d.Log[0].StatusCode, 204)

	// Nothing more can happen: the stream closes.
	is.True(s.Ends(t, soon))

	// A stream of a job that has ended for good closes after its one event.
	s3, _ := a.Events(t, job.ID, nil)
	is.Equal(s3.Next(t, soon).Job(t).Status, "succeeded")
	is.True(s3.Ends(t, soon))
}

// changeAfterGet is a store whose first read of a job is followed at once
// by a change to it (as a worker's would be), before the handler that read
// it goes on.
type changeAfterGet struct {
	Store
	once   sync.Once
	change func(id string)
}

func (s *changeAfterGet) Get(ctx context.Context, id string) (*jobs.Job, error) {
	job, err := s.Store.Get(ctx, id)
	s.once.Do(func() { s.change(id) })
	return job, err
}

// A change made between the stream's read of the job and the rest of its
// set-up reaches the stream: it does not send the stale status and then
// wait for a change that already happened.
func TestEventsSeeAChangeMadeWhileTheStreamOpens(t *testing.T) {
	is := is.New(t)
	var api *testAPI
	wrapped := &changeAfterGet{}
	api = newAPIWith(t, apiOptions{keys: []string{consoleKeyA}, events: true, wrapStore: func(s Store) Store {
		wrapped.Store = s
		return wrapped
	}})
	a := api.WithKey(consoleKeyA)
	job := submitURL(t, a, nil)
	wrapped.change = func(id string) {
		_, res, err := api.store.Begin(context.Background(), id, 3)
		is.NoErr(err)
		is.Equal(res, jobs.Run)
	}

	s, r := a.Events(t, job.ID, nil)
	if s == nil {
		t.Fatalf("events: %d %s", r.Status, r.Body)
	}
	status := s.Next(t, 5*time.Second).Job(t).Status
	if status == "queued" { // read before the change: the change must follow
		status = s.Next(t, 5*time.Second).Job(t).Status
	}
	is.Equal(status, "processing")
}

func TestEventStreamsAreLimitedPerKey(t *testing.T) {
	is := is.New(t)
	api := newAPIWith(t, apiOptions{keys: []string{consoleKeyA, consoleKeyB}, events: true})
	a, b := api.WithKey(consoleKeyA), api.WithKey(consoleKeyB)
	job := submitURL(t, a, nil)
	other := submitURL(t, a, nil)

	var open []*testapi.Stream
	for i := range MaxStreamsPerClient {
		s, r := a.Events(t, []string{job.ID, other.ID}[i%2], nil)
		if s == nil {
			t.Fatalf("stream %d: %d %s", i+1, r.Status, r.Body)
		}
		is.Equal(s.Next(t, 5*time.Second).Event, "status") // open, and registered
		open = append(open, s)
	}
	s, r := a.Events(t, job.ID, nil)
	is.True(s == nil)
	is.Equal(r.Status, http.StatusTooManyRequests) // the 11th
	is.Equal(r.Header.Get("Content-Type"), "application/problem+json")
	is.Equal(r.Problem(t).Code, "too_many_streams")
	is.True(r.Header.Get("Retry-After") != "")

	// Another key has its own ten.
	bjob := submitURL(t, b, nil)
	sb, r := b.Events(t, bjob.ID, nil)
	is.True(sb != nil)
	is.Equal(r.Status, http.StatusOK)

	// A closed stream frees its place.
	open[0].Close()
	is.True(testapi.Eventually(5*time.Second, func() bool {
		s, _ := a.Events(t, job.ID, nil)
		if s == nil {
			return false
		}
		s.Close()
		return true
	}))
}

// The limit holds across API processes: a client cannot open ten streams
// on each of them.
func TestEventStreamsAreLimitedAcrossProcesses(t *testing.T) {
	is := is.New(t)
	one := newAPIWith(t, apiOptions{keys: []string{consoleKeyA}, events: true})
	two := newAPIWith(t, apiOptions{keys: []string{consoleKeyA}, events: true, beside: one})
	a1, a2 := one.WithKey(consoleKeyA), two.WithKey(consoleKeyA)
	job := submitURL(t, a1, nil)
	for i := range MaxStreamsPerClient {
		s, r := []*testapi.Client{a1, a2}[i%2].Events(t, job.ID, nil)
		if s == nil {
			t.Fatalf("stream %d: %d %s", i+1, r.Status, r.Body)
		}
		is.Equal(s.Next(t, 5*time.Second).Event, "status")
		defer s.Close()
	}
	for _, c := range []*testapi.Client{a1, a2} {
		s, r := c.Events(t, job.ID, nil)
		is.True(s == nil)
		is.Equal(r.Status, http.StatusTooManyRequests) // on either process
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
