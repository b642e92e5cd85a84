// Package safehttp is the one outbound HTTP client of the service: it fetches
// source images and posts callbacks to URLs that strangers give us, and so
// refuses to reach loopback, private, link-local and metadata addresses.
//
// The rule is enforced where connections are made: the transport resolves
// every host itself (through Options.Resolver), checks every address, and
// dials only the address it checked, for every connection, including those
// a redirect leads to. DNS rebinding and redirects cannot get around it, and
// a refused address is never connected to. No proxy is used, ever: a proxy
// from the environment would connect on our behalf and skip the check.
package safehttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// Options configures a Client. The zero value is the production setting.
type Options struct {
	// AllowPrivate lifts the address rule (THUMBNAILED_ALLOW_PRIVATE_NETWORKS),
	// for development and tests. Schemes and user info are still checked.
	AllowPrivate bool
	// MaxBytes limits the body Fetch reads; 0 means 20 MiB.
	MaxBytes int64
	// Timeout limits a whole Fetch, body included; 0 means 10s.
	Timeout time.Duration
	// MaxRedirects is how many redirects Fetch follows; 0 means 5, and a
	// negative value means none.
	MaxRedirects int
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
	// UserAgent is sent unless a request to Do sets its own; "" means
	// DefaultUserAgent.
	UserAgent string

	// publicNets are treated as public despite the rule. Tests only.
	publicNets []netip.Prefix
}

// Resolver resolves a host name to its addresses; *net.Resolver is one.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Defaults for the zero Options.
const (
	DefaultMaxBytes     = 20 << 20
	DefaultTimeout      = 10 * time.Second
	DefaultMaxRedirects = 5
	DefaultUserAgent    = "Thumbnailed/1 (+https://github.com/thumbnailed/thumbnailed)"
)

// Client is the guarded HTTP client. It is safe for concurrent use; make one
// and share it, so that connections are reused.
type Client struct {
	policy       addressPolicy
	resolver     Resolver
	dialer       *net.Dialer
	maxBytes     int64
	timeout      time.Duration
	maxRedirects int
	userAgent    string

	fetchClient *http.Client // follows checked redirects
	doClient    *http.Client // follows none
}

