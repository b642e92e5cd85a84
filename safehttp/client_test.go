package safehttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testnet"
)

// The servers in these tests all listen on loopback. To tell "the internet"
// from "our own network", 127.0.0.2 is declared public (Options.publicNets)
// while 127.0.0.1 stays forbidden.
var testPublicNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}

// stubResolver answers from a map, and can change its answers between
// lookups (to play DNS rebinding).
type stubResolver struct {
	mu      sync.Mutex
	answers map[string][]string // each lookup takes the next answer; the last one sticks
	lookups map[string]int
	err     error
}

func newStubResolver(answers map[string]string) *stubResolver {
	r := &stubResolver{answers: map[string][]string{}, lookups: map[string]int{}}
	for host, ip := range answers {
		r.answers[host] = []string{ip}
	}
	return r
}

func (r *stubResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := r.lookups[host]
	r.lookups[host]++
	ip := seq[min(n, len(seq)-1)]
	var out []net.IPAddr
	for _, s := range strings.Split(ip, ",") {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

func serveBytes(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
}

func redirectTo(loc string, code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, loc, code) }
}

func isForbidden(err error) bool {
	var fe *ForbiddenError
	return errors.As(err, &fe)
}

func TestFetchOfANameThatResolvesToAForbiddenAddressMakesNoConnection(t *testing.T) {
	for _, answer := range []string{"127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:127.0.0.1", "8.8.8.8,127.0.0.1"} {
		t.Run(answer, func(t *testing.T) {
			is := is.New(t)
			target := testnet.Serve(t, "127.0.0.1", serveBytes("secret"))
			c := New(Options{Resolver: newStubResolver(map[string]string{"images.example.com": answer})})

			_, err := c.Fetch(context.Background(), "http://images.example.com:"+target.Port()+"/cat.jpg")

			var fe *ForbiddenError
			is.True(errors.As(err, &fe)) // refused with *ForbiddenError
			is.Equal(fe.Host, "images.example.com")
			is.True(fe.IP != nil)
			is.True(strings.Contains(fe.Error(), `(of "images.example.com")`))
			is.Equal(target.Requests(), int64(0)) // no request reached the server
		})
	}
}

func TestFetchResolvesNamesThroughTheResolverAndDialsTheResolvedAddress(t *testing.T) {
	is := is.New(t)
	var gotHost, gotUA string
	src := testnet.Serve(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotUA = r.Host, r.UserAgent()
		io.WriteString(w, "image bytes")
	})
	c := New(Options{publicNets: testPublicNets, Resolver: newStubResolver(map[string]string{"images.example.com": "127.0.0.2"})})

	body, err := c.Fetch(context.Background(), "http://images.example.com:"+src.Port()+"/cat.jpg")

	is.NoErr(err)
	is.Equal(string(body), "image bytes")
	is.Equal(gotHost, "images.example.com:"+src.Port()) // the name, not the IP, goes in Host
	is.Equal(gotUA, DefaultUserAgent)
}

func TestFetchRebindingNameIsCheckedOnEveryConnection(t *testing.T) {
	is := is.New(t)
	src := testnet.Serve(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // so the next fetch dials again
		io.WriteString(w, "ok")
	})
	res := newStubResolver(nil)
	res.answers["rebind.example.com"] = []string{"127.0.0.2", "127.0.0.1"}
	c := New(Options{publicNets: testPublicNets, Resolver: res})
	u := "http://rebind.example.com:" + src.Port() + "/"

	_, err := c.Fetch(context.Background(), u)
	is.NoErr(err) // first answer is public
	_, err = c.Fetch(context.Background(), u)
	is.True(isForbidden(err)) // second answer is loopback
	is.Equal(src.Requests(), int64(1))
}

