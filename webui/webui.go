// Package webui serves gocraft/work's job web UI to operators, behind a
// password and a cross-origin check.
//
// gocraft/work's UI (webui.NewServer) only runs on its own listener, uses
// absolute paths, and has no authentication and no CSRF protection, while its
// retry and delete actions change state. So Run starts it on a private
// loopback port and puts a reverse proxy of ours in front of it on the
// configured address:
//
//	browser -> cfg.Addr (basic auth, same-origin check, security headers, log)
//	        -> 127.0.0.1:<free port> (gocraft/work web UI) -> Redis
package webui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gocraft/work/webui"
	"github.com/gomodule/redigo/redis"
)

// Config is how the web UI is exposed.
type Config struct {
	// Addr is where operators reach the UI (host:port). A non-loopback
	// address requires a Password.
	Addr string
	// Password, when set, is required through HTTP basic auth (any user name).
	Password string
	// Hosts are the host names the UI answers to besides loopback ones
	// (THUMBNAILED_WEBUI_HOSTS); any other Host gets 403, so DNS rebinding
	// cannot turn a browser into a client of the UI.
	Hosts []string
}

// Realm is the basic-auth realm the browser shows in its login prompt.
const Realm = "thumbnailed jobs"

// shutdownTimeout bounds how long stopping may take: the UI's requests are
// short reads and writes of Redis.
const shutdownTimeout = 10 * time.Second

// Run serves the gocraft/work web UI of namespace on cfg.Addr until ctx is
// cancelled, then stops both its listener and the internal one of the UI.
// (config.Load refuses a non-loopback cfg.Addr without a password.)
func Run(ctx context.Context, log *slog.Logger, cfg Config, namespace string, pool *redis.Pool) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("web UI: listen on %s: %w", cfg.Addr, err)
	}
	return serve(ctx, log, cfg, namespace, pool, ln)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// serve runs the UI behind the proxy on ln, which it closes.
func serve(ctx context.Context, log *slog.Logger, cfg Config, namespace string, pool *redis.Pool, ln net.Listener) error {
	log = log.With("component", "webui")
	inner, backend, err := startBackend(namespace, pool)
	if err != nil {
		ln.Close()
		return err
	}
	transport := &http.Transport{
		Proxy:               nil, // never send the UI's traffic through HTTP(S)_PROXY
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     time.Minute,
	}
	defer transport.CloseIdleConnections()

	srv := &http.Server{
		Handler:           newHandler(log, cfg, inner, transport),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("web UI listening", "addr", ln.Addr().String(), "auth", cfg.Password != "", "hosts", cfg.Hosts, "backend", inner.Host)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("web UI: serve: %w", err)
	}

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("web UI: shutdown: %w", err))
	}
	transport.CloseIdleConnections()
	stopped := make(chan struct{})
	go func() { backend.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		runErr = errors.Join(runErr, errors.New("web UI: the gocraft/work UI did not stop in time"))
	}
	log.Info("web UI stopped")
	return runErr
}

