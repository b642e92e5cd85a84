package config

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/notifier"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// refused checks that Load(role) with the variables e fails with a message
// naming every one of names, and returns the message.
func refused(t *testing.T, role string, e map[string]string, names ...string) string {
	t.Helper()
	_, err := Load(role, env(e))
	if err == nil {
		t.Fatalf("Load(%q) took %v", role, e)
	}
	for _, name := range names {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("the message does not name %s: %v", name, err)
		}
	}
	return err.Error()
}

// needs checks that Load(role) refuses the variables e, naming name, and
// takes them with name set to value.
func needs(t *testing.T, role string, e map[string]string, name, value string) {
	t.Helper()
	refused(t, role, e, name)
	with := maps.Clone(e)
	with[name] = value
	if _, err := Load(role, env(with)); err != nil {
		t.Fatalf("Load(%q) refused %v: %v", role, with, err)
	}
}

func TestDefaults(t *testing.T) {
	is := is.New(t)
	c, err := Load(RoleAll, env(nil))
	is.NoErr(err)
	is.Equal(c.Addr, ":8080")
	is.Equal(c.Namespace, "thumbnailed")
	is.Equal(c.Server.MaxUploadBytes, int64(20971520))
	is.Equal(c.Fetch.MaxBytes, int64(20971520)) // one setting, read once, given to both
	is.Equal(c.Server.MaxPixels, int64(50000000))
	is.Equal(c.Worker.MaxPixels, int64(50000000))
	is.Equal(c.Server.MaxDimension, 4096)
	is.Equal(c.Server.MaxOutputPixels, int64(40_000_000))
	is.Equal(c.Server.MaxInflightUploadBytes, int64(268435456))
	is.Equal(c.Fetch.Timeout, 10*time.Second)
	is.Equal(c.Worker.JobTimeout, 60*time.Second)
	is.Equal(c.ResultTTL, 24*time.Hour)
	is.Equal(c.Worker.StaleAfter, 30*time.Second)
	is.Equal(c.WebUI.Addr, "127.0.0.1:5040")
	is.Equal(len(c.Notifier.CallbackSchedule), 7)
	is.Equal(c.Notifier.CallbackSchedule[1], 5*time.Minute)
	is.Equal(len(c.Notifier.EmailSchedule), 4)
	is.Equal(c.Notifier.InlineMaxBytes, int64(262144))
	is.Equal(c.Notifier.SMTP, nil) // no SMTP: the outbox
	is.Equal(c.Notifier.OutboxDir, "./outbox")
	is.Equal(c.Connections.MaxConnections, 4096)
	is.Equal(c.Connections.IdleTimeout, 30*time.Second)
	is.Equal(c.Connections.HeaderTimeout, 10*time.Second)
	is.True(c.Worker.Concurrency >= 1 && c.Worker.Concurrency <= MaxConcurrency)
	is.True(!c.Fetch.AllowPrivate && !c.Server.AllowPrivateNetworks)
	is.Equal(c.Keys.Len(), 0) // open
	is.Equal(c.Storage.Backend, blob.BackendRedis)
	is.Equal(c.DebugAddr, "") // no profiler listener unless asked
}

func TestDeliveryDefaults(t *testing.T) {
	is := is.New(t)
	c, err := Load(RoleAll, env(nil))
	is.NoErr(err)
	is.Equal(c.Notifier.MailFrom, "thumbnailed@localhost")
	is.Equal(c.Notifier.CallbackTimeout, 15*time.Second)
	is.Equal(c.Notifier.EmailPerRecipientPerHour, 20)
	is.Equal(c.Notifier.WebhookSecret, "")
	is.Equal(c.RateLimit, float64(10))
	is.Equal(c.RateBurst, 20)
}

func TestBadDeliverySettingsAreRefusedWithoutEchoingSecrets(t *testing.T) {
	is := is.New(t)
	const secret = "whsec_not!base64"
	msg := refused(t, RoleAll, map[string]string{
		"THUMBNAILED_MAIL_FROM":                    "Thumbs <thumbs@example.com>",
		"THUMBNAILED_WEBHOOK_SECRET":               secret,
		"THUMBNAILED_CALLBACK_TIMEOUT":             "-5s",
		"THUMBNAILED_EMAIL_PER_RECIPIENT_PER_HOUR": "-1",
		"THUMBNAILED_SMTP_URL":                     "smtp://user:hunter2@mail.example.com:99999",
		"THUMBNAILED_ALLOW_ANONYMOUS_EMAIL":        "true",
	}, "THUMBNAILED_MAIL_FROM", "THUMBNAILED_WEBHOOK_SECRET", "THUMBNAILED_CALLBACK_TIMEOUT", // every bad variable is named
		"THUMBNAILED_EMAIL_PER_RECIPIENT_PER_HOUR", "THUMBNAILED_SMTP_URL")
	is.True(!strings.Contains(msg, secret))    // the webhook secret is not repeated
	is.True(!strings.Contains(msg, "hunter2")) // nor the SMTP password
}