func TestFetchRedirects(t *testing.T) {
	t.Run("to a forbidden IP literal is refused before connecting", func(t *testing.T) {
		is := is.New(t)
		b := testnet.Serve(t, "127.0.0.1", serveBytes("secret"))
		a := testnet.Serve(t, "127.0.0.2", redirectTo(b.URL+"/admin", http.StatusFound))
		c := New(Options{publicNets: testPublicNets})

		_, err := c.Fetch(context.Background(), a.URL+"/cat.jpg")

		is.True(isForbidden(err))
		var ue *url.Error
		is.True(errors.As(err, &ue)) // comes through url.Error
		is.Equal(a.Requests(), int64(1))
		is.Equal(b.Requests(), int64(0))
	})

	t.Run("to a name that resolves to a forbidden address is refused at dial time", func(t *testing.T) {
		is := is.New(t)
		b := testnet.Serve(t, "127.0.0.1", serveBytes("secret"))
		a := testnet.Serve(t, "127.0.0.2", redirectTo("http://internal.example.com:"+b.Port()+"/admin", http.StatusMovedPermanently))
		c := New(Options{publicNets: testPublicNets, Resolver: newStubResolver(map[string]string{"internal.example.com": "127.0.0.1"})})

		_, err := c.Fetch(context.Background(), a.URL+"/cat.jpg")

		var fe *ForbiddenError
		is.True(errors.As(err, &fe))
		is.Equal(fe.Host, "internal.example.com")
		is.Equal(fe.IP.String(), "127.0.0.1")
		is.Equal(b.Requests(), int64(0))
	})

	t.Run("to a scheme other than http(s) is refused", func(t *testing.T) {
		for _, loc := range []string{"ftp://example.com/cat.jpg", "file:///etc/passwd", "gopher://127.0.0.2:70/"} {
			is := is.New(t)
			a := testnet.Serve(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", loc)
				w.WriteHeader(http.StatusFound)
			})
			c := New(Options{publicNets: testPublicNets})

			_, err := c.Fetch(context.Background(), a.URL)

			is.True(isForbidden(err))
			is.True(strings.Contains(err.Error(), "only http and https"))
		}
	})

	chain := func(t *testing.T) *testnet.Server {
		// /hop/N redirects to /hop/N-1; /hop/0 is the image.
		return testnet.Serve(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
			if n == 0 {
				io.WriteString(w, "image")
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
		})
	}

	t.Run("five are followed", func(t *testing.T) {
		is := is.New(t)
		s := chain(t)
		body, err := New(Options{AllowPrivate: true}).Fetch(context.Background(), s.URL+"/hop/5")
		is.NoErr(err)
		is.Equal(string(body), "image")
		is.Equal(s.Requests(), int64(6))
	})

	t.Run("the sixth is refused", func(t *testing.T) {
		is := is.New(t)
		s := chain(t)
		_, err := New(Options{AllowPrivate: true}).Fetch(context.Background(), s.URL+"/hop/6")
		is.True(errors.Is(err, ErrTooManyRedirects))
		is.Equal(s.Requests(), int64(6))
	})

	t.Run("MaxRedirects is honoured, negative means none", func(t *testing.T) {
		is := is.New(t)
		s := chain(t)
		_, err := New(Options{AllowPrivate: true, MaxRedirects: 2}).Fetch(context.Background(), s.URL+"/hop/3")
		is.True(errors.Is(err, ErrTooManyRedirects))
		_, err = New(Options{AllowPrivate: true, MaxRedirects: -1}).Fetch(context.Background(), s.URL+"/hop/1")
		is.True(errors.Is(err, ErrTooManyRedirects))
	})
}

// countingTransport counts the response body bytes the client reads.
type countingTransport struct {
	next http.RoundTripper
	read atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if resp != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &t.read}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func countReads(c *Client) *countingTransport {
	ct := &countingTransport{next: c.fetchClient.Transport}
	c.fetchClient.Transport = ct
	return ct
}

func TestFetchBodyLimit(t *testing.T) {
	const limit = 1 << 20

	t.Run("a streamed body is cut off just past the limit", func(t *testing.T) {
		is := is.New(t)
		written := make(chan int64, 1)
		s := testnet.Serve(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			var n int64
			for n < 30<<20 { // 30 MB, no Content-Length
				m, err := w.Write(chunk)
				n += int64(m)
				if err != nil {
					break
				}
				w.(http.Flusher).Flush()
			}
			written <- n
		})
		c := New(Options{AllowPrivate: true, MaxBytes: limit})
		reads := countReads(c)

		body, err := c.Fetch(context.Background(), s.URL)

		var tl *TooLargeError
		is.True(errors.As(err, &tl))
		is.Equal(tl.Limit, int64(limit))
		is.Equal(err.Error(), "the source is larger than the 1048576-byte limit")
		is.Equal(body, nil)
		is.True(reads.read.Load() <= limit+64<<10) // read little past the limit
		select {
		case n := <-written:
			is.True(n < 30<<20) // the server could not send it all: we hung up
		case <-time.After(10 * time.Second):
			t.Fatal("the server kept writing after the client gave up")
		}
	})

	t.Run("a Content-Length above the limit is refused before reading", func(t *testing.T) {
		is := is.New(t)
		s := testnet.Serve(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(2*limit))
			w.Write(make([]byte, 2*limit))
		})
		c := New(Options{AllowPrivate: true, MaxBytes: limit})
		reads := countReads(c)

		_, err := c.Fetch(context.Background(), s.URL)

		var tl *TooLargeError
		is.True(errors.As(err, &tl))
		is.Equal(reads.read.Load(), int64(0))
	})

	t.Run("a body of exactly the limit is fine", func(t *testing.T) {
		is := is.New(t)
		s := testnet.Serve(t, "127.0.0.1", serveBytes(strings.Repeat("y", limit)))
		body, err := New(Options{AllowPrivate: true, MaxBytes: limit}).Fetch(context.Background(), s.URL)
		is.NoErr(err)
		is.Equal(len(body), limit)
	})
}