// New returns a Client configured by opts.
func New(opts Options) *Client {
	c := &Client{
		policy:       addressPolicy{allowPrivate: opts.AllowPrivate, publicNets: opts.publicNets},
		resolver:     opts.Resolver,
		maxBytes:     opts.MaxBytes,
		timeout:      opts.Timeout,
		maxRedirects: opts.MaxRedirects,
		userAgent:    opts.UserAgent,
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxBytes
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.maxRedirects == 0:
		c.maxRedirects = DefaultMaxRedirects
	case c.maxRedirects < 0:
		c.maxRedirects = 0
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	c.dialer = &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		// A second look at the address actually being dialled. dialContext
		// already dials only checked IP literals; this keeps the rule true
		// should that ever change.
		ControlContext: c.checkDialedAddress,
	}
	transport := &http.Transport{
		Proxy:                  nil, // never: a proxy would connect for us, unchecked
		DialContext:            c.dialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  1 * time.Second,
		MaxIdleConns:           100,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		// Images do not compress; and without it Content-Length is the
		// size we will read, so an oversized source is refused up front.
		DisableCompression: true,
	}
	c.fetchClient = &http.Client{Transport: transport, CheckRedirect: c.checkRedirect}
	// Do follows no redirect. Do carries callbacks: a 301/302/303 would turn
	// the POST into a GET and drop the signed payload, and a 307/308 would
	// send the payload and its signature to a host the client never
	// registered. A callback URL that redirects is misconfigured; the 3xx
	// comes back as the response (not 2xx, so the delivery fails and says so).
	c.doClient = &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// Fetch GETs a source image and returns its body. It enforces the address
// rule for every connection, follows at most MaxRedirects redirects (each to
// http or https only), gives up after Timeout, and reads at most MaxBytes: a
// Content-Length above the limit is refused before reading, and a longer body
// is cut off as soon as it passes the limit. See errors.go for how to
// classify its errors.
func (c *Client) Fetch(ctx context.Context, rawURL string) ([]byte, error) {
	return c.FetchInto(ctx, rawURL, nil)
}

// FetchInto is Fetch reading the body into buf, from its start (nil: a new
// buffer), and returning it, grown when needed. The body goes into a buffer of
// the announced Content-Length at once rather than one grown by doubling as it
// arrives: a 2 MB photo read that way was copied ~2x and its fresh memory
// faulted in several times over (BENCHMARKS.md, "Speed, round two"). A caller
// that runs many fetches keeps the returned buffer for the next one.
func (c *Client) FetchInto(ctx context.Context, rawURL string, buf []byte) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("the source URL cannot be parsed: %w", err)
	}
	if err := c.policy.checkURL(u); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("the source URL cannot be requested: %w", err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "image/*, */*;q=0.8")

	resp, err := c.fetchClient.Do(req)
	if err != nil {
		return nil, withDeadline(ctx, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &StatusError{StatusCode: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	}
	if resp.ContentLength > c.maxBytes {
		return nil, &TooLargeError{Limit: c.maxBytes}
	}
	body, err := readAtMost(resp.Body, c.maxBytes, buf, resp.ContentLength)
	if err != nil {
		return nil, withDeadline(ctx, err)
	}
	return body, nil
}

// readAtMost reads r to the end into buf (from its start), or fails with
// *TooLargeError as soon as it has read one byte more than limit. size is
// the length r announced (-1: unknown): the buffer gets room for it, and one
// byte more to see the end, before the first read.
func readAtMost(r io.Reader, limit int64, buf []byte, size int64) ([]byte, error) {
	buf = buf[:0]
	if size >= 0 && size <= limit && int64(cap(buf)) < size+1 {
		buf = make([]byte, 0, size+1)
	}
	r = io.LimitReader(r, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // room for the next read: append's growth
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, &TooLargeError{Limit: limit}
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the source: %w", err)
		}
	}
}

// withDeadline makes sure an error caused by ctx's deadline says so, so that
// IsTimeout recognises it whichever layer noticed first.
func withDeadline(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
	}
	return err
}

// Do sends req through the guarded transport, for callback POSTs. The
// address rule applies as in Fetch, but Do sets no timeout (give req a
// context deadline), reads nothing (the caller closes resp.Body), and follows
// no redirect: a 3xx comes back as the response (see New for why). It sets
// the User-Agent unless req has one.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if err := c.policy.checkURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close() // as http.Client.Do would
		}
		return nil, err
	}
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", c.userAgent)
	}
	return c.doClient.Do(req)
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > c.maxRedirects {
		return fmt.Errorf("%w (more than %d)", ErrTooManyRedirects, c.maxRedirects)
	}
	// The scheme, user info and visibly forbidden hosts; the address of
	// anything else is checked when it is dialled.
	return c.policy.checkURL(req.URL)
}

// dialContext resolves the host itself, refuses the connection if any of its
// addresses is forbidden, and dials the checked addresses only, one by one.
func (c *Client) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	addrs, err := c.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	// One forbidden answer refuses the name: a name that mixes public and
	// private addresses is a rebinding attempt, not a real source.
	for _, a := range addrs {
		if err := c.policy.checkAddr(host, a); err != nil {
			return nil, err
		}
	}
	var firstErr error
	for _, a := range addrs {
		conn, err := c.dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

func (c *Client) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	answers, err := c.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(answers))
	for _, ans := range answers {
		a, ok := netip.AddrFromSlice(ans.IP)
		if !ok {
			return nil, &ForbiddenError{Host: host, IP: ans.IP, Reason: "not a valid IP address"}
		}
		addrs = append(addrs, a.Unmap().WithZone(ans.Zone))
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

// checkDialedAddress is the net.Dialer control hook: it runs just before
// connect(2) with the literal address being dialled.
func (c *Client) checkDialedAddress(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &ForbiddenError{Host: address, Reason: "not a valid IP address"}
	}
	return c.policy.checkAddr(ap.Addr().String(), ap.Addr())
}
