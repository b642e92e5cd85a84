package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/webhook"
)

// The published Standard Webhooks test vector (the reference libraries'
// sign test). Reproducing it is what says a receiver's existing library will
// accept what we send.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var vectorTime = time.Unix(vectorTimestamp, 0)

func vectorHeaders(signature string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderID, vectorID)
	h.Set(webhook.HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	h.Set(webhook.HeaderSignature, signature)
	return h
}

func TestSignReproducesTheSpecTestVector(t *testing.T) {
	is := is.New(t)
	got, err := webhook.Sign(vectorSecret, vectorID, vectorTime, []byte(vectorBody))
	is.NoErr(err)
	is.Equal(got, vectorSignature)

	// Like the reference libraries, the prefix is optional.
	got, err = webhook.Sign(strings.TrimPrefix(vectorSecret, "whsec_"), vectorID, vectorTime, []byte(vectorBody))
	is.NoErr(err)
	is.Equal(got, vectorSignature)
}

func TestVerifyAcceptsTheSpecTestVector(t *testing.T) {
	is := is.New(t)
	is.NoErr(webhook.VerifyAt(vectorSecret, vectorHeaders(vectorSignature), []byte(vectorBody), 5*time.Minute, vectorTime))
	// Within the tolerance either way.
	is.NoErr(webhook.VerifyAt(vectorSecret, vectorHeaders(vectorSignature), []byte(vectorBody), 5*time.Minute, vectorTime.Add(4*time.Minute)))
	is.NoErr(webhook.VerifyAt(vectorSecret, vectorHeaders(vectorSignature), []byte(vectorBody), 5*time.Minute, vectorTime.Add(-4*time.Minute)))
}

func TestVerifyAcceptsAnyOfSeveralSignatures(t *testing.T) {
	is := is.New(t)
	// During a secret rotation a sender signs with both secrets; an
	// asymmetric v1a signature is skipped, not an error.
	h := vectorHeaders("v1a,c29tZXRoaW5nZWxzZQ== v1,bm9wZQ== " + vectorSignature)
	is.NoErr(webhook.VerifyAt(vectorSecret, h, []byte(vectorBody), 0, vectorTime))
}

func TestVerifyRejects(t *testing.T) {
	body := []byte(vectorBody)
	for _, tc := range []struct {
		name    string
		secret  string
		headers http.Header
		body    []byte
		now     time.Time
		want    error
	}{
		{"a changed body", vectorSecret, vectorHeaders(vectorSignature), []byte(`{"test": 2432232315}`), vectorTime, webhook.ErrInvalidSignature},
		{"another secret", "whsec_" + "c2VjcmV0c2VjcmV0c2VjcmV0", vectorHeaders(vectorSignature), body, vectorTime, webhook.ErrInvalidSignature},
		{"a signature of another version", vectorSecret, vectorHeaders("v2," + strings.TrimPrefix(vectorSignature, "v1,")), body, vectorTime, webhook.ErrInvalidSignature},
		{"a signature that is not base64", vectorSecret, vectorHeaders("v1,***"), body, vectorTime, webhook.ErrInvalidSignature},
		{"a replay after the tolerance", vectorSecret, vectorHeaders(vectorSignature), body, vectorTime.Add(6 * time.Minute), webhook.ErrTimestampTooOld},
		{"a timestamp from the future", vectorSecret, vectorHeaders(vectorSignature), body, vectorTime.Add(-6 * time.Minute), webhook.ErrTimestampTooNew},
		{"no signature", vectorSecret, func() http.Header { h := vectorHeaders(vectorSignature); h.Del(webhook.HeaderSignature); return h }(), body, vectorTime, webhook.ErrMissingHeaders},
		{"no id", vectorSecret, func() http.Header { h := vectorHeaders(vectorSignature); h.Del(webhook.HeaderID); return h }(), body, vectorTime, webhook.ErrMissingHeaders},
		{"a timestamp that is not a number", vectorSecret, func() http.Header {
			h := vectorHeaders(vectorSignature)
			h.Set(webhook.HeaderTimestamp, "2021-02-25T15:02:10Z")
			return h
		}(), body, vectorTime, webhook.ErrInvalidTimestamp},
		{"an empty secret", "whsec_", vectorHeaders(vectorSignature), body, vectorTime, webhook.ErrInvalidSecret},
		{"a secret that is not base64", "whsec_not base64!", vectorHeaders(vectorSignature), body, vectorTime, webhook.ErrInvalidSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			err := webhook.VerifyAt(tc.secret, tc.headers, tc.body, 5*time.Minute, tc.now)
			is.True(errors.Is(err, tc.want)) // the error says what was wrong
		})
	}
}

func TestVerifyUsesTheClock(t *testing.T) {
	is := is.New(t)
	body := []byte(`{"type":"thumbnail.succeeded"}`)
	now := time.Now()
	sig, err := webhook.Sign(vectorSecret, "msg_1", now, body)
	is.NoErr(err)
	h := http.Header{}
	h.Set("Webhook-Id", "msg_1") // header names are case-insensitive
	h.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("Webhook-Signature", sig)
	is.NoErr(webhook.Verify(vectorSecret, h, body, time.Minute))
	// The published vector is years old: too old for the real clock.
	is.True(errors.Is(webhook.Verify(vectorSecret, vectorHeaders(vectorSignature), []byte(vectorBody), 0), webhook.ErrTimestampTooOld))
}

func TestNewSecretSignsAndVerifies(t *testing.T) {
	is := is.New(t)
	secret, err := webhook.NewSecret()
	is.NoErr(err)
	is.True(strings.HasPrefix(secret, "whsec_"))
	is.NoErr(webhook.ValidSecret(secret))
	other, err := webhook.NewSecret()
	is.NoErr(err)
	is.True(other != secret)

	_, err = webhook.Sign("whsec_%%%", "msg_1", time.Now(), nil)
	is.True(errors.Is(err, webhook.ErrInvalidSecret))
}
