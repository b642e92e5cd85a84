package notifier

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/wneessen/go-mail"
)

// The notifier no longer checks or defaults its configuration: config.Load
// does, once (config/config.go; its tests TestDefaults and
// TestEveryBadValueIsReportedAtOnce), and New takes what it is given. What
// stays here are the notifier's own decisions.

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SMTPServer
	}{
		{"smtp://mail.example.com", SMTPServer{Host: "mail.example.com", Port: 587, Security: "starttls"}},
		{"smtp://mail.example.com?tls=starttls", SMTPServer{Host: "mail.example.com", Port: 587, Security: "starttls"}},
		{"smtp://mail.example.com?tls=tls", SMTPServer{Host: "mail.example.com", Port: 465, Security: "tls"}},
		{"smtp://mail.example.com?tls=none", SMTPServer{Host: "mail.example.com", Port: 25, Security: "none"}},
		{"smtp://mailpit:1025?tls=none", SMTPServer{Host: "mailpit", Port: 1025, Security: "none"}},
		{"smtps://mail.example.com", SMTPServer{Host: "mail.example.com", Port: 465, Security: "tls"}},
		{"smtp://apikey:p%40ss%2Fword@smtp.example.com:2525/", SMTPServer{Host: "smtp.example.com", Port: 2525, Security: "starttls", Username: "apikey", Password: "p@ss/word"}},
		{"smtp://[::1]:25?tls=NONE", SMTPServer{Host: "::1", Port: 25, Security: "none"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			is := is.New(t)
			got, err := ParseSMTPURL(tc.in)
			is.NoErr(err)
			is.Equal(got, tc.want)
		})
	}
}

func TestParseSMTPURLRefusesAndNeverRepeatsThePassword(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mail.example.com:25", "must start with smtp://"},
		{"http://user:hunter2@mail.example.com", "must start with smtp://"},
		{"smtp://user:hunter2@", "no host"},
		{"smtp://user:hunter2@mail.example.com?tls=yes", `tls="yes"`},
		{"smtp://user:hunter2@mail.example.com?tsl=none", `unknown parameter "tsl"`},
		{"smtp://user:hunter2@mail.example.com:0", `port "0"`},
		{"smtp://user:hunter2@mail.example.com:99999", `port "99999"`},
		{"smtp://user:hunter2@mail.example.com/path", "no path"},
		{"smtp://:hunter2@mail.example.com", "no user name"},
		{"smtp://user:hunter2@mail.example.com:%zz", "not a URL"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			is := is.New(t)
			_, err := ParseSMTPURL(tc.in)
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), tc.want))
			is.True(!strings.Contains(err.Error(), "hunter2"))
		})
	}
}

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
			s, err := ParseSMTPURL(tc.url)
			is.NoErr(err)
			c, err := mail.NewClient(s.Host, smtpOptions(s, 5*time.Second)...)
			is.NoErr(err)
			is.Equal(c.TLSPolicy(), tc.policy)
			is.Equal(c.ServerAddr(), tc.addr)
		})
	}
}

// Issue 13 item 8: a receiver's Retry-After can postpone the next attempt
// (up to 24 h) but never bring it earlier than the schedule. (It used to
// be honoured only up to the schedule's gap, and 0 meant one second.)
func TestNextDelay(t *testing.T) {
	is := is.New(t)
	gap := 5 * time.Minute
	is.Equal(nextDelay(gap, result{}), gap)
	is.Equal(nextDelay(gap, result{retryAfter: time.Minute, hasRetryAfter: true}), gap)             // not sooner
	is.Equal(nextDelay(gap, result{retryAfter: 0, hasRetryAfter: true}), gap)                       // 0 does not burn the schedule
	is.Equal(nextDelay(gap, result{retryAfter: time.Hour, hasRetryAfter: true}), time.Hour)         // later: postponed
	is.Equal(nextDelay(gap, result{retryAfter: 48 * time.Hour, hasRetryAfter: true}), 24*time.Hour) // up to a day
	is.Equal(nextDelay(30*time.Hour, result{retryAfter: 48 * time.Hour, hasRetryAfter: true}), 30*time.Hour)
	is.Equal(nextDelay(10*time.Millisecond, result{retryAfter: 0, hasRetryAfter: true}), 10*time.Millisecond)
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
	d, ok = parseRetryAfter("99999999999999", now)
	is.True(ok)
	is.Equal(d, 365*24*time.Hour) // no overflow
	_, ok = parseRetryAfter("-5", now)
	is.True(!ok)
	_, ok = parseRetryAfter("", now)
	is.True(!ok)
	_, ok = parseRetryAfter("tomorrow", now)
	is.True(!ok)
}

func TestClassifyMailError(t *testing.T) {
	is := is.New(t)
	r := classifyMailError(errors.New("dial tcp 10.0.0.1:25: i/o timeout"), "a@b.c")
	is.True(!r.final)
	is.True(!r.delivered)
	is.Equal(r.statusCode, 0) // no answer, no code
	mustContain(t, r.message, "could not hand the message to the mail server")
}

// Issue 15 item 5: the first bytes of a receiver's answer go to the
// attempt log, which the client sees in the job JSON and the events; a
// receiver that echoes credentials must not have them shown there.
func TestCleanResponseLeavesSecretsOut(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain text", "thanks, got it", "thanks, got it"},
		{"a token in a query", "see https://me.example.com/x?access_token=abc123&page=2", "see https://me.example.com/x?access_token=[redacted]&page=2"},
		{"a bearer header", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "Authorization: Bearer [redacted]"},
		{"a bare bearer", "sent with bearer abc.def", "sent with bearer [redacted]"},
		{"basic credentials", "Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [redacted]"},
		{"a JSON api_key", `{"api_key":"sk_live_123","ok":false}`, `{"api_key":"[redacted]","ok":false}`},
		{"a JSON password with spaces", `{"password" : "hunter2"}`, `{"password" : "[redacted]"}`},
		{"a client secret", "client_secret=s3cr3t; path=/", "client_secret=[redacted]; path=/"},
		{"a webhook secret", "your secret is whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw!", "your secret is [redacted]!"},
		{"a short webhook secret", "use whsec_c2hvcnQgc2VjcmV0IQ== instead", "use [redacted] instead"},
		{"a long random string", "request id 4f1c2a9be7d84b6c9a0e3f5d7c1b2a3e99 failed", "request id [redacted] failed"},
		{"control characters", "a\x00b\x1bc\r\nd\te", "a b c \nd\te"},
		{"invalid UTF-8", "a\xffb", "ab"},
		{"C1 controls", "a\u0085b\u009bc", "a b c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is.New(t).Equal(cleanResponse([]byte(tc.in)), tc.want)
		})
	}
}

func TestCleanResponseKeepsTheFirst256Bytes(t *testing.T) {
	is := is.New(t)
	long := strings.Repeat("abc ", 100)
	is.Equal(cleanResponse([]byte(long)), long[:256])

	// A secret that crosses the 256th byte is left out whole, not cut
	// down to a piece too short to look like one.
	secret := "k" + strings.Repeat("9Xq2", 12)
	got := cleanResponse([]byte(strings.Repeat(".", 240) + " " + secret + " the rest"))
	is.True(!strings.Contains(got, "9Xq2"))
	is.True(len(got) <= 256)

	// A character cut at the 256th byte is not left half.
	got = cleanResponse([]byte(strings.Repeat("ab ", 85) + "é"))
	is.Equal(got, strings.Repeat("ab ", 85))
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}
