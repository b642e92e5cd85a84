package notifier

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/wneessen/go-mail"

	"github.com/thumbnailed/thumbnailed/config"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/retry"
)

func TestSMTPOptionsAlwaysSetTheTLSPolicy(t *testing.T) {
	for _, tc := range []struct {
		url, policy, addr string
	}{
		{"smtp://mail.example.com", "TLSMandatory", "mail.example.com:587"},
		{"smtp://mail.example.com:25?tls=none", "NoTLS", "mail.example.com:25"}, // not go-mail's mandatory STARTTLS
		{"smtp://mail.example.com?tls=tls", "TLSMandatory", "mail.example.com:465"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			is := is.New(t)
			s, err := config.ParseSMTPURL(tc.url)
			is.NoErr(err)
			c, err := mail.NewClient(s.Host, smtpOptions(s, 5*time.Second)...)
			is.NoErr(err)
			is.Equal(c.TLSPolicy(), tc.policy)
			is.Equal(c.ServerAddr(), tc.addr)
		})
	}
}

func TestConfigReportsEveryProblemAtOnce(t *testing.T) {
	is := is.New(t)
	_, err := Config{
		MailFrom:                 "not an address",
		SMTPURL:                  "smtp://user:hunter2@mail.example.com?tls=maybe",
		WebhookSecret:            "whsec_!!!",
		CallbackTimeout:          -time.Second,
		CallbackSchedule:         retry.Schedule{time.Second, 0},
		EmailPerRecipientPerHour: -1,
	}.withDefaults()
	is.True(err != nil)
	for _, want := range []string{"THUMBNAILED_MAIL_FROM", "THUMBNAILED_SMTP_URL", "THUMBNAILED_WEBHOOK_SECRET",
		"THUMBNAILED_CALLBACK_TIMEOUT", "THUMBNAILED_CALLBACK_RETRY_SCHEDULE", "per recipient"} {
		is.True(strings.Contains(err.Error(), want))
	}
	is.True(!strings.Contains(err.Error(), "hunter2"))
	is.True(!strings.Contains(err.Error(), "!!!")) // nor the secret

	cfg, err := Config{}.withDefaults()
	is.NoErr(err)
	is.Equal(cfg.MailFrom, DefaultMailFrom)
	is.Equal(cfg.OutboxDir, DefaultOutboxDir)
	is.Equal(cfg.CallbackTimeout, DefaultCallbackTimeout)
	is.Equal(cfg.CallbackSchedule.String(), DefaultCallbackSchedule)
	is.Equal(cfg.EmailSchedule.String(), DefaultEmailSchedule)
	is.Equal(cfg.EmailPerRecipientPerHour, DefaultEmailPerRecipientPerHour)
}

func TestNewNeedsAStoreAndAQueue(t *testing.T) {
	is := is.New(t)
	_, err := New(nil, Config{OutboxDir: t.TempDir()}, nil, nil, nil, nil)
	is.True(err != nil)
	_, err = New(nil, Config{OutboxDir: t.TempDir()}, &jobs.Store{}, nil, nil, nil)
	is.True(err != nil)
}

func TestNextDelay(t *testing.T) {
	is := is.New(t)
	gap := 5 * time.Minute
	is.Equal(nextDelay(gap, outcome{}), gap)
	is.Equal(nextDelay(gap, outcome{retryAfter: time.Minute, hasRetryAfter: true}), time.Minute)
	is.Equal(nextDelay(gap, outcome{retryAfter: time.Hour, hasRetryAfter: true}), gap)
	is.Equal(nextDelay(gap, outcome{retryAfter: 0, hasRetryAfter: true}), time.Second)
	is.Equal(nextDelay(10*time.Millisecond, outcome{retryAfter: 0, hasRetryAfter: true}), 10*time.Millisecond)
}

func TestParseRetryAfter(t *testing.T) {
	is := is.New(t)
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	d, ok := parseRetryAfter("120", now)
	is.True(ok)
	is.Equal(d, 2*time.Minute)
	d, ok = parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now)
	is.True(ok)
	is.Equal(d, 90*time.Second)
	d, ok = parseRetryAfter(now.Add(-time.Hour).Format(http.TimeFormat), now)
	is.True(ok)
	is.Equal(d, time.Duration(0)) // a date in the past: now
	_, ok = parseRetryAfter("-5", now)
	is.True(!ok)
	_, ok = parseRetryAfter("", now)
	is.True(!ok)
	_, ok = parseRetryAfter("tomorrow", now)
	is.True(!ok)
}

func TestClassifyMailError(t *testing.T) {
	is := is.New(t)
	o := classifyMailError(errors.New("dial tcp 10.0.0.1:25: i/o timeout"), "a@b.c")
	is.True(!o.final)
	is.True(!o.delivered)
}
