package server

import (
	"log/slog"

	"github.com/labstack/echo/v4"
)

// addRoutes maps the whole API.
func addRoutes(e *echo.Echo, logger *slog.Logger, cfg Config, d Deps) {
	addOpsRoutes(e, d)
	e.GET("/openapi.yaml", handleOpenAPI())

	// A signed link opens an image without a key; its check is in the handler.
	e.GET("/v1/thumbnails/:id/outputs/:name", handleOutput(d), linkOrKey(d.Keys, d.Links), rateLimit(d.Limiter))
	e.HEAD("/v1/thumbnails/:id/outputs/:name", handleOutput(d), linkOrKey(d.Keys, d.Links), rateLimit(d.Limiter))

	v1 := e.Group("/v1", requireAPIKey(d.Keys), rateLimit(d.Limiter))
	v1.POST("/thumbnails", handleCreateThumbnail(logger, cfg, d))
	v1.GET("/thumbnails", handleListThumbnails(d))
	v1.GET("/thumbnails/:id", handleGetThumbnail(d))
	v1.DELETE("/thumbnails/:id", handleDeleteThumbnail(logger, d))
	v1.GET("/thumbnails/:id/image", handleImage(d))
	v1.HEAD("/thumbnails/:id/image", handleImage(d))
	v1.GET("/thumbnails/:id/events", handleEvents(d))
	v1.POST("/thumbnails/:id/deliveries/:channel/redeliver", handleRedeliver(d))
}

// addOpsRoutes maps what every role serves.
func addOpsRoutes(e *echo.Echo, d Deps) {
	e.GET("/healthz", handleHealthz(d.Engine))
	e.GET("/readyz", handleReadyz(d))
	if d.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(d.Metrics.Handler()))
	}
}
