package main

import (
	"context"
	"log/slog"

	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/webui"
)

func runWebUI(ctx context.Context, log *slog.Logger, cfg config.Config, store *jobs.Store) error {
	return webui.Run(ctx, log, webui.Config{Addr: cfg.WebUIAddr, Password: cfg.WebUIPassword}, store.Namespace(), store.Pool())
}
