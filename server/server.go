// Package server is the HTTP API: Echo routes, handlers, auth, limits, and
// problem+json errors. It never imports the worker or the notifier: it talks
// to them only through the job store and the queue.
package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// Config is what the API needs from the service configuration.
type Config struct {
	MaxUploadBytes       int64
	MaxPixels            int64
	MaxDimension         int
	AllowPrivateNetworks bool
	APIKeys              []string
	TrustedProxies       []netip.Prefix
}

// Store is the part of the job store the API uses.
type Store interface {
	Ping(ctx context.Context) error
	Create(ctx context.Context, job *jobs.Job, upload []byte) error
	Get(ctx context.Context, id string) (*jobs.Job, error)
	Image(ctx context.Context, id string) ([]byte, error)
	Claim(ctx context.Context, scope, key, fingerprint, id string) (firstID, firstFingerprint string, claimed bool, err error)
	Release(ctx context.Context, scope, key string) error
}

// Enqueuer queues a thumbnail job for the workers.
type Enqueuer interface {
	EnqueueThumbnail(ctx context.Context, id string) error
}

// RateLimiter decides whether a client may make another request.
type RateLimiter interface {
	Allow(identifier string) (bool, error)
}

// New returns the API's handler: every route of routes.go.
func New(logger *slog.Logger, cfg Config, store Store, queue Enqueuer, limiter RateLimiter, engine thumbnail.Engine, m *metrics.Metrics) http.Handler {
	e := newEcho(logger, cfg, m)
	addRoutes(e, logger, cfg, store, queue, limiter, engine, m)
	return e
}

// NewOps returns the handler of a worker process: health, readiness and metrics only.
func NewOps(logger *slog.Logger, store Store, engine thumbnail.Engine, m *metrics.Metrics) http.Handler {
	e := newEcho(logger, Config{}, m)
	addOpsRoutes(e, store, engine, m)
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
	return e
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
