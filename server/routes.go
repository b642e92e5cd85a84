package server

import (
	"log/slog"

	"github.com/labstack/echo/v4"
)

// addRoutes maps the whole API.
//
// Every /v1 route carries its own middleware rather than a group's: Echo
// gives a group with middleware a catch-all 404 route, which would answer a
// known path with a wrong method 404 instead of 405 with Allow.
func addRoutes(e *echo.Echo, logger *slog.Logger, cfg Config, d Deps, uploads *budget) {
	addOpsRoutes(e, d)
	e.GET("/openapi.yaml", handleOpenAPI())
	if d.Page != nil { // the try-it page
		e.GET("/", echo.WrapHandler(d.Page))
		e.HEAD("/", echo.WrapHandler(d.Page))
		e.GET("/assets/*", echo.WrapHandler(d.Page))
		e.HEAD("/assets/*", echo.WrapHandler(d.Page))
	}

	// A signed link opens an image without a key; its check is in linkOrKey.
	link := []echo.MiddlewareFunc{linkOrKey(d.Keys, d.Links), rateLimit(d.Limiter)}
	e.GET("/v1/thumbnails/:id/outputs/:name", handleOutput(d), link...)
	e.HEAD("/v1/thumbnails/:id/outputs/:name", handleOutput(d), link...)

	key := []echo.MiddlewareFunc{requireAPIKey(d.Keys), rateLimit(d.Limiter)}
	e.POST("/v1/thumbnails", handleCreateThumbnail(logger, cfg, d, uploads), key...)
	e.GET("/v1/thumbnails", handleListThumbnails(d), key...)
	e.GET("/v1/thumbnails/:id", handleGetThumbnail(d), key...)
	e.DELETE("/v1/thumbnails/:id", handleDeleteThumbnail(logger, d), key...)
	e.GET("/v1/thumbnails/:id/image", handleImage(d), key...)
	e.HEAD("/v1/thumbnails/:id/image", handleImage(d), key...)
	e.GET("/v1/thumbnails/:id/events", handleEvents(d), key...)
	e.POST("/v1/thumbnails/:id/deliveries/:channel/redeliver", handleRedeliver(d), key...)
}

// addOpsRoutes maps what every role serves.
func addOpsRoutes(e *echo.Echo, d Deps) {
	e.GET("/healthz", handleHealthz(d.Engine))
	e.GET("/readyz", handleReadyz(d))
	if d.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(d.Metrics.Handler()))
	}
}
