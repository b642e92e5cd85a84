package config

import (
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	is := is.New(t)
	c, err := Load(RoleAll, env(nil))
	is.NoErr(err)
	is.Equal(c.Addr, ":8080")
	is.Equal(c.Namespace, "thumbnailed")
	is.Equal(c.MaxUploadBytes, int64(20971520))
	is.Equal(c.MaxPixels, int64(50000000))
	is.Equal(c.MaxDimension, 4096)
	is.Equal(c.FetchTimeout, 10*time.Second)
	is.Equal(c.JobTimeout, 60*time.Second)
	is.Equal(c.ResultTTL, 24*time.Hour)
	is.Equal(c.WebUIAddr, "127.0.0.1:5040")
	is.Equal(len(c.CallbackSchedule), 7)
	is.Equal(c.CallbackSchedule[1], 5*time.Minute)
	is.Equal(len(c.EmailSchedule), 4)
	is.True(c.WorkerConcurrency >= 1)
	is.True(!c.AllowPrivateNetworks)
}

func TestEveryBadValueIsReportedAtOnce(t *testing.T) {
	is := is.New(t)
	_, err := Load(RoleAPI, env(map[string]string{
		"THUMBNAILED_MAX_PIXELS":              "lots",
		"THUMBNAILED_JOB_TIMEOUT":             "-1s",
		"THUMBNAILED_ALLOW_PRIVATE_NETWORKS":  "maybe",
		"THUMBNAILED_CALLBACK_RETRY_SCHEDULE": "5s,soon",
		"THUMBNAILED_WEBHOOK_SECRET":          "not-a-secret",
		"THUMBNAILED_TRUSTED_PROXIES":         "10.0.0.0/8,banana",
		"THUMBNAILED_WORKER_CONCURRENCY":      "0",
	}))
	is.True(err != nil)
	msg := err.Error()
	for _, name := range []string{
		"THUMBNAILED_REDIS_URL", // api needs a real Redis
		"THUMBNAILED_MAX_PIXELS",
		"THUMBNAILED_JOB_TIMEOUT",
		"THUMBNAILED_ALLOW_PRIVATE_NETWORKS",
		"THUMBNAILED_CALLBACK_RETRY_SCHEDULE",
		"THUMBNAILED_WEBHOOK_SECRET",
		"THUMBNAILED_TRUSTED_PROXIES",
		"THUMBNAILED_WORKER_CONCURRENCY",
	} {
		is.True(strings.Contains(msg, name)) // every bad variable is named
	}
}

func TestRolesNeedingRedis(t *testing.T) {
	for _, role := range []string{RoleAPI, RoleWorker, RoleWebUI} {
		t.Run(role, func(t *testing.T) {
			is := is.New(t)
			_, err := Load(role, env(nil))
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), "THUMBNAILED_REDIS_URL"))
			_, err = Load(role, env(map[string]string{"THUMBNAILED_REDIS_URL": "redis://127.0.0.1:6379/0"}))
			is.NoErr(err)
		})
	}
}

func TestUnknownRole(t *testing.T) {
	is := is.New(t)
	_, err := Load("everything", env(nil))
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "unknown role"))
}

func TestOpenMailRelayRefused(t *testing.T) {
	is := is.New(t)
	smtp := map[string]string{"THUMBNAILED_SMTP_URL": "smtp://u:p@mail.example.com:587"}
	_, err := Load(RoleAll, env(smtp))
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "THUMBNAILED_API_KEYS"))

	smtp["THUMBNAILED_ALLOW_ANONYMOUS_EMAIL"] = "true"
	_, err = Load(RoleAll, env(smtp))
	is.NoErr(err)

	delete(smtp, "THUMBNAILED_ALLOW_ANONYMOUS_EMAIL")
	smtp["THUMBNAILED_API_KEYS"] = "0123456789abcdef0123, fedcba9876543210fedc"
	c, err := Load(RoleAll, env(smtp))
	is.NoErr(err)
	is.Equal(c.APIKeys, []string{"0123456789abcdef0123", "fedcba9876543210fedc"})
}

func TestWebUIOnPublicAddressNeedsPassword(t *testing.T) {
	is := is.New(t)
	e := map[string]string{"THUMBNAILED_REDIS_URL": "redis://127.0.0.1:6379", "THUMBNAILED_WEBUI_ADDR": "0.0.0.0:5040"}
	_, err := Load(RoleWebUI, env(e))
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "THUMBNAILED_WEBUI_PASSWORD"))
	e["THUMBNAILED_WEBUI_PASSWORD"] = "correct horse"
	_, err = Load(RoleWebUI, env(e))
	is.NoErr(err)
}