func TestTheSMTPURLIsParsedOnce(t *testing.T) {
	is := is.New(t)
	c, err := Load(RoleWorker, env(map[string]string{"THUMBNAILED_REDIS_URL": "redis://127.0.0.1:6379", "THUMBNAILED_LINK_SECRET": "0123456789abcdef",
		"THUMBNAILED_SMTP_URL": "smtp://u:p%40ss@mail.example.com?tls=tls"}))
	is.NoErr(err)
	is.Equal(*c.Notifier.SMTP, notifier.SMTPServer{Host: "mail.example.com", Port: 465, Security: "tls", Username: "u", Password: "p@ss"})
}

// Issue 13 item 11: settings that would switch a protection off, or make
// the service unusable, stop the start with a message naming them.
func TestSettingsThatDisableAProtectionAreRefused(t *testing.T) {
	for name, values := range map[string][]string{
		"THUMBNAILED_RATE_LIMIT":         {"NaN", "nan", "Inf", "-Inf", "1e-300", "0", "-1", "1e400"},
		"THUMBNAILED_RESULT_TTL":         {"1ns", "999ms", "0s"},
		"THUMBNAILED_STALE_AFTER":        {"1ns", "500ms"},
		"THUMBNAILED_WORKER_CONCURRENCY": {"1024", "257", "0"},
		"THUMBNAILED_TRUSTED_PROXIES":    {"0.0.0.0/0", "::/0", "10.0.0.0/8,0.0.0.0/0"},
		"THUMBNAILED_MAX_CONNECTIONS":    {"0", "1"},
		"THUMBNAILED_IDLE_TIMEOUT":       {"1ns"},
		"THUMBNAILED_LINK_SECRET":        {"short"},
		"THUMBNAILED_PUBLIC_URL":         {"thumbs.example.com", "ftp://x", "https://x/?a=b"},
		"THUMBNAILED_STORAGE_URL":        {"s3://", "gs://bucket", "s3://b?endpoint=ftp://x"},
		// Held whole with images in Redis: below the largest upload, those
		// uploads could never be taken.
		"THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES": {"10485760", "1048576"},
	} {
		for _, v := range values {
			t.Run(name+"="+v, func(t *testing.T) {
				refused(t, RoleAll, map[string]string{name: v}, name) // the message names the variable
			})
		}
	}
}

func TestAPIAndWorkerNeedALinkSecret(t *testing.T) {
	for _, role := range []string{RoleAPI, RoleWorker} {
		needs(t, role, map[string]string{"THUMBNAILED_REDIS_URL": "redis://127.0.0.1:6379"}, "THUMBNAILED_LINK_SECRET", "0123456789abcdef")
	}
	_, err := Load(RoleAll, env(nil)) // all signs with a random key of its own
	is.New(t).NoErr(err)
}

func TestTheKeysFileIsReadAtStart(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "keys.json")
	is.NoErr(os.WriteFile(good, []byte(`[{"name":"acme","key":"acme-key-0123456789","webhook_secrets":["whsec_c3lzdGVtdGVzdC1zZWNyZXQtMzItYnl0ZXMhISE="]}]`), 0o600))
	c, err := Load(RoleAll, env(map[string]string{"THUMBNAILED_API_KEYS_FILE": good}))
	is.NoErr(err)
	is.Equal(c.Keys.Len(), 1)
	k, ok := c.Keys.Lookup("acme-key-0123456789")
	is.True(ok)
	is.Equal(k.Name, "acme")

	bad := filepath.Join(dir, "bad.json")
	is.NoErr(os.WriteFile(bad, []byte(`[{"name":"acme"}]`), 0o600))
	refused(t, RoleAll, map[string]string{"THUMBNAILED_API_KEYS_FILE": bad}, "THUMBNAILED_API_KEYS_FILE")
	refused(t, RoleAll, map[string]string{"THUMBNAILED_API_KEYS_FILE": filepath.Join(dir, "missing.json")})
}

// Load reads exactly the variables Names lists, so Unknown knows them all.
func TestNamesAreEveryVariableLoadReads(t *testing.T) {
	is := is.New(t)
	read := map[string]bool{}
	_, _ = Load(RoleAll, func(k string) string { read[k] = true; return "" })
	_, _ = LoadAddrs(func(k string) string { read[k] = true; return "" })
	listed := map[string]bool{}
	for _, n := range Names {
		listed[n] = true
		is.True(read[n]) // every listed name is read
	}
	for n := range read {
		is.True(listed[n]) // every read name is listed
	}
}

