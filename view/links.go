package view

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Links makes and checks the signed, expiring links to a job's images:
//
//	{Base}/v1/thumbnails/{id}/outputs/{name}?expires={unix}&signature={sig}
//
// sig is base64url (no padding) of HMAC-SHA256 over "{id}/{name}/{expires}"
// keyed with Secret; expires is when the job's record expires. Such a link
// needs no API key.
type Links struct {
	// Base is THUMBNAILED_PUBLIC_URL without a trailing slash; "" gives paths.
	Base   string
	Secret []byte
}

// OutputPath is the API path of a job's output.
func OutputPath(id, name string) string {
	return JobPath(id) + "/outputs/" + url.PathEscape(name)
}

// Output is the signed link to output name of job id.
func (l Links) Output(id, name string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	q := url.Values{"expires": {exp}, "signature": {l.sign(id, name, exp)}}
	return strings.TrimSuffix(l.Base, "/") + OutputPath(id, name) + "?" + q.Encode()
}

func (l Links) sign(id, name, expires string) string {
	mac := hmac.New(sha256.New, l.Secret)
	mac.Write([]byte(id + "/" + name + "/" + expires))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Errors of Verify.
var (
	ErrLinkInvalid = errors.New("the link's signature does not match")
	ErrLinkExpired = errors.New("the link has expired")
)

// Verify checks a link's expires and signature for output name of job id.
// The signature is checked first, in constant time, so an expired link
// with a forged signature is invalid, not expired.
func (l Links) Verify(id, name, expires, signature string, now time.Time) error {
	want := l.sign(id, name, expires)
	if len(l.Secret) == 0 || !hmac.Equal([]byte(signature), []byte(want)) {
		return ErrLinkInvalid
	}
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil {
		return ErrLinkInvalid
	}
	if !now.Before(time.Unix(exp, 0)) {
		return ErrLinkExpired
	}
	return nil
}
