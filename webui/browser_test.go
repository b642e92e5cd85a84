package webui

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gocraft/work"

	"github.com/thumbnailed/thumbnailed/internal/testbrowser"
)

// TestBrowserShowsQueuesRetriesAndDeadJobs logs into the UI with a real
// headless Chromium, reads the queue, retry and dead pages, and retries the
// dead job with the UI's own button, which the same-origin check must let
// through.
func TestBrowserShowsQueuesRetriesAndDeadJobs(t *testing.T) {
	execPath := testbrowser.Need(t)
	pool, ns := testRedis(t)
	failedJobs(t, ns, pool, "make_thumbnail", "fetch_source", "decode_image")
	base := startUI(t, testPassword, ns, pool)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bctx, stop, err := testbrowser.Start(ctx, execPath, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	// pageShows waits until the rendered page shows every one of texts.
	pageShows := func(texts ...string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
			for {
				body, err := chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)(ctx, tgt)
				if err != nil {
					return err
				}
				missing := ""
				for _, s := range texts {
					if !strings.Contains(body, s) {
						missing = s
						break
					}
				}
				if missing == "" {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("the page never showed %q; it shows:\n%s", missing, body)
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Without credentials the browser gets the 401 and nothing else: headless
	// Chromium, having no one to ask for a password, fails the navigation.
	{
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		err := chromedp.Do(sctx, chromedp.Navigate(base+"/"), pageShows("authentication required"))
		cancel()
		if err != nil && !strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS") {
			t.Fatalf("open the UI without a password: %v", err)
		}
	}

	// Modern Chromium ignores user:password@ in URLs; send the header instead.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+testPassword))
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}

	step("queues page",
		chromedp.Navigate(base+"/#/queues"),
		pageShows("Queues", "make_thumbnail"))

	step("retry jobs page",
		chromedp.Navigate(base+"/#/retry_jobs"),
		pageShows("Retry Jobs", "1 job(s) scheduled to be retried", "fetch_source", "source_unreachable"))

	step("dead jobs page",
		chromedp.Navigate(base+"/#/dead_jobs"),
		pageShows("Dead Jobs", "1 job(s) are dead", "decode_image", "corrupt_image"))

	// The UI's own POST (a fetch from the same origin) passes the CSRF check.
	step("retry the dead job with the UI's button",
		chromedp.Click(chromedp.Search(`//button[text()="Retry All Jobs"]`)),
		pageShows("0 job(s) are dead"))

	_, dead, err := work.NewClient(ns, pool).DeadJobs(1)
	if err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Fatalf("after Retry All Jobs, %d job(s) are still dead", dead)
	}
}
