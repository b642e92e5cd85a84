package web

// The try-it page in a real headless Chromium, against the real service: the
// thumbnailed binary, built once, run with role all (embedded Redis) on a
// free port. Screenshots go to $THUMBNAILED_TEST_SCREENSHOT_DIR when it is set (to
// keep them), otherwise to a temporary directory; their paths are logged.

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bbrks/go-blurhash"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testbrowser"
	"github.com/thumbnailed/thumbnailed/internal/testlog"
)

// The images the tests upload or serve.
const (
	photo      = "../thumbnail/testdata/photos/Storm.jpg"
	smallPhoto = "../thumbnail/testdata/photos/canon5d-adobergb-400x400.jpg"
	testKey    = "try-it-page-test-key-0123456789"
)

// scratch is the package's temporary directory: the binary, Chromium's profile.
var scratch struct {
	once sync.Once
	dir  string
}

func scratchDir() string {
	scratch.once.Do(func() {
		dir, err := os.MkdirTemp("", "thumbnailed-web-test-")
		if err != nil {
			panic(err)
		}
		scratch.dir = dir
	})
	return scratch.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.done != nil {
		<-binary.done // before its directory goes
	}
	if shared.stop != nil {
		shared.stop()
	}
	if scratch.dir != "" {
		os.RemoveAll(scratch.dir)
	}
	os.Exit(code)
}

var binary struct {
	once sync.Once
	done chan struct{}
	path string
	err  error
}

// buildService starts building the service's binary, once for the whole
// package, in the background: Chromium starts meanwhile.
func buildService() {
	binary.once.Do(func() {
		binary.done = make(chan struct{})
		binary.path = filepath.Join(scratchDir(), "thumbnailed")
		go func() {
			defer close(binary.done)
			cmd := exec.Command("go", "build", "-o", binary.path, "./cmd/thumbnailed")
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				binary.err = fmt.Errorf("go build ./cmd/thumbnailed: %v\n%s", err, out)
			}
		}()
	})
}

