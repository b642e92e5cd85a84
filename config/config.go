// Package config reads every THUMBNAILED_* setting once: it applies the
// documented defaults, refuses every bad value at once (each with its
// variable's name) before anything starts, and hands each package its own
// ready Config. Packages do not read, default or check settings again.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/connlimit"
	"github.com/thumbnailed/thumbnailed/keys"
	"github.com/thumbnailed/thumbnailed/notifier"
	"github.com/thumbnailed/thumbnailed/retry"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/server"
	"github.com/thumbnailed/thumbnailed/webui"
	"github.com/thumbnailed/thumbnailed/worker"
)

// Roles a process can take.
const (
	RoleAll    = "all"
	RoleAPI    = "api"
	RoleWorker = "worker"
	RoleWebUI  = "webui"
)

// Roles lists every role the binary accepts.
var Roles = []string{RoleAll, RoleAPI, RoleWorker, RoleWebUI}

// Config is every setting, read and checked, in the shape each package takes.
type Config struct {
	Role     string
	Addr     string
	LogLevel slog.Level
	// DebugAddr serves the Go profiler (net/http/pprof) on a listener of its
	// own, never on Addr; "" = off. Only a loopback address is accepted.
	DebugAddr string

	RedisURL  string // "" in the all role: an embedded in-memory Redis
	Namespace string
	Storage   blob.Config
	// StorageURL is THUMBNAILED_STORAGE_URL as given (blob.Open reads it).
	StorageURL string

	APIKeys     []string // THUMBNAILED_API_KEYS, in clear
	APIKeysFile string
	Keys        *keys.Set // both, parsed (the file as it was at start)

	ResultTTL       time.Duration
	StaleAfter      time.Duration
	ShutdownTimeout time.Duration

	RateLimit float64
	RateBurst int

	// PublicURL is the API's public base URL without a trailing slash ("" = links are paths).
	PublicURL string
	// LinkSecret signs links; "" in the all role means a random one per start.
	LinkSecret string

	Connections connlimit.Limits
	Fetch       safehttp.Options
	Server      server.Config
	Worker      worker.Config
	Notifier    notifier.Config
	WebUI       webui.Config
}

// Defaults, as documented in DESIGN.md and the README.
const (
	DefaultAddr                  = ":8080"
	DefaultNamespace             = "thumbnailed"
	DefaultOutboxDir             = "./outbox"
	DefaultMailFrom              = "thumbnailed@localhost"
	DefaultMaxUploadBytes        = 20 << 20
	DefaultMaxPixels             = 50_000_000
	DefaultMaxDimension          = 4096
	DefaultMaxOutputPixels       = 40_000_000
	DefaultFetchTimeout          = 10 * time.Second
	DefaultJobTimeout            = 60 * time.Second
	DefaultResultTTL             = 24 * time.Hour
	DefaultShutdownTimeout       = 30 * time.Second
	DefaultStaleAfter            = 30 * time.Second
	DefaultCallbackTimeout       = 15 * time.Second
	DefaultCallbackSchedule      = "5s,5m,30m,2h,5h,10h,10h"
	DefaultEmailSchedule         = "1m,5m,30m,2h"
	DefaultWebUIAddr             = "127.0.0.1:5040"
	DefaultRateLimit             = 10
	DefaultRateBurst             = 20
	DefaultEmailPerRecipientHour = 20
	DefaultInflightUploadBytes   = 256 << 20
	DefaultMaxConnections        = 4096
	DefaultIdleTimeout           = 30 * time.Second
	DefaultInlineMaxBytes        = 256 << 10
	// HeaderTimeout closes a connection that has not sent a whole request
	// header in time (slowloris).
	HeaderTimeout = 10 * time.Second
	// MaxConcurrency bounds THUMBNAILED_WORKER_CONCURRENCY: every job slot
	// is a gocraft/work pool that polls Redis of its own.
	MaxConcurrency = 256
)