func TestUnknownVariablesAreNamedWithTheClosestKnownOne(t *testing.T) {
	is := is.New(t)
	warnings := Unknown([]string{"THUMBNAILED_RATELIMIT=5", "THUMBNAILED_ADDR=:8080", "HOME=/root", "THUMBNAILED_REDISURL=x", "THUMBNAILED_TEST_REDIS_URL=x"})
	is.Equal(len(warnings), 2)
	is.True(strings.Contains(warnings[0], "THUMBNAILED_RATELIMIT") && strings.Contains(warnings[0], "THUMBNAILED_RATE_LIMIT"))
	is.True(strings.Contains(warnings[1], "THUMBNAILED_REDISURL") && strings.Contains(warnings[1], "THUMBNAILED_REDIS_URL"))
}

func TestEveryBadValueIsReportedAtOnce(t *testing.T) {
	refused(t, RoleAPI, map[string]string{
		"THUMBNAILED_MAX_PIXELS":              "lots",
		"THUMBNAILED_JOB_TIMEOUT":             "-1s",
		"THUMBNAILED_ALLOW_PRIVATE_NETWORKS":  "maybe",
		"THUMBNAILED_CALLBACK_RETRY_SCHEDULE": "5s,soon",
		"THUMBNAILED_WEBHOOK_SECRET":          "not-a-secret",
		"THUMBNAILED_TRUSTED_PROXIES":         "10.0.0.0/8,banana",
		"THUMBNAILED_WORKER_CONCURRENCY":      "0",
	}, // every bad variable is named:
		"THUMBNAILED_REDIS_URL", // api needs a real Redis
		"THUMBNAILED_MAX_PIXELS",
		"THUMBNAILED_JOB_TIMEOUT",
		"THUMBNAILED_ALLOW_PRIVATE_NETWORKS",
		"THUMBNAILED_CALLBACK_RETRY_SCHEDULE",
		"THUMBNAILED_WEBHOOK_SECRET",
		"THUMBNAILED_TRUSTED_PROXIES",
		"THUMBNAILED_WORKER_CONCURRENCY",
	)
}

func TestRolesNeedingRedis(t *testing.T) {
	for _, role := range []string{RoleAPI, RoleWorker, RoleWebUI} {
		t.Run(role, func(t *testing.T) {
			is := is.New(t)
			refused(t, role, nil, "THUMBNAILED_REDIS_URL")
			_, err := Load(role, env(map[string]string{"THUMBNAILED_REDIS_URL": "redis://127.0.0.1:6379/0", "THUMBNAILED_LINK_SECRET": "0123456789abcdef"}))
			is.NoErr(err)
		})
	}
}

func TestUnknownRole(t *testing.T) {
	refused(t, "everything", nil, "unknown role")
}

func TestOpenMailRelayRefused(t *testing.T) {
	is := is.New(t)
	smtp := map[string]string{"THUMBNAILED_SMTP_URL": "smtp://u:p@mail.example.com:587"}
	refused(t, RoleAll, smtp, "THUMBNAILED_API_KEYS")

	smtp["THUMBNAILED_ALLOW_ANONYMOUS_EMAIL"] = "true"
	_, err := Load(RoleAll, env(smtp))
	is.NoErr(err)

	delete(smtp, "THUMBNAILED_ALLOW_ANONYMOUS_EMAIL")
	smtp["THUMBNAILED_API_KEYS"] = "0123456789abcdef0123, fedcba9876543210fedc"
	c, err := Load(RoleAll, env(smtp))
	is.NoErr(err)
	is.Equal(c.APIKeys, []string{"0123456789abcdef0123", "fedcba9876543210fedc"})
	is.Equal(c.Keys.Len(), 2)
}

func TestWebUIOnPublicAddressNeedsPassword(t *testing.T) {
	e := map[string]string{"THUMBNAILED_REDIS_URL": "redis://127.0.0.1:6379", "THUMBNAILED_WEBUI_ADDR": "0.0.0.0:5040"}
	needs(t, RoleWebUI, e, "THUMBNAILED_WEBUI_PASSWORD", "correct horse")
}

func TestTheProfilerListensOnLoopbackOnly(t *testing.T) {
	is := is.New(t)
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060", "127.0.0.2:0"} {
		c, err := Load(RoleAll, env(map[string]string{"THUMBNAILED_DEBUG_ADDR": addr}))
		is.NoErr(err)
		is.Equal(c.DebugAddr, addr)
	}
	for _, addr := range []string{":6060", "0.0.0.0:6060", "[::]:6060", "10.0.0.5:6060", "example.com:6060", "127.0.0.1"} {
		refused(t, RoleAll, map[string]string{"THUMBNAILED_DEBUG_ADDR": addr}, "THUMBNAILED_DEBUG_ADDR must be a loopback address", addr)
	}
}
