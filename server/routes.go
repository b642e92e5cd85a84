package server

import (
	"log/slog"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// addRoutes maps the whole API.
func addRoutes(e *echo.Echo, logger *slog.Logger, cfg Config, store Store, queue Enqueuer, limiter RateLimiter, engine thumbnail.Engine, m *metrics.Metrics) {
	addOpsRoutes(e, store, engine, m)
	e.GET("/openapi.yaml", handleOpenAPI())

	v1 := e.Group("/v1", requireAPIKey(cfg.APIKeys), rateLimit(limiter))
	v1.POST("/thumbnails", handleCreateThumbnail(logger, cfg, store, queue, engine))
	v1.GET("/thumbnails/:id", handleGetThumbnail(store))
	v1.GET("/thumbnails/:id/image", handleGetThumbnailImage(store))
}

// addOpsRoutes maps what every role serves.
func addOpsRoutes(e *echo.Echo, store Store, engine thumbnail.Engine, m *metrics.Metrics) {
	e.GET("/healthz", handleHealthz(engine))
	e.GET("/readyz", handleReadyz(store))
	if m != nil {
		e.GET("/metrics", echo.WrapHandler(m.Handler()))
	}
}
