package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/server"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/worker"
)

const usage = `usage: thumbnailed [all|api|worker|webui]

  all     the API and the workers in one process (the default); with
          THUMBNAILED_REDIS_URL empty it runs an embedded in-memory Redis
  api     the HTTP API only
  worker  the job workers only (serves /healthz, /readyz and /metrics)
  webui   the gocraft/work job web UI behind a password

Configuration is by THUMBNAILED_* environment variables; see README.md.`

// run is the whole program: everything it needs from the OS comes in as an
// argument, so tests start it in-process. It returns when ctx is cancelled
// and everything has stopped.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	role := config.RoleAll
	if len(args) > 1 {
		role = args[1]
	}
	if role == "-h" || role == "--help" || role == "help" {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	if len(args) > 2 {
		return fmt.Errorf("too many arguments\n%s", usage)
	}
	cfg, err := config.Load(role, getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	log := newLogger(stdout, cfg.LogLevel).With("role", role)

	if cfg.RedisURL == "" {
		url, stop, err := embeddedRedis(ctx, log)
		if err != nil {
			return err
		}
		defer stop()
		cfg.RedisURL = url
	}
	pool := newRedisPool(cfg.RedisURL)
	defer pool.Close()
	store := jobs.NewStore(pool, cfg.Namespace, cfg.ResultTTL)
	queue := jobs.NewQueue(store)
	engine := thumbnail.Default
	log.Info("starting", "engine", engine.Name(), "engine_version", engine.Version(), "addr", cfg.Addr)

	if role == config.RoleWebUI {
		return runWebUI(ctx, log, cfg, store)
	}

	m := metrics.New(cfg.Namespace, pool)
	queue.OnEnqueue(m.Enqueued)

	var handler http.Handler
	switch role {
	case config.RoleAll, config.RoleAPI:
		if len(cfg.APIKeys) == 0 {
			log.Warn("THUMBNAILED_API_KEYS is empty: the API is OPEN to anyone who can reach it")
		}
		if cfg.AllowPrivateNetworks {
			log.Warn("THUMBNAILED_ALLOW_PRIVATE_NETWORKS=true: sources and callbacks may reach loopback and private addresses; never expose such a service")
		}
		limiter := jobs.NewRateLimiter(store, cfg.RateLimit, cfg.RateBurst)
		handler = server.New(log, serverConfig(cfg), store, queue, limiter, engine, m)
	default:
		handler = server.NewOps(log, store, engine, m)
	}

	var w *worker.Worker
	if role == config.RoleAll || role == config.RoleWorker {
		client := safehttp.New(safehttp.Options{
			AllowPrivate: cfg.AllowPrivateNetworks,
			MaxBytes:     cfg.MaxUploadBytes,
			Timeout:      cfg.FetchTimeout,
		})
		n, err := notifier.New(log, notifierConfig(cfg), store, queue, client, m)
		if err != nil {
			return err
		}
		w = worker.New(log, workerConfig(cfg), store, queue, client, n, engine, m)
		w.Start()
	}

	serveErr := make(chan error, 1)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		if w != nil {
			_ = w.Stop(context.Background())
		}
		return fmt.Errorf("listen on %s (THUMBNAILED_ADDR): %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if w != nil {
			_ = w.Stop(context.Background())
		}
		return fmt.Errorf("http server: %w", err)
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Stop taking new requests and jobs first; both finish what they hold.
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if w != nil {
		if err := w.Stop(sctx); err != nil {
			errs = append(errs, fmt.Errorf("worker shutdown: %w", err))
		}
	}
	log.Info("stopped", "duration_ms", time.Since(start).Milliseconds())
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func serverConfig(c config.Config) server.Config {
	return server.Config{
		MaxUploadBytes:       c.MaxUploadBytes,
		MaxPixels:            c.MaxPixels,
		MaxDimension:         c.MaxDimension,
		AllowPrivateNetworks: c.AllowPrivateNetworks,
		APIKeys:              c.APIKeys,
		TrustedProxies:       c.TrustedProxies,
	}
}

func workerConfig(c config.Config) worker.Config {
	return worker.Config{
		Concurrency:   c.WorkerConcurrency,
		JobTimeout:    c.JobTimeout,
		StaleAfter:    c.StaleAfter,
		MaxPixels:     c.MaxPixels,
		WakeOnEnqueue: c.WakeOnEnqueue,
	}
}

func notifierConfig(c config.Config) notifier.Config {
	return notifier.Config{
		MailFrom:                 c.MailFrom,
		SMTPURL:                  c.SMTPURL,
		OutboxDir:                c.OutboxDir,
		WebhookSecret:            c.WebhookSecret,
		CallbackTimeout:          c.CallbackTimeout,
		CallbackSchedule:         c.CallbackSchedule,
		EmailSchedule:            c.EmailSchedule,
		EmailPerRecipientPerHour: c.EmailPerRecipientPerHour,
		AllowPrivateNetworks:     c.AllowPrivateNetworks,
	}
}
