// Package testbrowser finds and starts the headless Chromium that browser
// tests drive, the same way for every package that has them.
package testbrowser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/thumbnailed/thumbnailed/internal/testci"
)

// path finds a Chromium to drive, or "".
func path() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// Need returns the path of a Chromium to drive. Without one it skips the
// test, or fails it in CI, where one must be installed.
func Need(t testing.TB) string {
	t.Helper()
	p := path()
	if p == "" {
		testci.Missing(t, "no Chromium was found (looked for chromium, chromium-browser, google-chrome on PATH and /usr/bin/chromium): apt-get install chromium to run this test")
	}
	return p
}

// Start starts the headless Chromium at execPath, under parent, with its
// profile in dir and the flags extra on top of the tests' own, and returns
// the context of its browser and what stops it. The browser runs at once,
// with no deadline of its own: steps set theirs. logf gets the errors
// Chromium reports.
func Start(parent context.Context, execPath, dir string, logf func(string, ...any), extra ...chromedp.ExecAllocatorOption) (context.Context, context.CancelFunc, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(dir),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(parent, append(opts, extra...)...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(logf))
	stop := func() {
		cancelBrowser()
		cancelAlloc()
	}
	if err := chromedp.Do(bctx); err != nil {
		stop()
		return nil, nil, fmt.Errorf("start Chromium %s: %w", execPath, err)
	}
	return bctx, stop, nil
}
