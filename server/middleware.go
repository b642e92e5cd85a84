package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/metrics"
)

const (
	ctxLogger = "logger"
	ctxOwner  = "owner"
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
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			m.Request(c.Request().Method, route, status, time.Since(start))
			level := slog.LevelInfo
			if c.Path() == "/healthz" || c.Path() == "/readyz" || c.Path() == "/metrics" {
				level = slog.LevelDebug
			}
			log.Log(c.Request().Context(), level, "request",
				"method", c.Request().Method, "route", c.Path(), "status", status,
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

// requireAPIKey checks the bearer token against every configured key in
// constant time. With no keys the service is open and every job has the
// empty owner. A key is never stored or logged: jobs carry its digest.
func requireAPIKey(keys []string) echo.MiddlewareFunc {
	digests := make([][]byte, len(keys))
	for i, k := range keys {
		d := sha256.Sum256([]byte(k))
		digests[i] = d[:]
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if len(digests) == 0 {
				c.Set(ctxOwner, "")
				return next(c)
			}
			token, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			if !ok || token == "" {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="thumbnailed"`)
				return problem(http.StatusUnauthorized, "unauthorized", "send your API key as Authorization: Bearer <key>")
			}
			d := sha256.Sum256([]byte(strings.TrimSpace(token)))
			match := 0
			for _, want := range digests {
				match |= subtle.ConstantTimeCompare(d[:], want)
			}
			if match != 1 {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="thumbnailed", error="invalid_token"`)
				return problem(http.StatusUnauthorized, "unauthorized", "the API key is not valid")
			}
			c.Set(ctxOwner, hex.EncodeToString(d[:16]))
			return next(c)
		}
	}
}

func owner(c echo.Context) string {
	o, _ := c.Get(ctxOwner).(string)
	return o
}

// clientScope identifies the client for rate limits and idempotency keys: its
// API key's digest, or its IP address when the service is open.
func clientScope(c echo.Context) string {
	if o := owner(c); o != "" {
		return "key:" + o
	}
	return "ip:" + c.RealIP()
}

// rateLimit answers 429 with Retry-After when the limiter says no. A limiter
// that fails (Redis down) lets the request through: the API's own Redis
// calls will answer for the outage, and a limiter must not be a second one.
func rateLimit(limiter RateLimiter) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if limiter == nil {
				return next(c)
			}
			ok, err := limiter.Allow(clientScope(c))
			if !ok {
				wait := time.Second
				var limited *jobs.LimitedError
				if errors.As(err, &limited) {
					wait = limited.RetryAfter
				}
				p := problem(http.StatusTooManyRequests, "rate_limited", "too many requests; slow down and retry after the time in Retry-After")
				p.retryAfter = fmt.Sprint(max(1, int(math.Ceil(wait.Seconds()))))
				return p
			}
			if err != nil {
				requestLog(c, slog.Default()).Warn("rate limiter unavailable; allowing the request", "error", err)
			}
			return next(c)
		}
	}
}