// startBackend starts gocraft/work's UI on a free loopback port and waits
// until it answers. webui.Server binds its address itself (no listener can be
// handed over) and ignores a failure to bind, and its Stop blocks forever
// when it never served; so the port is picked just before and the server is
// confirmed to be gocraft's before Run relies on it, retrying a few ports.
func startBackend(namespace string, pool *redis.Pool) (*url.URL, *webui.Server, error) {
	var lastErr error
	for range 5 {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, nil, fmt.Errorf("web UI: pick an internal port: %w", err)
		}
		s := webui.NewServer(namespace, pool, addr)
		s.Start()
		if err := waitForBackend(addr, 5*time.Second); err != nil {
			// Either it could not bind (its goroutine has ended; nothing to
			// stop) or something else took the port: try another one.
			lastErr = err
			continue
		}
		return &url.URL{Scheme: "http", Host: addr}, s, nil
	}
	return nil, nil, fmt.Errorf("web UI: the gocraft/work UI did not start: %w", lastErr)
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// waitForBackend polls addr until it serves gocraft/work's script.
func waitForBackend(addr string, within time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get("http://" + addr + "/work.js")
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/javascript") {
				return nil
			}
			err = fmt.Errorf("%s answers %s for /work.js, so it is not the gocraft/work UI", addr, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newHandler is the front door: headers, log, then /healthz for the
// container's health check, or auth, same-origin check and the proxy.
func newHandler(log *slog.Logger, cfg Config, backend *url.URL, transport http.RoundTripper) http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backend)
			// The UI needs none of the operator's credentials.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
		},
		Transport: transport,
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Error("web UI backend failed", "method", r.Method, "path", r.URL.Path, "err", err)
			http.Error(w, "the job UI is not answering", http.StatusBadGateway)
		},
	}
	var ui http.Handler = proxy
	ui = sameOrigin(log, ui)
	ui = basicAuth(log, cfg.Password, ui)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The container's health check has no password; "ok" tells nothing.
		// gocraft/work's UI has no page of that name.
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		ui.ServeHTTP(w, r)
	})
	h = knownHost(log, cfg.Hosts, h)
	h = accessLog(log, h)
	h = securityHeaders(h)
	return h
}

// knownHost answers 403 to a request whose Host is neither a loopback name
// nor one of hosts: a page of another site whose name an attacker points at
// this address (DNS rebinding) is same-origin with itself, not with the UI.
func knownHost(log *slog.Logger, hosts []string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, h := range hosts {
		allowed[strings.ToLower(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.Trim(host, "[]"))
		if !isLoopback(host) && !allowed[host] {
			log.Warn("web UI request with a foreign Host refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			http.Error(w, "this host name is not served here (set THUMBNAILED_WEBUI_HOSTS)", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// basicAuth requires password (any user name) when it is set. Both sides are
// hashed before the constant-time comparison so their lengths leak nothing.
func basicAuth(log *slog.Logger, password string, next http.Handler) http.Handler {
	if password == "" {
		return next
	}
	want := sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, got, ok := r.BasicAuth()
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			log.Warn("web UI login refused", "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr, "credentials_sent", ok)
			w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses state-changing requests unless the browser shows they
// come from the UI's own pages: Sec-Fetch-Site same-origin, or else an Origin
// (or, without one, a Referer) naming the request's own host. Unlike
// http.CrossOriginProtection, a request with none of these is refused too:
// the UI is used from a browser, and a script can send an Origin.
func sameOrigin(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkSameOrigin(r); err != nil {
			log.Warn("web UI cross-origin request refused", "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr, "reason", err.Error())
			http.Error(w, "cross-origin request refused: "+err.Error(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func checkSameOrigin(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		if site == "same-origin" {
			return nil
		}
		return fmt.Errorf("Sec-Fetch-Site is %q", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if !sameHost(origin, r.Host) {
			return fmt.Errorf("origin %q is not this host", origin)
		}
		return nil
	}
	if referer := r.Header.Get("Referer"); referer != "" {
		if !sameHost(referer, r.Host) {
			return errors.New("the referer is not this host")
		}
		return nil
	}
	return errors.New("no Origin, Referer or Sec-Fetch-Site header shows where it comes from")
}

// sameHost reports whether the URL u (an Origin or a Referer) names host.
func sameHost(u, host string) bool {
	parsed, err := url.Parse(u)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return false
	}
	return strings.EqualFold(parsed.Host, host)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// accessLog logs every request; never a header, so never the password.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		level := slog.LevelDebug
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			level = slog.LevelInfo // retries and deletes are worth an audit line
		}
		log.Log(r.Context(), level, "web UI request", "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "bytes", rec.bytes, "remote", r.RemoteAddr,
			"duration_ms", time.Since(start).Milliseconds())
	})
}
