package main

import (
	"bytes"
	"encoding/base64"
	"image"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// pushTimeout bounds how long a test waits for a push.
const pushTimeout = 30 * time.Second

// email is a message as a reader sees it: its header and its leaf parts.
type email struct {
	Header mail.Header
	Parts  []testsmtp.Part
}

// mailFor waits for the email about job id.
func mailFor(t *testing.T, smtp *testsmtp.Server, id string) email {
	t.Helper()
	var found []byte
	if !testapi.Eventually(pushTimeout, func() bool {
		for _, m := range smtp.Received() {
			if bytes.Contains(m.Data, []byte(id)) {
				found = m.Data
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no email about job %s within %s", id, pushTimeout)
	}
	msg, parts := testsmtp.Parse(t, found)
	return email{Header: msg.Header, Parts: parts}
}

// mailText is the email's text/plain part.
func mailText(t *testing.T, msg email) string {
	t.Helper()
	for _, p := range msg.Parts {
		if p.ContentType == "text/plain" {
			return string(p.Body)
		}
	}
	t.Fatal("the email has no text part")
	return ""
}

// inlineImage is the image part the HTML refers to by cid.
func inlineImage(t *testing.T, msg email) (image.Image, testsmtp.Part) {
	t.Helper()
	for _, p := range msg.Parts {
		if strings.HasPrefix(p.ContentType, "image/") && p.ContentID != "" {
			img, _, err := image.Decode(bytes.NewReader(p.Body))
			if err != nil {
				t.Fatalf("the inline image does not decode: %v", err)
			}
			return img, p
		}
	}
	t.Fatal("the email has no inline image")
	return nil, testsmtp.Part{}
}

func TestPushDeliveryByEmailAndCallback(t *testing.T) {
	is := is.New(t)
	secret, err := webhook.NewSecret()
	is.NoErr(err)
	smtp := testsmtp.New(t)
	rc := testapi.NewReceiver(t, secret)
	key := "push-test-key-0123456789"
	const public = "https://thumbs.example.com"
	svc := startService(t, "all", map[string]string{
		"THUMBNAILED_SMTP_URL":       smtp.URL(),
		"THUMBNAILED_API_KEYS":       key,
		"THUMBNAILED_WEBHOOK_SECRET": secret,
		"THUMBNAILED_MAIL_FROM":      "thumbs@thumbnailed.test",
		"THUMBNAILED_PUBLIC_URL":     public,
	})
	c := svc.WithKey(key)

	// A job that succeeds reaches the inbox and the client's server.
	job := accepted(t, c.Upload(t, readFile(t, "Storm.jpg"), map[string]string{
		"width": "120", "email": "mary@example.com", "callback_url": rc.URL + "/hooks/thumbs?token=s3cret",
	}, nil))
	is.Equal(len(job.Deliveries), 2)
	for _, d := range job.Deliveries {
		is.Equal(d.Status, "pending")
		is.True(!strings.Contains(d.Target, "mary@"))  // the address is masked
		is.True(!strings.Contains(d.Target, "s3cret")) // and the callback's query dropped
	}

	cb := rc.Wait(t, job.ID, 1, pushTimeout)[0]
	is.True(cb.Signed) // the signature verifies with the secret
	is.Equal(cb.ID, "msg_"+job.ID)
	ev := cb.Event
	is.Equal(ev.Type, "thumbnail.succeeded")
	is.Equal(ev.Data.Status, "succeeded")
	is.Equal(ev.Data.Result.Width, 120)
	is.True(ev.Data.Image != nil)
	is.Equal(ev.Data.Image.ContentType, "image/jpeg")
	raw, err := base64.StdEncoding.DecodeString(ev.Data.Image.Base64)
	is.NoErr(err)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(raw))
	is.NoErr(err)
	is.Equal(cfg.Width, 120) // the thumbnail itself rides along (small enough to be inline)
	is.Equal(cfg.Height, 80)
	// And its signed link, absolute with THUMBNAILED_PUBLIC_URL, opens the
	// same image without a key.
	is.True(strings.HasPrefix(ev.Data.Image.URL, public+"/v1/thumbnails/"+job.ID+"/outputs/default?expires="))
	is.Equal(ev.Data.Result.ImageURL, ev.Data.Image.URL)
	r := svc.Open(t, http.MethodGet, strings.TrimPrefix(ev.Data.Image.URL, public))
	is.Equal(r.Status, http.StatusOK)
	is.Equal(r.Body, raw)

	msg := mailFor(t, smtp, job.ID)
	is.True(strings.Contains(msg.Header.Get("To"), "mary@example.com"))
	img, part := inlineImage(t, msg)
	is.Equal(img.Bounds().Dx(), 120) // the inline thumbnail has the asked size
	is.Equal(part.Disposition, "inline")
	is.True(strings.Contains(mailText(t, msg), ev.Data.Image.URL)) // the email lists the signed link

	// Both deliveries show as delivered, each with its attempt in its log.
	job = c.WaitDelivered(t, job.ID, pushTimeout)
	for _, d := range job.Deliveries {
		is.Equal(d.Status, "delivered")
		is.Equal(d.Attempts, 1)
		is.Equal(len(d.Log), 1)
		is.Equal(d.Log[0].Outcome, "delivered")
	}

	// A job that fails is pushed too, with the reason.
	src := httptest.NewServer(http.NotFoundHandler())
	defer src.Close()
	failed := accepted(t, c.Submit(t, map[string]any{"url": src.URL + "/gone.jpg", "width": 64, "email": "mary@example.com", "callback_url": rc.URL + "/hooks/thumbs"}, nil))
	cb = rc.Wait(t, failed.ID, 1, pushTimeout)[0]
	is.True(cb.Signed)
	is.Equal(cb.Event.Type, "thumbnail.failed")
	is.Equal(cb.Event.Data.Error.Code, "source_not_found")
	is.True(cb.Event.Data.Image == nil)
	msg = mailFor(t, smtp, failed.ID)
	is.True(strings.Contains(mailText(t, msg), "source_not_found")) // the email names the error

	for _, c := range rc.All() {
		is.True(c.Signed) // every callback carried a valid signature
	}
}