func TestReadAtMostStopsOneBytePastTheLimit(t *testing.T) {
	is := is.New(t)
	src := &countingBody{ReadCloser: io.NopCloser(strings.NewReader(strings.Repeat("z", 1000))), n: new(atomic.Int64)}
	_, err := readAtMost(src, 100, nil, -1)
	var tl *TooLargeError
	is.True(errors.As(err, &tl))
	is.Equal(src.n.Load(), int64(101))
}

func TestFetchIntoReusesTheBufferItIsGiven(t *testing.T) {
	is := is.New(t)
	body := strings.Repeat("x", 50_000)
	s := testnet.Serve(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body)
	})
	c := New(Options{AllowPrivate: true})

	buf := make([]byte, 10, 64<<10) // what it holds is overwritten
	got, err := c.FetchInto(context.Background(), s.URL, buf)
	is.NoErr(err)
	is.Equal(string(got), body)
	is.Equal(&got[0], &buf[:1][0]) // read into the buffer given, not a new one

	small := make([]byte, 0, 100)
	got, err = c.FetchInto(context.Background(), s.URL, small)
	is.NoErr(err)
	is.Equal(string(got), body)     // a buffer too small is replaced,
	is.Equal(cap(got), len(body)+1) // once, by one of the announced length (and a byte to see the end)
}

func TestReadAtMostGrowsWithoutAnAnnouncedLength(t *testing.T) {
	is := is.New(t)
	got, err := readAtMost(strings.NewReader(strings.Repeat("w", 5000)), 10_000, nil, -1)
	is.NoErr(err)
	is.Equal(len(got), 5000)
	// An announced length the body does not keep to changes nothing: the limit holds.
	_, err = readAtMost(strings.NewReader(strings.Repeat("w", 5000)), 1000, nil, 10)
	var tl *TooLargeError
	is.True(errors.As(err, &tl))
}

func TestFetchTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	hangMidBody := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	for name, h := range map[string]http.HandlerFunc{"before the headers": hang, "in the middle of the body": hangMidBody} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			s := testnet.Serve(t, "127.0.0.1", h)
			c := New(Options{AllowPrivate: true, Timeout: timeout})

			start := time.Now()
			_, err := c.Fetch(context.Background(), s.URL)
			elapsed := time.Since(start)

			is.True(err != nil)
			is.True(IsTimeout(err))
			is.True(elapsed >= timeout)
			is.True(elapsed < timeout+2*time.Second)
		})
	}

	t.Run("the caller's deadline counts too, a cancellation does not", func(t *testing.T) {
		is := is.New(t)
		s := testnet.Serve(t, "127.0.0.1", hang)
		c := New(Options{AllowPrivate: true})

		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := c.Fetch(ctx, s.URL)
		is.True(IsTimeout(err))

		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err = c.Fetch(ctx, s.URL)
		is.True(errors.Is(err, context.Canceled))
		is.True(!IsTimeout(err))
	})
}

func TestFetchStatusErrors(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter string
	}{
		{http.StatusNotFound, ""},
		{http.StatusGone, ""},
		{http.StatusTooManyRequests, "30"},
		{http.StatusInternalServerError, ""},
		{http.StatusServiceUnavailable, "120"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			is := is.New(t)
			s := testnet.Serve(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				http.Error(w, "nope", tt.status)
			})

			_, err := New(Options{AllowPrivate: true}).Fetch(context.Background(), s.URL)

			var se *StatusError
			is.True(errors.As(err, &se))
			is.Equal(se.StatusCode, tt.status)
			is.Equal(se.RetryAfter, tt.retryAfter)
		})
	}
	is := is.New(t)
	is.Equal((&StatusError{StatusCode: 503, RetryAfter: "120"}).Error(), "the source answered 503 Service Unavailable (retry after 120)")
}

