package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/connlimit"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/keys"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/server"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
	"github.com/thumbnailed/thumbnailed/web"
	"github.com/thumbnailed/thumbnailed/webui"
	"github.com/thumbnailed/thumbnailed/worker"
)

const usage = `usage: thumbnailed [all|api|worker|webui|healthcheck [webui]|version]

  all          the API and the workers in one process (the default); with
               THUMBNAILED_REDIS_URL empty it runs an embedded in-memory Redis
  api          the HTTP API only
  worker       the job workers only (serves /healthz, /readyz and /metrics)
  webui        the gocraft/work job web UI behind a password
  healthcheck  exits 0 when this container's process answers /healthz (webui: the web UI's)
  version      prints the version, commit, Go version and image engine

Configuration is by THUMBNAILED_* environment variables; see README.md.`

// run is the whole program: everything it needs from the OS comes in as an
// argument (environ is "NAME=value" pairs), so tests start it in-process. It
// returns when ctx is cancelled and everything has stopped.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	getenv := lookup(environ)
	role := config.RoleAll
	if len(args) > 1 {
		role = args[1]
	}
	switch role {
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionLine(thumbnail.Default))
		return nil
	case "healthcheck":
		return healthcheck(args[2:], getenv)
	}
	if len(args) > 2 {
		return fmt.Errorf("too many arguments\n%s", usage)
	}
	cfg, err := config.Load(role, getenv)
	if err != nil {
		// A misspelt name is often why a setting is missing: say so here too.
		msg := strings.Join(append([]string{err.Error()}, config.Unknown(environ)...), "\n")
		return fmt.Errorf("configuration:\n  %s", strings.ReplaceAll(msg, "\n", "\n  "))
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("role", role)
	for _, w := range config.Unknown(environ) {
		log.Warn(w)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if cfg.DebugAddr != "" {
		stop, err := startProfiler(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	if cfg.RedisURL == "" {
		url, stop, err := embeddedRedis(ctx, log)
		if err != nil {
			return err
		}
		defer stop()
		cfg.RedisURL = url
	} else if err := startupCheck(ctx, cancel, log, cfg.RedisURL); err != nil {
		return err
	}
	pool := newRedisPool(cfg.RedisURL)
	defer pool.Close()
	engine := thumbnail.Default
	log.Info("starting", "version", versionLine(engine), "addr", cfg.Addr)

	if role == config.RoleWebUI {
		return webui.Run(ctx, log, cfg.WebUI, cfg.Namespace, pool)
	}

	store := jobs.NewStore(pool, jobs.Options{Namespace: cfg.Namespace, TTL: cfg.ResultTTL, Lease: cfg.StaleAfter, Queue: worker.NewQueue(cfg.Namespace)})
	blobs, err := blob.Open(cfg.StorageURL, getenv, pool, cfg.Namespace)
	if err != nil {
		return err
	}
	ring, err := keys.Load(cfg.APIKeys, cfg.APIKeysFile)
	if err != nil {
		return err
	}
	stopReload := reloadKeysOnHUP(ring, log)
	defer stopReload()
	links := view.Links{Base: cfg.PublicURL, Secret: []byte(cfg.LinkSecret)}
	if cfg.LinkSecret == "" {
		links.Secret = []byte(rand.Text()) // the all role alone: links live as long as the process
		log.Warn("THUMBNAILED_LINK_SECRET is empty: signing links with a random key; links stop working when this process restarts")
	}
	m := metrics.New()
	m.Register(worker.QueueCollector(cfg.Namespace, pool))
	deps := server.Deps{Store: store, Blobs: blobs, Keys: ring, Links: links, Engine: engine, Metrics: m}
	log.Info("storage", "images", blobs.Name())

	var handler http.Handler
	switch role {
	case config.RoleAll, config.RoleAPI:
		if ring.Current().Len() == 0 {
			log.Warn("no API keys are set: the API is OPEN to anyone who can reach it")
		}
		if cfg.Fetch.AllowPrivate {
			log.Warn("THUMBNAILED_ALLOW_PRIVATE_NETWORKS=true: sources and callbacks may reach loopback and private addresses; never expose such a service")
		}
		deps.Limiter = jobs.NewRateLimiter(store, cfg.RateLimit, cfg.RateBurst)
		deps.Events = server.NewEvents(log)
		deps.Page = web.Handler()
		dial := subscriptionDialer(cfg.RedisURL)
		go deps.Events.Run(ctx, func(ctx context.Context, fn func(string)) error {
			return store.Subscribe(ctx, dial, "events", fn)
		})
		handler = server.New(log, cfg.Server, deps)
	default:
		handler = server.NewOps(log, deps)
	}

	var w *worker.Worker
	if role == config.RoleAll || role == config.RoleWorker {
		client := safehttp.New(cfg.Fetch)
		cfg.Notifier.AcceptedFormats = thumbnail.AcceptedList(engine)
		n, err := notifier.New(log, cfg.Notifier, store, blobs, client, ring, links, m)
		if err != nil {
			return err
		}
		w = worker.New(log, cfg.Worker, worker.Redis{Pool: pool, Dial: subscriptionDialer(cfg.RedisURL)}, store, client, blobs, n, engine, m)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (THUMBNAILED_ADDR): %w", cfg.Addr, err)
	}
	// No ReadTimeout or WriteTimeout: event streams stay open for minutes.
	// The handler that reads a body bounds that read itself.
	srv := &http.Server{Handler: handler, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if deps.Events != nil {
		// Shutdown waits for requests to finish; event streams never do by
		// themselves, so they are ended when it begins.
		srv.RegisterOnShutdown(deps.Events.Close)
	}
	limited := connlimit.Apply(srv, ln, cfg.Connections)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(limited) }()
	log.Info("listening", "addr", ln.Addr().String(), "max_connections", cfg.Connections.MaxConnections)
	if w != nil {
		w.Start() // in the background: a Redis that does not answer holds up nothing
	}

	var runErr error
	select {
	case <-ctx.Done():
		runErr = context.Cause(ctx)
		if errors.Is(runErr, context.Canceled) {
			runErr = nil
		}
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	start := time.Now()
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer scancel()
	// Stop taking new requests and work first; both finish what they hold.
	errs := []error{runErr}
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

// startupCheck refuses a Redis that evicts keys. A Redis that does not
// answer yet does not stop the start: the check goes on in the background,
// and a wrong policy found then stops the process.
func startupCheck(ctx context.Context, stop context.CancelCauseFunc, log *slog.Logger, url string) error {
	pool := newRedisPool(url)
	check := func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return checkEvictionPolicy(cctx, pool, log)
	}
	err := check(ctx)
	if err == nil || errors.Is(err, errEvictingRedis) {
		pool.Close()
		return err
	}
	log.Warn("Redis does not answer yet; its maxmemory-policy will be checked once it does", "error", err)
	go func() {
		defer pool.Close()
		for ctx.Err() == nil {
			err := check(ctx)
			if errors.Is(err, errEvictingRedis) {
				log.Error("stopping", "error", err)
				stop(err)
				return
			}
			if err == nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return nil
}

// reloadKeysOnHUP reads the keys file again on SIGHUP; a bad file is
// refused with a log line and the keys in force stay.
func reloadKeysOnHUP(ring *keys.Ring, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				if err := ring.Reload(); err != nil {
					log.Error("SIGHUP: the API keys were not reloaded; the keys in force stay", "error", err)
					continue
				}
				log.Info("SIGHUP: API keys reloaded", "keys", ring.Current().Len(), "file", ring.File())
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

// lookup is getenv over environ; the last setting of a name wins, as in a shell.
func lookup(environ []string) func(string) string {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return func(k string) string { return env[k] }
}
