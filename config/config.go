// Package config reads every THUMBNAILED_* setting, applies the documented
// defaults, and reports all bad values at once, each with its variable's name,
// before anything starts.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/thumbnailed/thumbnailed/retry"
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

// Config is every setting of the service.
type Config struct {
	Role string

	Addr              string
	RedisURL          string
	Namespace         string
	WorkerConcurrency int
	APIKeys           []string

	SMTPURL                  string
	OutboxDir                string
	MailFrom                 string
	WebhookSecret            string
	AllowAnonymousEmail      bool
	EmailPerRecipientPerHour int

	MaxUploadBytes int64
	MaxPixels      int64
	MaxDimension   int

	FetchTimeout     time.Duration
	JobTimeout       time.Duration
	ResultTTL        time.Duration
	ShutdownTimeout  time.Duration
	StaleAfter       time.Duration
	CallbackTimeout  time.Duration
	CallbackSchedule retry.Schedule
	EmailSchedule    retry.Schedule

	AllowPrivateNetworks bool

	RateLimit      float64
	RateBurst      int
	TrustedProxies []netip.Prefix

	WebUIAddr     string
	WebUIPassword string

	// WakeOnEnqueue makes idle workers start a new job at once (a Redis
	// pub/sub nudge) instead of within gocraft/work's polling delay of up to 5 s.
	WakeOnEnqueue bool

	LogLevel string
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
)

// Load reads the configuration of role from getenv.
func Load(role string, getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{Role: role}
	c.Addr = r.str("THUMBNAILED_ADDR", DefaultAddr)
	c.RedisURL = r.str("THUMBNAILED_REDIS_URL", "")
	c.Namespace = r.str("THUMBNAILED_NAMESPACE", DefaultNamespace)
	c.WorkerConcurrency = r.integer("THUMBNAILED_WORKER_CONCURRENCY", runtime.NumCPU(), 1, 1024)
	c.APIKeys = r.list("THUMBNAILED_API_KEYS")

	c.SMTPURL = r.str("THUMBNAILED_SMTP_URL", "")
	c.OutboxDir = r.str("THUMBNAILED_OUTBOX_DIR", DefaultOutboxDir)
	c.MailFrom = r.str("THUMBNAILED_MAIL_FROM", DefaultMailFrom)
	c.WebhookSecret = r.str("THUMBNAILED_WEBHOOK_SECRET", "")
	c.AllowAnonymousEmail = r.boolean("THUMBNAILED_ALLOW_ANONYMOUS_EMAIL", false)
	c.EmailPerRecipientPerHour = r.integer("THUMBNAILED_EMAIL_PER_RECIPIENT_PER_HOUR", DefaultEmailPerRecipientHour, 1, 1_000_000)

	c.MaxUploadBytes = int64(r.integer("THUMBNAILED_MAX_UPLOAD_BYTES", DefaultMaxUploadBytes, 1024, 1<<34))
	c.MaxPixels = int64(r.integer("THUMBNAILED_MAX_PIXELS", DefaultMaxPixels, 1, 1<<40))
	c.MaxDimension = r.integer("THUMBNAILED_MAX_DIMENSION", DefaultMaxDimension, 1, 65535)

	c.FetchTimeout = r.duration("THUMBNAILED_FETCH_TIMEOUT", DefaultFetchTimeout)
	c.JobTimeout = r.duration("THUMBNAILED_JOB_TIMEOUT", DefaultJobTimeout)
	c.ResultTTL = r.duration("THUMBNAILED_RESULT_TTL", DefaultResultTTL)
	c.ShutdownTimeout = r.duration("THUMBNAILED_SHUTDOWN_TIMEOUT", DefaultShutdownTimeout)
	c.StaleAfter = r.duration("THUMBNAILED_STALE_AFTER", DefaultStaleAfter)
	c.CallbackTimeout = r.duration("THUMBNAILED_CALLBACK_TIMEOUT", DefaultCallbackTimeout)
	c.CallbackSchedule = r.schedule("THUMBNAILED_CALLBACK_RETRY_SCHEDULE", DefaultCallbackSchedule)
	c.EmailSchedule = r.schedule("THUMBNAILED_EMAIL_RETRY_SCHEDULE", DefaultEmailSchedule)

	c.AllowPrivateNetworks = r.boolean("THUMBNAILED_ALLOW_PRIVATE_NETWORKS", false)

	c.RateLimit = r.float("THUMBNAILED_RATE_LIMIT", DefaultRateLimit)
	c.RateBurst = r.integer("THUMBNAILED_RATE_BURST", DefaultRateBurst, 1, 1_000_000)
	c.TrustedProxies = r.prefixes("THUMBNAILED_TRUSTED_PROXIES")

	c.WebUIAddr = r.str("THUMBNAILED_WEBUI_ADDR", DefaultWebUIAddr)
	c.WebUIPassword = r.str("THUMBNAILED_WEBUI_PASSWORD", "")
	c.LogLevel = r.str("THUMBNAILED_LOG_LEVEL", "info")
	c.WakeOnEnqueue = r.boolean("THUMBNAILED_WAKE_ON_ENQUEUE", true)

	c.validate(&r)
	return c, errors.Join(r.errs...)
}