func TestFetchUnknownHostIsADNSNotFound(t *testing.T) {
	is := is.New(t)
	c := New(Options{Resolver: newStubResolver(nil)})

	_, err := c.Fetch(context.Background(), "https://no-such-host.example/cat.jpg")

	var dnsErr *net.DNSError
	is.True(errors.As(err, &dnsErr))
	is.True(dnsErr.IsNotFound)
	is.True(!isForbidden(err))
	is.True(!IsTimeout(err))
}

func TestFetchRefusesWhatCheckURLRefuses(t *testing.T) {
	is := is.New(t)
	target := testnet.Serve(t, "127.0.0.1", serveBytes("secret"))
	c := New(Options{})
	for _, u := range []string{target.URL, "http://localhost:" + target.Port() + "/", "ftp://example.com/x", "http://0x7f000001:" + target.Port() + "/"} {
		_, err := c.Fetch(context.Background(), u)
		is.True(isForbidden(err)) // refused
	}
	is.Equal(target.Requests(), int64(0))
}

func TestAllowPrivateReachesLoopback(t *testing.T) {
	is := is.New(t)
	s := testnet.Serve(t, "127.0.0.1", serveBytes("local image"))
	c := New(Options{AllowPrivate: true})

	body, err := c.Fetch(context.Background(), s.URL)
	is.NoErr(err)
	is.Equal(string(body), "local image")

	_, err = c.Fetch(context.Background(), "ftp://127.0.0.1/x")
	is.True(isForbidden(err)) // schemes are still enforced
}

func TestDo(t *testing.T) {
	post := func(t *testing.T, u string) *http.Request {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(`{"type":"thumbnail.succeeded"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		return req
	}

	t.Run("a POST to a forbidden address is refused", func(t *testing.T) {
		is := is.New(t)
		hook := testnet.Serve(t, "127.0.0.1", serveBytes("ok"))
		c := New(Options{Resolver: newStubResolver(map[string]string{"hooks.example.com": "127.0.0.1"})})

		_, err := c.Do(post(t, hook.URL+"/hook"))
		is.True(isForbidden(err))
		_, err = c.Do(post(t, "http://hooks.example.com:"+hook.Port()+"/hook"))
		is.True(isForbidden(err)) // via DNS, at dial time
		is.Equal(hook.Requests(), int64(0))
	})

	t.Run("a POST to an allowed address is delivered", func(t *testing.T) {
		is := is.New(t)
		var got string
		var gotUA string
		hook := testnet.Serve(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got, gotUA = string(b), r.UserAgent()
			w.WriteHeader(http.StatusNoContent)
		})
		c := New(Options{publicNets: testPublicNets})

		resp, err := c.Do(post(t, hook.URL+"/hook"))
		is.NoErr(err)
		defer resp.Body.Close()
		is.Equal(resp.StatusCode, http.StatusNoContent)
		is.Equal(got, `{"type":"thumbnail.succeeded"}`)
		is.Equal(gotUA, DefaultUserAgent)
	})

	t.Run("redirects are not followed", func(t *testing.T) {
		is := is.New(t)
		elsewhere := testnet.Serve(t, "127.0.0.2", serveBytes("ok"))
		hook := testnet.Serve(t, "127.0.0.2", redirectTo(elsewhere.URL+"/other", http.StatusTemporaryRedirect))
		c := New(Options{publicNets: testPublicNets})

		resp, err := c.Do(post(t, hook.URL+"/hook"))
		is.NoErr(err)
		defer resp.Body.Close()
		is.Equal(resp.StatusCode, http.StatusTemporaryRedirect)
		is.Equal(elsewhere.Requests(), int64(0))
	})
}

func TestTheDialerChecksTheAddressItConnectsTo(t *testing.T) {
	is := is.New(t)
	c := New(Options{})
	err := c.dialer.ControlContext(context.Background(), "tcp4", "127.0.0.1:80", nil)
	is.True(isForbidden(err))
	is.NoErr(c.dialer.ControlContext(context.Background(), "tcp4", "8.8.8.8:80", nil))
}

func TestTheTransportUsesNoProxy(t *testing.T) {
	is := is.New(t)
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	c := New(Options{})
	is.True(c.fetchClient.Transport.(*http.Transport).Proxy == nil)
	is.True(c.doClient.Transport.(*http.Transport).Proxy == nil)
}