// thumbnailed is the path of the service's binary, built.
func thumbnailed(t *testing.T) string {
	t.Helper()
	buildService()
	<-binary.done
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// startService runs `thumbnailed all` with env on a free loopback port and
// returns its base URL; it stops when the test ends.
func startService(t *testing.T, env ...string) string {
	t.Helper()
	bin := thumbnailed(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "all")
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"THUMBNAILED_ADDR=" + addr,
		"THUMBNAILED_ALLOW_PRIVATE_NETWORKS=true",
		"THUMBNAILED_OUTBOX_DIR=" + t.TempDir(),
		"THUMBNAILED_WORKER_CONCURRENCY=2",
	}, env...)
	out := &testlog.Buffer{} // written by the process, read by the test
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("thumbnailed output:\n%s", out)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-exited:
			t.Fatalf("thumbnailed exited at start:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("thumbnailed did not answer /healthz within 20 s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shared is the one headless Chromium of the package's tests, started by
// the first test that needs it and stopped by TestMain.
var shared struct {
	once sync.Once
	ctx  context.Context
	stop context.CancelFunc
	err  error
}

// browser returns the context of the shared Chromium.
func browser(t *testing.T) context.Context {
	t.Helper()
	execPath := testbrowser.Need(t)
	shared.once.Do(func() {
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "chromium: "+format+"\n", args...) }
		shared.ctx, shared.stop, shared.err = testbrowser.Start(context.Background(), execPath, filepath.Join(scratchDir(), "chromium"), logf,
			chromedp.WindowSize(1280, 900), chromedp.Flag("hide-scrollbars", true))
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.ctx
}

// tab is one page of the browser, open on base's try-it page, for one test.
type tab struct {
	t   *testing.T
	ctx context.Context
}

// watchPage runs in the page before its own script: it records every
// Content-Security-Policy violation and every status word the page shows.
const watchPage = `
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', e =>
	window.cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));
window.seenStatus = [];
document.addEventListener('DOMContentLoaded', () => {
	const s = document.getElementById('status');
	new MutationObserver(() => {
		const w = s.textContent;
		if (w && window.seenStatus[window.seenStatus.length - 1] !== w) window.seenStatus.push(w);
	}).observe(s, {childList: true, characterData: true, subtree: true});
});`

func openTab(t *testing.T, bctx context.Context, base string) *tab {
	t.Helper()
	ctx, cancelTab := chromedp.NewContext(bctx)
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watchPage}); err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
	if err != nil {
		t.Fatalf("open %s/: %v", base, err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("GET %s/ answered %d: the service does not serve the try-it page (server.Deps.Page, routes GET / and /assets/*)", base, res.Status)
	}
	tb.do("the page is ready", chromedp.WaitVisible(chromedp.ID("submit")))
	// Runs before the tab closes: nothing the page did broke its own policy.
	t.Cleanup(func() {
		if v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.cspViolations`)); err != nil {
			t.Errorf("read the CSP violations: %v", err)
		} else if len(v) > 0 {
			t.Errorf("the page broke its Content-Security-Policy: %v", v)
		}
	})
	return tb
}

func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v\nthe page shows:\n%s", what, err, tb.text())
	}
}

func (tb *tab) eval(js string) {
	tb.t.Helper()
	tb.do("run "+js, chromedp.Evaluate[chromedp.Void](js))
}

// value evaluates js in the page and decodes its result into T.
func value[T any](tb *tab, js string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// text is what the page shows, for failure messages.
func (tb *tab) text() string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tb.ctx), 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(could not read the page: " + err.Error() + ")"
	}
	return s
}

// waitFor waits until the JavaScript condition cond is true in the page.
func (tb *tab) waitFor(what, cond string, timeout time.Duration) {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) || tb.ctx.Err() != nil {
			tb.t.Fatalf("waited %v for %s (%s): err %v; the page shows:\n%s", timeout, what, cond, err, tb.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tb *tab) status() string {
	tb.t.Helper()
	return value[string](tb, `document.getElementById('status').textContent`)
}

// screenshot saves a full-page PNG as name.png and logs its path.
func (tb *tab) screenshot(name string) string {
	tb.t.Helper()
	dir := os.Getenv("THUMBNAILED_TEST_SCREENSHOT_DIR")
	if dir == "" {
		dir = tb.t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	// Wait for the images and the fonts, then capture the whole page.
	tb.waitFor("images loaded", `[...document.images].every(i => i.complete)`, 10*time.Second)
	// From the top: Chromium leaves text out of a capture beyond the
	// viewport of a scrolled page.
	tb.do("scroll to the top", chromedp.Evaluate[chromedp.Void](
		`window.scrollTo(0, 0), new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))`, chromedp.EvalAwaitPromise))
	png, err := chromedp.Run(tb.ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		m, err := cdp.Call(ctx, t, page.GetLayoutMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		w, h := m.CSSLayoutViewport.ClientWidth, m.CSSContentSize.Height
		r, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format:                page.CaptureScreenshotFormatPng,
			CaptureBeyondViewport: new(true),
			FromSurface:           new(true),
			Clip:                  &page.Viewport{X: 0, Y: 0, Width: float64(w), Height: math.Ceil(h), Scale: 1},
		})
		if err != nil {
			return nil, err
		}
		return r.Data, nil
	})
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot: %s", path)
	return path
}

// noOverflow checks that nothing makes the page wider than the window.
func (tb *tab) noOverflow() {
	tb.t.Helper()
	w := value[[]int](tb, `[document.documentElement.scrollWidth, window.innerWidth]`)
	if w[0] > w[1] {
		tb.t.Errorf("the page is %d px wide in a %d px window: it scrolls sideways", w[0], w[1])
	}
}

// fitsTheWindow checks that nothing makes the page wider than the window,
// and saves a screenshot as name.
func (tb *tab) fitsTheWindow(name string) {
	tb.t.Helper()
	tb.noOverflow()
	tb.screenshot(name)
}

// fits is fitsTheWindow at the window's width, saved as wide, then at a
// phone's (390 px), saved as narrow.
func (tb *tab) fits(wide, narrow string) {
	tb.t.Helper()
	tb.fitsTheWindow(wide)
	tb.do("phone width", chromedp.EmulateViewport(390, 844))
	tb.fitsTheWindow(narrow)
}

// job is what the API says of a job (the part the tests read).
type job struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Request struct {
		Gravity string `json:"gravity"`
		Focal   *struct {
			X float64 `json:"x"`
			Y float64 `json:"y"`
		} `json:"focal"`
		Outputs []struct {
			Name   string `json:"name"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
		} `json:"outputs"`
	} `json:"request"`
	Result *struct {
		Outputs []struct {
			Name   string `json:"name"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
			Bytes  int    `json:"bytes"`
			URL    string `json:"url"`
		} `json:"outputs"`
		Placeholder *struct {
			BlurHash      string `json:"blurhash"`
			DominantColor string `json:"dominant_color"`
		} `json:"placeholder"`
	} `json:"result"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// apiJob reads the job the page shows from the API itself.
func (tb *tab) apiJob(base, key string) job {
	tb.t.Helper()
	id := value[string](tb, `document.getElementById('job-id').textContent`)
	if id == "" {
		tb.t.Fatalf("the page shows no job id; it shows:\n%s", tb.text())
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/thumbnails/"+id, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer res.Body.Close()
	var j job
	if res.StatusCode != http.StatusOK {
		tb.t.Fatalf("GET /v1/thumbnails/%s: %d", id, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&j); err != nil {
		tb.t.Fatal(err)
	}
	return j
}

// shown is one output image as the page renders it.
type shown struct {
	Name          string `json:"name"`
	NaturalWidth  int    `json:"naturalWidth"`
	NaturalHeight int    `json:"naturalHeight"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	Caption       string `json:"caption"`
}

// outputsShown waits for the outputs' images to load and describes them.
func (tb *tab) outputsShown() []shown {
	tb.t.Helper()
	tb.waitFor("every output image loaded",
		`document.querySelectorAll('#outputs img').length > 0 && [...document.querySelectorAll('#outputs img')].every(i => i.complete && i.naturalWidth > 0)`,
		15*time.Second)
	return value[[]shown](tb, `[...document.querySelectorAll('#outputs img')].map(i => ({
		name: i.dataset.name, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
		width: Math.round(i.getBoundingClientRect().width), height: Math.round(i.getBoundingClientRect().height),
		caption: i.closest('figure').querySelector('figcaption').textContent}))`)
}

// imageServer serves photo on loopback at /photo.jpg (after release is
// closed, when it is not nil) and 404 elsewhere.
func imageServer(t *testing.T, release <-chan struct{}) *httptest.Server {
	t.Helper()
	body, err := os.ReadFile(photo)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/photo.jpg" {
			http.NotFound(w, r)
			return
		}
		if release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// receiver answers callbacks with 200 and counts them.
func receiver(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("thanks"))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func absolute(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBrowserTryIt drives the open service's page as a person would.
func TestBrowserTryIt(t *testing.T) {
	testbrowser.Need(t)
	buildService()
	bctx := browser(t)
	base := startService(t)

	t.Run("the empty page", func(t *testing.T) {
		is := is.New(t)
		tb := openTab(t, bctx, base)
		// Every control has a label.
		unlabelled := value[[]string](tb, `[...document.querySelectorAll('input, select, textarea')]
			.filter(e => e.type !== 'hidden' && e.labels.length === 0).map(e => e.id || e.name || e.outerHTML)`)
		is.Equal(len(unlabelled), 0)                                          // controls without a label
		is.True(value[bool](tb, `document.getElementById('key-box').hidden`)) // no key field before a 401
		// The policy is in force: an inline script is refused (and
		// reported), so the page's own code must have none.
		tb.eval(`document.body.append(Object.assign(document.createElement('script'), {textContent: 'window.inlineRan = true'}))`)
		tb.waitFor("the violation report", `window.cspViolations.length === 1`, 5*time.Second)
		is.True(!value[bool](tb, `!!window.inlineRan`)) // the inline script did not run
		tb.eval(`window.cspViolations.length = 0`)
		tb.fits("01-empty-page", "02-empty-page-390px")
	})

	t.Run("upload with two sizes shows every output at its real size", func(t *testing.T) {
		is := is.New(t)
		tb := openTab(t, bctx, base)
		callback, calls := receiver(t)
		tb.do("fill the form",
			chromedp.SetUploadFiles(chromedp.ID("file"), []string{absolute(t, photo)}),
			chromedp.Click(chromedp.CSS(`input[name=size][value="128x128"]`)), // 256 is checked already
			chromedp.SendKeys(chromedp.ID("email"), "me@example.com"),
			chromedp.SendKeys(chromedp.ID("callback"), callback.URL+"/hook"),
		)
		tb.waitFor("the preview of the chosen file", `document.getElementById('preview').naturalWidth > 0`, 5*time.Second)
		tb.do("submit", chromedp.Click(chromedp.ID("submit")))
		tb.waitFor("the job succeeded", `document.getElementById('status').textContent === 'succeeded'`, 30*time.Second)

		j := tb.apiJob(base, "")
		is.Equal(j.Status, "succeeded")
		is.Equal(len(j.Request.Outputs), 2) // the page asked for two outputs
		shownImgs := tb.outputsShown()
		is.True(j.Result != nil)
		// The API contract: a job makes every output it was asked for.
		is.Equal(len(j.Result.Outputs), len(j.Request.Outputs)) // outputs made == outputs asked
		is.Equal(len(shownImgs), len(j.Result.Outputs))         // every output is shown
		for i, o := range j.Result.Outputs {
			if i >= len(shownImgs) {
				break
			}
			s := shownImgs[i]
			is.Equal(s.Name, o.Name)
			is.Equal(s.NaturalWidth, o.Width)   // the image is the size the API says
			is.Equal(s.NaturalHeight, o.Height) // the image is the size the API says
			is.Equal(s.Width, o.Width)          // and shown at that size
			is.Equal(s.Height, o.Height)
			shows(t, s.Caption, fmt.Sprintf("%d \u00d7 %d px", o.Width, o.Height))
			shows(t, s.Caption, fmt.Sprintf("%s bytes", commas(o.Bytes)))
		}
		if p := j.Result.Placeholder; p != nil && p.BlurHash != "" {
			is.True(value[bool](tb, `!document.getElementById('placeholder').hidden`))
			is.Equal(value[string](tb, `document.getElementById('dominant').textContent`), p.DominantColor)
			is.Equal(value[string](tb, `document.getElementById('blurhash-text').textContent`), p.BlurHash)
			is.Equal(value[int](tb, `document.getElementById('blurhash').getContext('2d').getImageData(0, 0, 1, 1).data[3]`), 255) // the blurhash is painted
			is.Equal(value[int](tb, `document.querySelectorAll('#outputs .frame canvas').length`), len(j.Result.Outputs))          // under every image while it loads
		}
		// The pushes and their attempt logs.
		tb.waitFor("both deliveries delivered",
			`document.querySelectorAll('#deliveries .delivery').length === 2 && [...document.querySelectorAll('#deliveries .delivery')].every(d => d.querySelector('.status').textContent === 'delivered' && d.querySelector('.log li'))`,
			20*time.Second)
		is.True(calls.Load() >= 1) // the callback really came
		curl := value[string](tb, `document.getElementById('curl').textContent`)
		shows(t, curl, "-F 'image=@Storm.jpg'")
		shows(t, curl, `-F 'outputs=[{"name":"128x128","width":128,"height":128},{"name":"256x256","width":256,"height":256}]'`)
		is.True(!strings.Contains(curl, "Authorization")) // the open service needs no key
		tb.fits("03-succeeded", "04-succeeded-390px")
	})

	t.Run("a URL job changes status live", func(t *testing.T) {
		is := is.New(t)
		release := make(chan struct{})
		var once sync.Once
		open := func() { once.Do(func() { close(release) }) }
		t.Cleanup(open)
		src := imageServer(t, release)
		tb := openTab(t, bctx, base)
		tb.do("fill the form", chromedp.SendKeys(chromedp.ID("url"), src.URL+"/photo.jpg"))
		tb.do("submit", chromedp.Click(chromedp.ID("submit")))
		// The source answers only once the page has shown processing:
		// what comes next can only come from the events stream.
		tb.waitFor("processing", `document.getElementById('status').textContent === 'processing'`, 15*time.Second)
		open()
		tb.waitFor("succeeded", `document.getElementById('status').textContent === 'succeeded'`, 30*time.Second)
		seen := value[[]string](tb, `window.seenStatus`)
		is.Equal(seen, []string{"queued", "processing", "succeeded"}) // the status words, in order, as the API gives them
		curl := value[string](tb, `document.getElementById('curl').textContent`)
		shows(t, curl, `"url":"`+src.URL+`/photo.jpg"`)
		shows(t, curl, "-H 'Content-Type: application/json'")
		tb.outputsShown()
	})

	t.Run("a text file shows the 415 with its code", func(t *testing.T) {
		is := is.New(t)
		tb := openTab(t, bctx, base)
		notes := filepath.Join(t.TempDir(), "notes.txt")
		if err := os.WriteFile(notes, []byte("these are notes, not a picture\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tb.do("choose the text file", chromedp.SetUploadFiles(chromedp.ID("file"), []string{notes}))
		tb.do("submit", chromedp.Click(chromedp.ID("submit")))
		tb.waitFor("the problem", `!document.getElementById('problem').hidden`, 15*time.Second)
		problem := value[string](tb, `document.getElementById('problem').innerText`)
		shows(t, problem, "415")
		shows(t, problem, "unsupported_format")
		shows(t, problem, "text file")                                    // the API's detail
		is.True(value[bool](tb, `document.getElementById('job').hidden`)) // no job was made
		tb.fitsTheWindow("05-rejected-415")
	})

	t.Run("a failed job shows its code and message", func(t *testing.T) {
		is := is.New(t)
		src := imageServer(t, nil)
		tb := openTab(t, bctx, base)
		tb.do("fill the form", chromedp.SendKeys(chromedp.ID("url"), src.URL+"/gone.jpg"))
		tb.do("submit", chromedp.Click(chromedp.ID("submit")))
		tb.waitFor("failed", `document.getElementById('status').textContent === 'failed'`, 30*time.Second)
		j := tb.apiJob(base, "")
		is.True(j.Error != nil)
		shownErr := value[string](tb, `document.getElementById('job-error').innerText`)
		shows(t, shownErr, j.Error.Code)
		shows(t, shownErr, j.Error.Message)
		tb.fits("06-failed-job", "07-failed-job-390px")
	})

	t.Run("a click on the preview sends the focal point", func(t *testing.T) {
		is := is.New(t)
		tb := openTab(t, bctx, base)
		tb.do("choose a file and one size",
			chromedp.SetUploadFiles(chromedp.ID("file"), []string{absolute(t, photo)}),
			chromedp.SetValue(chromedp.ID("fit"), "cover"),
		)
		tb.waitFor("the preview", `document.getElementById('preview').naturalWidth > 0`, 5*time.Second)
		tb.do("scroll to it", chromedp.ScrollIntoView(chromedp.ID("preview")))
		r := value[[]float64](tb, `(() => { const r = document.getElementById('preview').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
		tb.do("click at a quarter across, three quarters down", chromedp.MouseClickXY(r[0]+0.25*r[2], r[1]+0.75*r[3]))
		is.Equal(value[string](tb, `document.getElementById('gravity').value`), "focal")
		tb.do("submit", chromedp.Click(chromedp.ID("submit")))
		tb.waitFor("the job succeeded", `document.getElementById('status').textContent === 'succeeded'`, 30*time.Second)

		// What the API received, and what the page says it sent.
		j := tb.apiJob(base, "")
		is.True(j.Request.Focal != nil)
		is.True(math.Abs(j.Request.Focal.X-0.25) < 0.01) // x as clicked
		is.True(math.Abs(j.Request.Focal.Y-0.75) < 0.01) // y as clicked
		is.Equal(j.Request.Gravity, "focal")
		curl := value[string](tb, `document.getElementById('curl').textContent`)
		shows(t, curl, fmt.Sprintf(`-F 'focal={"x":%g,"y":%g}'`, j.Request.Focal.X, j.Request.Focal.Y))
		shows(t, curl, "-F 'gravity=focal'")
		for _, s := range tb.outputsShown() {
			is.Equal(s.NaturalWidth, 256) // cover makes exactly the box
			is.Equal(s.NaturalHeight, 256)
		}
	})

	t.Run("the blurhash decoder agrees with the Go one", func(t *testing.T) {
		is := is.New(t)
		tb := openTab(t, bctx, base)
		for _, hash := range []string{"LEHV6nWB2yk8pyo0adR*.7kCMdnj", "LGF5]+Yk^6#M@-5c,1J5@[or[Q6."} {
			got := value[[]int](tb, fmt.Sprintf(`Array.from(window.thumbnailed.decodeBlurhash(%q, 8, 6))`, hash))
			want, err := blurhash.Decode(hash, 8, 6, 1)
			is.NoErr(err)
			is.Equal(len(got), 8*6*4)
			worst := 0
			for y := range 6 {
				for x := range 8 {
					c := color.NRGBAModel.Convert(want.At(x, y)).(color.NRGBA)
					p := got[4*(y*8+x):]
					for k, v := range []uint8{c.R, c.G, c.B} {
						worst = max(worst, abs(p[k]-int(v)))
					}
				}
			}
			is.True(worst <= 2) // the JS decoder and go-blurhash agree to rounding
		}
	})
}

// TestBrowserAPIKey: on a service with keys, the page asks for one after the
// 401, keeps it in sessionStorage only, and the job goes through with it.
func TestBrowserAPIKey(t *testing.T) {
	is := is.New(t)
	testbrowser.Need(t)
	buildService()
	bctx := browser(t)
	base := startService(t, "THUMBNAILED_API_KEYS="+testKey)
	tb := openTab(t, bctx, base)

	is.True(value[bool](tb, `document.getElementById('key-box').hidden`)) // no key field before a 401
	tb.do("choose a file", chromedp.SetUploadFiles(chromedp.ID("file"), []string{absolute(t, smallPhoto)}))
	tb.do("submit without a key", chromedp.Click(chromedp.ID("submit")))
	tb.waitFor("the key field", `!document.getElementById('key-box').hidden`, 15*time.Second)
	is.True(strings.Contains(value[string](tb, `document.getElementById('key-why').textContent`), "401"))
	is.True(value[bool](tb, `document.activeElement === document.getElementById('key')`)) // the field has the focus
	tb.screenshot("08-key-asked")

	tb.do("give the key", chromedp.SendKeys(chromedp.ID("key"), testKey), chromedp.Click(chromedp.ID("key-use")))
	tb.waitFor("the job succeeded", `document.getElementById('status').textContent === 'succeeded'`, 30*time.Second)
	j := tb.apiJob(base, testKey)
	is.Equal(j.Status, "succeeded")
	tb.outputsShown() // the signed links load without a key

	is.Equal(value[string](tb, `sessionStorage.getItem('thumbnailed.apiKey')`), testKey)
	is.Equal(value[int](tb, `localStorage.length`), 0)                                           // nothing in localStorage
	is.True(!strings.Contains(value[string](tb, `document.cookie`), testKey))                    // nor in a cookie
	is.True(!strings.Contains(value[string](tb, `document.documentElement.outerHTML`), testKey)) // nor left in the page
	curl := value[string](tb, `document.getElementById('curl').textContent`)
	shows(t, curl, `-H "Authorization: Bearer $THUMBNAILED_KEY"`) // the key elided
	is.True(!strings.Contains(curl, testKey))
	// No cookie at all for the page's origin, HttpOnly ones included.
	cookies, err := chromedp.Call(tb.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	is.NoErr(err)
	is.Equal(len(cookies.Cookies), 0)
}

// shows fails the test unless text contains want.
func shows(t *testing.T, text, want string) {
	t.Helper()
	if !strings.Contains(text, want) {
		t.Fatalf("want %q in:\n%s", want, text)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// commas writes n as the page does: 10342 -> "10,342".
func commas(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
