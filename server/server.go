// Package server is the HTTP API: Echo routes, handlers, auth, limits, and
// problem+json errors. It never imports the worker or the notifier: it talks
// to them only through the job store.
package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/keys"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
)

// Config is what the API needs, ready to use (config.Load fills it).
type Config struct {
	MaxUploadBytes         int64
	MaxPixels              int64
	MaxDimension           int
	MaxOutputPixels        int64
	MaxInflightUploadBytes int64
	AllowPrivateNetworks   bool
	TrustedProxies         []netip.Prefix
	ResultTTL              time.Duration
}

// Store is the part of the job store the API uses.
type Store interface {
	Ping(ctx context.Context) error
	Submit(ctx context.Context, job *jobs.Job, idem *jobs.Idempotency) (*jobs.Job, bool, error)
	Reserve(ctx context.Context, id string, until time.Time) error
	Get(ctx context.Context, id string) (*jobs.Job, error)
	Erase(ctx context.Context, id string) error
	Redeliver(ctx context.Context, id, channel string) (*jobs.Job, error)
	List(ctx context.Context, client string, status jobs.Status, limit int, cursor string) ([]*jobs.Job, string, error)
	OpenStream(ctx context.Context, client, stream string, max int) (bool, error)
	RenewStream(ctx context.Context, client, stream string) error
	CloseStream(ctx context.Context, client, stream string) error
}

// Blobs is where uploads and images are (blob.Store).
type Blobs interface {
	Put(ctx context.Context, job, name string, r io.Reader, expires time.Time) (int64, error)
	Get(ctx context.Context, job, name string) ([]byte, error)
	Delete(ctx context.Context, job string) error
	Ping(ctx context.Context) error
	Buffered() bool
}

// RateLimiter decides whether a client may make another request.
type RateLimiter interface {
	Allow(identifier string) (bool, error)
}

// Keys are the API keys in force (they may be reloaded while serving).
type Keys interface {
	Current() *keys.Set
}

// Deps are what the API is built on.
type Deps struct {
	Store   Store
	Blobs   Blobs
	Limiter RateLimiter // nil: no rate limit
	Keys    Keys
	Links   view.Links
	Events  *Events      // nil: no event streams (the ops-only handler)
	Page    http.Handler // the try-it page at / and its /assets/ (web.Handler); nil: none
	Engine  thumbnail.Engine
	Metrics *metrics.Metrics
}

// New returns the API's handler: every route of routes.go.
func New(logger *slog.Logger, cfg Config, d Deps) http.Handler {
	e, _ := newAPI(logger, cfg, d)
	return e
}

// newAPI is New, with the budget of uploads in flight (for tests).
func newAPI(logger *slog.Logger, cfg Config, d Deps) (*echo.Echo, *budget) {
	e := newEcho(logger, cfg, d.Metrics)
	uploads := &budget{max: cfg.MaxInflightUploadBytes}
	addRoutes(e, logger, cfg, d, uploads)
	return e, uploads
}

// NewOps returns the handler of a worker process: health, readiness and metrics only.
func NewOps(logger *slog.Logger, d Deps) http.Handler {
	e := newEcho(logger, Config{}, d.Metrics)
	addOpsRoutes(e, d)
	return e
}

func newEcho(logger *slog.Logger, cfg Config, m *metrics.Metrics) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(logger)
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.Use(requestLogger(logger, m))
	e.Use(recoverer())
	e.Use(writeDeadline())
	return e
}

// writeTimeout bounds writing one answer: a client that reads an image (or
// anything) very slowly holds its connection active, which the connection
// cap never closes to make room. Event streams set their own, per write.
const writeTimeout = 2 * time.Minute

func writeDeadline() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			_ = http.NewResponseController(c.Response().Writer).SetWriteDeadline(time.Now().Add(writeTimeout))
			return next(c)
		}
	}
}

// ipExtractor takes the client address from the socket: X-Forwarded-For is
// believed only when the connection comes from a listed proxy, so a client
// cannot rotate that header to escape its rate limit.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