func (c *Config) validate(r *reader) {
	known := false
	for _, role := range Roles {
		known = known || role == c.Role
	}
	if !known {
		r.errs = append(r.errs, fmt.Errorf("unknown role %q: use one of %s", c.Role, strings.Join(Roles, ", ")))
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
	if _, _, err := net.SplitHostPort(c.WebUIAddr); err != nil {
		r.fail("THUMBNAILED_WEBUI_ADDR", "must be host:port (%v)", err)
	}
	for _, k := range c.APIKeys {
		if len(k) < 16 {
			r.fail("THUMBNAILED_API_KEYS", "every key must be at least 16 characters (one is %d)", len(k))
			break
		}
	}
	if c.SMTPURL != "" {
		if _, err := ParseSMTPURL(c.SMTPURL); err != nil {
			r.errs = append(r.errs, err) // its messages name the variable, never the password
		}
		if (c.Role == RoleAll || c.Role == RoleAPI) && len(c.APIKeys) == 0 && !c.AllowAnonymousEmail {
			r.fail("THUMBNAILED_SMTP_URL", "is set while THUMBNAILED_API_KEYS is empty: an open service would relay mail for anyone; set API keys, or THUMBNAILED_ALLOW_ANONYMOUS_EMAIL=true if that is really intended")
		}
	}
	if c.MailFrom == "" || strings.ContainsAny(c.MailFrom, "\r\n") || !strings.Contains(c.MailFrom, "@") {
		r.fail("THUMBNAILED_MAIL_FROM", "must be an email address")
	}
	if c.WebhookSecret != "" {
		raw, ok := strings.CutPrefix(c.WebhookSecret, "whsec_")
		b, err := base64.StdEncoding.DecodeString(raw)
		if !ok || err != nil || len(b) < 16 {
			r.fail("THUMBNAILED_WEBHOOK_SECRET", "must be whsec_ followed by base64 of at least 16 random bytes")
		}
	}
	if c.Role == RoleWebUI {
		if host, _, err := net.SplitHostPort(c.WebUIAddr); err == nil && c.WebUIPassword == "" && !isLoopback(host) {
			r.fail("THUMBNAILED_WEBUI_ADDR", "binds %s, which is not a loopback address, while THUMBNAILED_WEBUI_PASSWORD is empty: set a password", c.WebUIAddr)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.fail("THUMBNAILED_LOG_LEVEL", "must be debug, info, warn or error")
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
	for _, part := range strings.Split(r.getenv(name), ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (r *reader) integer(name string, def, lo, hi int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(name, "must be a whole number from %d to %d, not %q", lo, hi, v)
		return def
	}
	return n
}

func (r *reader) float(name string, def float64) float64 {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		r.fail(name, "must be a positive number, not %q", v)
		return def
	}
	return f
}

func (r *reader) boolean(name string, def bool) bool {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "must be true or false, not %q", v)
		return def
	}
	return b
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, "must be a positive duration like 30s or 5m, not %q", v)
		return def
	}
	return d
}

func (r *reader) schedule(name, def string) retry.Schedule {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		v = def
	}
	s, err := retry.Parse(v)
	if err != nil {
		r.fail(name, "%v", err)
	}
	return s
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
