package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/view"
)

const (
	ctxLogger     = "logger"
	ctxOwner      = "owner"
	ctxKeyName    = "key_name"
	ctxSignedLink = "signed_link"
)

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestLogger gives every request an id (the caller's X-Request-ID when it
// is sane) and a logger that carries it, and logs one line per request.
func requestLogger(logger *slog.Logger, m *metrics.Metrics) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			rid := c.Request().Header.Get(echo.HeaderXRequestID)
			if !validRequestID.MatchString(rid) {
				rid = strings.ToLower(rand.Text())
			}
			c.Response().Header().Set(echo.HeaderXRequestID, rid)
			log := logger.With("request_id", rid)
			c.Set(ctxLogger, log)
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			m.Request(c.Request().Method, c.Path(), status, time.Since(start))
			level := slog.LevelInfo
			if c.Path() == "/healthz" || c.Path() == "/readyz" || c.Path() == "/metrics" {
				level = slog.LevelDebug
			}
			log.Log(c.Request().Context(), level, "request",
				"method", metrics.Method(c.Request().Method), "route", c.Path(), "status", status,
				"duration_ms", time.Since(start).Milliseconds(), "bytes_out", c.Response().Size, "client_ip", c.RealIP())
			return nil
		}
	}
}

func requestLog(c echo.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := c.Get(ctxLogger).(*slog.Logger); ok {
		return l
	}
	return fallback
}

// recoverer turns a panic in a handler into a 500 instead of a dropped connection.
func recoverer() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return next(c)
		}
	}
}

// requireAPIKey checks the bearer token against every key in force, in
// constant time. With no keys the service is open and every job has the
// empty owner. A key is never stored or logged: jobs carry its digest and
// its name.
func requireAPIKey(ring Keys) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := authenticate(c, ring); err != nil {
				return err
			}
			return next(c)
		}
	}
}

func authenticate(c echo.Context, ring Keys) error {
	set := ring.Current()
	if set.Len() == 0 {
		c.Set(ctxOwner, "")
		return nil
	}
	token, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
	if !ok || token == "" {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="thumbnailed"`)
		return problem(codes.Unauthorized, "send your API key as Authorization: Bearer <key>")
	}
	key, ok := set.Lookup(strings.TrimSpace(token))
	if !ok {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="thumbnailed", error="invalid_token"`)
		return problem(codes.Unauthorized, "the API key is not valid")
	}
	c.Set(ctxOwner, key.Owner())
	c.Set(ctxKeyName, key.Name)
	return nil
}

// linkOrKey lets a request with a signed link (expires and signature in
// its query) through without a key, once the signature holds; any other
// request needs a key as usual.
func linkOrKey(ring Keys, links view.Links) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			q := c.Request().URL.Query()
			if !q.Has("signature") && !q.Has("expires") {
				if err := authenticate(c, ring); err != nil {
					return err
				}
				return next(c)
			}
			err := links.Verify(c.Param("id"), c.Param("name"), q.Get("expires"), q.Get("signature"), time.Now())
			switch {
			case errors.Is(err, view.ErrLinkExpired):
				return problem(codes.LinkExpired, "this link has expired with its job; ask the API for the job again")
			case err != nil:
				return problem(codes.LinkInvalid, "this link's signature does not match; use the link exactly as the service gave it")
			}
			c.Set(ctxSignedLink, true)
			return next(c)
		}
	}
}

func signedLink(c echo.Context) bool {
	ok, _ := c.Get(ctxSignedLink).(bool)
	return ok
}

func owner(c echo.Context) string {
	o, _ := c.Get(ctxOwner).(string)
	return o
}

// jobOwner is who a new job belongs to.
func jobOwner(c echo.Context) jobs.Owner {
	name, _ := c.Get(ctxKeyName).(string)
	return jobs.Owner{Digest: owner(c), KeyName: name, Client: clientScope(c)}
}

// clientScope identifies the client for rate limits, idempotency keys and
// listing: its API key's digest, or its address when the service is open:
// an IPv4 address, or the /64 of an IPv6 one (a client holds the whole /64
// and would otherwise have 2^64 limits).
func clientScope(c echo.Context) string {
	if o := owner(c); o != "" {
		return "key:" + o
	}
	ip, err := netip.ParseAddr(c.RealIP())
	if err != nil {
		return "ip:" + c.RealIP()
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip.String()
}

// rateLimit answers 429 with Retry-After when the limiter says no. A limiter
// that cannot answer (Redis down or stalled) fails closed: 503, so an outage
// never lifts the limit.
func rateLimit(limiter RateLimiter) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if limiter == nil {
				return next(c)
			}
			ok, err := limiter.Allow(clientScope(c))
			var limited *jobs.LimitedError
			switch {
			case ok:
				return next(c)
			case errors.As(err, &limited):
				p := problem(codes.RateLimited, "too many requests; slow down and retry after the time in Retry-After")
				p.retryAfter = fmt.Sprint(max(1, int(math.Ceil(limited.RetryAfter.Seconds()))))
				return p
			case err != nil:
				return err // storage trouble: 503
			default:
				p := problem(codes.RateLimited, "too many requests; slow down and retry after the time in Retry-After")
				p.retryAfter = "1"
				return p
			}
		}
	}
}