// Load reads the configuration of role from getenv.
func Load(role string, getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{Role: role}
	c.Addr = r.str("THUMBNAILED_ADDR", DefaultAddr)
	c.LogLevel = r.level("THUMBNAILED_LOG_LEVEL")
	c.DebugAddr = r.str("THUMBNAILED_DEBUG_ADDR", "")
	c.RedisURL = r.str("THUMBNAILED_REDIS_URL", "")
	c.Namespace = r.str("THUMBNAILED_NAMESPACE", DefaultNamespace)
	c.StorageURL = r.str("THUMBNAILED_STORAGE_URL", "")
	if s, err := blob.ParseURL(c.StorageURL); err != nil {
		r.errs = append(r.errs, err) // its messages name the variable, never a secret
	} else {
		c.Storage = s
	}
	c.APIKeys = r.list("THUMBNAILED_API_KEYS")
	c.APIKeysFile = r.str("THUMBNAILED_API_KEYS_FILE", "")

	c.ResultTTL = r.duration("THUMBNAILED_RESULT_TTL", DefaultResultTTL, time.Second)
	c.StaleAfter = r.duration("THUMBNAILED_STALE_AFTER", DefaultStaleAfter, time.Second)
	c.ShutdownTimeout = r.duration("THUMBNAILED_SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, time.Millisecond)
	c.RateLimit = r.rate("THUMBNAILED_RATE_LIMIT", DefaultRateLimit)
	c.RateBurst = r.integer("THUMBNAILED_RATE_BURST", DefaultRateBurst, 1, 1_000_000)
	c.PublicURL = strings.TrimSuffix(r.str("THUMBNAILED_PUBLIC_URL", ""), "/")
	c.LinkSecret = r.str("THUMBNAILED_LINK_SECRET", "")

	c.Connections = connlimit.Limits{
		MaxConnections: r.integer("THUMBNAILED_MAX_CONNECTIONS", DefaultMaxConnections, 16, 1_000_000),
		IdleTimeout:    r.duration("THUMBNAILED_IDLE_TIMEOUT", DefaultIdleTimeout, time.Second),
		HeaderTimeout:  HeaderTimeout,
	}
	maxUpload := int64(r.integer("THUMBNAILED_MAX_UPLOAD_BYTES", DefaultMaxUploadBytes, 1024, 1<<34))
	maxPixels := int64(r.integer("THUMBNAILED_MAX_PIXELS", DefaultMaxPixels, 1, 1<<40))
	allowPrivate := r.boolean("THUMBNAILED_ALLOW_PRIVATE_NETWORKS", false)
	c.Fetch = safehttp.Options{
		AllowPrivate: allowPrivate,
		MaxBytes:     maxUpload,
		Timeout:      r.duration("THUMBNAILED_FETCH_TIMEOUT", DefaultFetchTimeout, time.Millisecond),
	}
	c.Server = server.Config{
		MaxUploadBytes:         maxUpload,
		MaxPixels:              maxPixels,
		MaxDimension:           r.integer("THUMBNAILED_MAX_DIMENSION", DefaultMaxDimension, 1, 16383),
		MaxOutputPixels:        int64(r.integer("THUMBNAILED_MAX_OUTPUT_PIXELS", DefaultMaxOutputPixels, 1, 1<<40)),
		MaxInflightUploadBytes: int64(r.integer("THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES", DefaultInflightUploadBytes, 1<<20, 1<<40)),
		AllowPrivateNetworks:   allowPrivate,
		TrustedProxies:         r.prefixes("THUMBNAILED_TRUSTED_PROXIES"),
		ResultTTL:              c.ResultTTL,
	}
	c.Worker = worker.Config{
		Namespace:     c.Namespace,
		Concurrency:   r.integer("THUMBNAILED_WORKER_CONCURRENCY", min(runtime.NumCPU(), MaxConcurrency), 1, MaxConcurrency),
		JobTimeout:    r.duration("THUMBNAILED_JOB_TIMEOUT", DefaultJobTimeout, time.Millisecond),
		StaleAfter:    c.StaleAfter,
		MaxPixels:     maxPixels,
		WakeOnEnqueue: r.boolean("THUMBNAILED_WAKE_ON_ENQUEUE", true),
		RetrySchedule: worker.DefaultRetrySchedule,
		ResultTTL:     c.ResultTTL,
	}
	c.Notifier = notifier.Config{
		MailFrom:                 r.str("THUMBNAILED_MAIL_FROM", DefaultMailFrom),
		OutboxDir:                r.str("THUMBNAILED_OUTBOX_DIR", DefaultOutboxDir),
		SMTPTimeout:              notifier.DefaultSMTPTimeout,
		WebhookSecret:            r.str("THUMBNAILED_WEBHOOK_SECRET", ""),
		CallbackTimeout:          r.duration("THUMBNAILED_CALLBACK_TIMEOUT", DefaultCallbackTimeout, time.Millisecond),
		CallbackSchedule:         r.schedule("THUMBNAILED_CALLBACK_RETRY_SCHEDULE", DefaultCallbackSchedule),
		EmailSchedule:            r.schedule("THUMBNAILED_EMAIL_RETRY_SCHEDULE", DefaultEmailSchedule),
		EmailPerRecipientPerHour: r.integer("THUMBNAILED_EMAIL_PER_RECIPIENT_PER_HOUR", DefaultEmailPerRecipientHour, 1, 1_000_000),
		InlineMaxBytes:           int64(r.integer("THUMBNAILED_CALLBACK_INLINE_MAX_BYTES", DefaultInlineMaxBytes, 0, 16<<20)),
	}
	if smtpURL := r.str("THUMBNAILED_SMTP_URL", ""); smtpURL != "" {
		if s, err := notifier.ParseSMTPURL(smtpURL); err != nil {
			r.errs = append(r.errs, err) // its messages name the variable, never the password
		} else {
			c.Notifier.SMTP = &s
		}
	}
	allowAnonymousEmail := r.boolean("THUMBNAILED_ALLOW_ANONYMOUS_EMAIL", false)
	c.WebUI = webui.Config{
		Addr:     r.str("THUMBNAILED_WEBUI_ADDR", DefaultWebUIAddr),
		Password: r.str("THUMBNAILED_WEBUI_PASSWORD", ""),
		Hosts:    r.list("THUMBNAILED_WEBUI_HOSTS"),
	}

	c.validate(&r, allowAnonymousEmail)
	return c, errors.Join(r.errs...)
}

func (c *Config) validate(r *reader, allowAnonymousEmail bool) {
	known := false
	for _, role := range Roles {
		known = known || role == c.Role
	}
	if !known {
		r.errs = append(r.errs, fmt.Errorf("unknown role %q: use one of %s (or the commands healthcheck and version)", c.Role, strings.Join(Roles, ", ")))
	}
	if c.RedisURL == "" && (c.Role == RoleAPI || c.Role == RoleWorker || c.Role == RoleWebUI) {
		r.fail("THUMBNAILED_REDIS_URL", "is required for the %s role (only the all-in-one role runs an embedded Redis)", c.Role)
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			r.fail("THUMBNAILED_REDIS_URL", "must look like redis://[:password@]host:port[/db]")
		}
	}
	if c.Namespace == "" || strings.ContainsAny(c.Namespace, " :\r\n\t") {
		r.fail("THUMBNAILED_NAMESPACE", "must be a non-empty name without spaces or colons")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		r.fail("THUMBNAILED_ADDR", "must be host:port or :port (%v)", err)
	}
	if c.DebugAddr != "" {
		host, _, err := net.SplitHostPort(c.DebugAddr)
		if err != nil || !isLoopback(host) {
			r.fail("THUMBNAILED_DEBUG_ADDR", "must be a loopback address such as 127.0.0.1:6060, not %q: it serves the process's profiles, which must never be public", c.DebugAddr)
		}
	}
	if _, _, err := net.SplitHostPort(c.WebUI.Addr); err != nil {
		r.fail("THUMBNAILED_WEBUI_ADDR", "must be host:port (%v)", err)
	}
	if ring, err := keys.Load(c.APIKeys, c.APIKeysFile); err != nil {
		r.errs = append(r.errs, err)
	} else {
		c.Keys = ring.Current()
	}
	open := c.Keys == nil || c.Keys.Len() == 0
	if c.Notifier.SMTP != nil && (c.Role == RoleAll || c.Role == RoleAPI) && open && !allowAnonymousEmail {
		r.fail("THUMBNAILED_SMTP_URL", "is set while there are no API keys (THUMBNAILED_API_KEYS or THUMBNAILED_API_KEYS_FILE): an open service would relay mail for anyone; set API keys, or THUMBNAILED_ALLOW_ANONYMOUS_EMAIL=true if that is really intended")
	}
	if a, err := mail.ParseAddress(c.Notifier.MailFrom); err != nil || a.Name != "" || strings.ContainsAny(c.Notifier.MailFrom, "\r\n") {
		r.fail("THUMBNAILED_MAIL_FROM", "must be a plain email address such as thumbnails@example.com")
	}
	if c.Notifier.WebhookSecret != "" && keys.ValidSecret(c.Notifier.WebhookSecret) != nil {
		r.fail("THUMBNAILED_WEBHOOK_SECRET", "must be whsec_ followed by base64 of at least 16 random bytes")
	}
	switch {
	case c.Storage.Backend != blob.BackendS3 && c.Server.MaxInflightUploadBytes < c.Server.MaxUploadBytes:
		r.fail("THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES", "is %d, below THUMBNAILED_MAX_UPLOAD_BYTES (%d): with images in Redis an upload is held whole, so the largest uploads could never be taken", c.Server.MaxInflightUploadBytes, c.Server.MaxUploadBytes)
	case c.Server.MaxInflightUploadBytes < 8<<20:
		r.fail("THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES", "is %d; a streamed upload holds up to about 6 MiB, so at least 8388608 is needed", c.Server.MaxInflightUploadBytes)
	}
	for _, p := range c.Server.TrustedProxies {
		if p.Bits() == 0 {
			r.fail("THUMBNAILED_TRUSTED_PROXIES", "must not contain %s: that would believe X-Forwarded-For from every address, and any client could choose its own rate limit", p)
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			r.fail("THUMBNAILED_PUBLIC_URL", "must be the API's base URL, such as https://thumbs.example.com")
		}
	}
	switch {
	case c.LinkSecret != "" && len(c.LinkSecret) < 16:
		r.fail("THUMBNAILED_LINK_SECRET", "must be at least 16 characters")
	case c.LinkSecret == "" && (c.Role == RoleAPI || c.Role == RoleWorker):
		r.fail("THUMBNAILED_LINK_SECRET", "is required for the %s role: every api and worker process must sign links with the same key", c.Role)
	}
	if c.Role == RoleWebUI {
		if host, _, err := net.SplitHostPort(c.WebUI.Addr); err == nil && c.WebUI.Password == "" && !isLoopback(host) {
			r.fail("THUMBNAILED_WEBUI_ADDR", "binds %s, which is not a loopback address, while THUMBNAILED_WEBUI_PASSWORD is empty: set a password", c.WebUI.Addr)
		}
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s %s", name, fmt.Sprintf(format, args...)))
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) list(name string) []string {
	var out []string
	for _, part := range strings.Split(r.str(name, ""), ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parsed reads name with parse: empty is def, and a value parse refuses is
// reported with the rule it breaks (and def is kept, so that every other
// mistake is found in the same pass).
func parsed[T any](r *reader, name string, def T, parse func(string) (T, bool), rule string) T {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	x, ok := parse(v)
	if !ok {
		r.fail(name, "%s, not %q", rule, v)
		return def
	}
	return x
}

func (r *reader) integer(name string, def, lo, hi int) int {
	return parsed(r, name, def, func(v string) (int, bool) {
		n, err := strconv.Atoi(v)
		return n, err == nil && n >= lo && n <= hi
	}, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
}

// rate reads requests per second: a positive finite number, not so small
// that its interval overflows (which would switch the limit off).
func (r *reader) rate(name string, def float64) float64 {
	return parsed(r, name, def, func(v string) (float64, bool) {
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0.001 && f <= 1e6
	}, "must be a number of requests per second from 0.001 to 1000000")
}

func (r *reader) boolean(name string, def bool) bool {
	return parsed(r, name, def, func(v string) (bool, bool) {
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}, "must be true or false")
}

// duration reads a duration of at least least.
func (r *reader) duration(name string, def, least time.Duration) time.Duration {
	return parsed(r, name, def, func(v string) (time.Duration, bool) {
		d, err := time.ParseDuration(v)
		return d, err == nil && d >= least
	}, fmt.Sprintf("must be a duration of at least %s, like 30s or 5m", least))
}

func (r *reader) schedule(name, def string) retry.Schedule {
	v := r.str(name, "")
	if v == "" {
		v = def
	}
	s, err := retry.Parse(v)
	if err != nil {
		r.fail(name, "%v", err)
	}
	return s
}

func (r *reader) level(name string) slog.Level {
	var l slog.Level
	v := r.str(name, "info")
	switch v {
	case "debug", "info", "warn", "error":
		_ = l.UnmarshalText([]byte(v))
	default:
		r.fail(name, "must be debug, info, warn or error")
	}
	return l
}

func (r *reader) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, part := range r.list(name) {
		p, err := netip.ParsePrefix(part)
		if err != nil {
			ip, err2 := netip.ParseAddr(part)
			if err2 != nil {
				r.fail(name, "must be a comma-separated list of CIDRs, and %q is not one", part)
				continue
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

// Addrs are the listen addresses, for the health check.
type Addrs struct{ API, WebUI string }

// LoadAddrs reads only the listen addresses, with their defaults, the way
// Load does.
func LoadAddrs(getenv func(string) string) (Addrs, error) {
	r := reader{getenv: getenv}
	a := Addrs{API: r.str("THUMBNAILED_ADDR", DefaultAddr), WebUI: r.str("THUMBNAILED_WEBUI_ADDR", DefaultWebUIAddr)}
	return a, errors.Join(r.errs...)
}
