// Package webhook signs and verifies Thumbnailed callbacks the Standard
// Webhooks way (https://www.standardwebhooks.com). Thumbnailed signs every
// callback with it; receivers written in Go can import it to check that a
// request really came from us:
//
//	err := webhook.Verify(secret, r.Header, body, 5*time.Minute)
//
// A request carries three headers:
//
//	webhook-id         the event id, the same on every retry (deduplicate on it)
//	webhook-timestamp  unix seconds when this attempt was sent
//	webhook-signature  "v1,<base64 HMAC-SHA256 of id.timestamp.body>", possibly
//	                   several separated by spaces (during a secret rotation)
//
// The secret is "whsec_" followed by base64; the HMAC key is the decoded bytes.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks spec.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret Thumbnailed hands out.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a timestamp may be from the receiver's clock
// when Verify is given no tolerance, as in the reference libraries.
const DefaultTolerance = 5 * time.Minute

// Errors Verify returns; test for them with errors.Is.
var (
	ErrInvalidSecret    = errors.New("webhook: the secret is not whsec_ followed by base64")
	ErrMissingHeaders   = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidTimestamp = errors.New("webhook: webhook-timestamp is not a number of unix seconds")
	ErrTimestampTooOld  = errors.New("webhook: timestamp too old")
	ErrTimestampTooNew  = errors.New("webhook: timestamp too new")
	ErrInvalidSignature = errors.New("webhook: no matching signature")
)

// signatureVersion marks a symmetric HMAC-SHA256 signature.
const signatureVersion = "v1"

// key decodes a secret: "whsec_" + base64, or the base64 alone.
func key(secret string) ([]byte, error) {
	encoded := strings.TrimPrefix(secret, SecretPrefix)
	if encoded == "" {
		return nil, ErrInvalidSecret
	}
	k, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSecret, err)
	}
	return k, nil
}

// ValidSecret reports whether secret can sign: "whsec_" + non-empty base64
// (the prefix may be left out).
func ValidSecret(secret string) error {
	_, err := key(secret)
	return err
}

// Sign returns the webhook-signature value for one attempt:
// "v1," + base64(HMAC-SHA256(key, msgID + "." + unix seconds + "." + body)).
func Sign(secret, msgID string, timestamp time.Time, body []byte) (string, error) {
	k, err := key(secret)
	if err != nil {
		return "", err
	}
	return signatureVersion + "," + base64.StdEncoding.EncodeToString(mac(k, msgID, timestamp.Unix(), body)), nil
}

func mac(key []byte, msgID string, unix int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, unix, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a received request against secret using the receiver's
// clock: the three headers must be present, the timestamp within ±tolerance
// of now (DefaultTolerance when tolerance is 0 or less), and one of the v1
// signatures must match body exactly as it was received (read the raw body
// before parsing the JSON). Signatures are compared in constant time.
func Verify(secret string, headers http.Header, body []byte, tolerance time.Duration) error {
	return VerifyAt(secret, headers, body, tolerance, time.Now())
}

// VerifyAt is Verify with the receiver's clock given.
func VerifyAt(secret string, headers http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	k, err := key(secret)
	if err != nil {
		return err
	}
	msgID := headers.Get(HeaderID)
	rawTimestamp := headers.Get(HeaderTimestamp)
	signatures := headers.Get(HeaderSignature)
	if msgID == "" || rawTimestamp == "" || signatures == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(rawTimestamp, 10, 64)
	if err != nil {
		return ErrInvalidTimestamp
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sent := time.Unix(unix, 0)
	if now.Sub(sent) > tolerance {
		return ErrTimestampTooOld
	}
	if sent.Sub(now) > tolerance {
		return ErrTimestampTooNew
	}
	expected := mac(k, msgID, unix, body)
	for _, candidate := range strings.Fields(signatures) {
		version, encoded, ok := strings.Cut(candidate, ",")
		if !ok || version != signatureVersion {
			continue // another scheme (v1a) or garbage: not ours to check
		}
		got, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			continue
		}
		if hmac.Equal(got, expected) {
			return nil
		}
	}
	return ErrInvalidSignature
}

// NewSecret makes a fresh random secret ("whsec_" + base64 of 32 bytes) for
// THUMBNAILED_WEBHOOK_SECRET.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}
