package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testsmtp"
	"github.com/thumbnailed/thumbnailed/webhook"
)

// event is a callback body as a receiver reads it.
type event struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      struct {
		jobJSON
		Image *struct {
			ContentType string `json:"content_type"`
			Base64      string `json:"base64"`
		} `json:"image"`
	} `json:"data"`
}

// receiver is a client's server: it verifies every callback's signature
// and keeps the events by webhook-id.
type receiver struct {
	mu     sync.Mutex
	events map[string][]event
	bad    int
}

func newReceiver(t *testing.T, secret string) (*receiver, *httptest.Server) {
	rc := &receiver{events: map[string][]event{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err := webhook.Verify(secret, r.Header, body, 5*time.Minute); err != nil {
			rc.bad++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var e event
		if err := json.Unmarshal(body, &e); err != nil {
			rc.bad++
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		rc.events[id] = append(rc.events[id], e)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

// eventFor waits for the callback of job id.
func (rc *receiver) eventFor(t *testing.T, id string) event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		rc.mu.Lock()
		for _, evs := range rc.events {
			if len(evs) > 0 && evs[0].Data.ID == id {
				rc.mu.Unlock()
				return evs[0]
			}
		}
		rc.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no callback for job %s within 30s", id)
	return event{}
}

// mailFor waits for the email about job id.
func mailFor(t *testing.T, smtp *testsmtp.Server, id string) (*mail.Message, []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range smtp.Received() {
			if bytes.Contains(m.Data, []byte(id)) {
				msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
				if err != nil {
					t.Fatal(err)
				}
				return msg, m.Data
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no email about job %s within 30s", id)
	return nil, nil
}

// inlineImage finds the image part referenced by cid in the HTML body.
func inlineImage(t *testing.T, msg *mail.Message) image.Image {
	t.Helper()
	var found image.Image
	var walk func(r io.Reader, contentType string)
	walk = func(r io.Reader, contentType string) {
		mt, params, err := mime.ParseMediaType(contentType)
		if err != nil {
			return
		}
		if !strings.HasPrefix(mt, "multipart/") {
			return
		}
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				return
			}
			ct := p.Header.Get("Content-Type")
			if strings.HasPrefix(ct, "multipart/") {
				walk(p, ct)
				continue
			}
			if strings.HasPrefix(ct, "image/") && p.Header.Get("Content-ID") != "" && found == nil {
				data, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
				img, _, err := image.Decode(bytes.NewReader(data))
				if err == nil {
					found = img
				}
			}
		}
	}
	walk(msg.Body, msg.Header.Get("Content-Type"))
	if found == nil {
		t.Fatal("the email has no inline image")
	}
	return found
}

func TestPushDeliveryByEmailAndCallback(t *testing.T) {
	is := is.New(t)
	secret, err := webhook.NewSecret()
	is.NoErr(err)
	smtp := testsmtp.New(t)
	rc, hook := newReceiver(t, secret)
	key := "push-test-key-0123456789"
	svc := startService(t, "all", map[string]string{
		"THUMBNAILED_SMTP_URL":       smtp.URL(),
		"THUMBNAILED_API_KEYS":       key,
		"THUMBNAILED_WEBHOOK_SECRET": secret,
		"THUMBNAILED_MAIL_FROM":      "thumbs@thumbnailed.test",
	})
	auth := http.Header{"Authorization": {"Bearer " + key}}

	// A job that succeeds reaches the inbox and the client's server.
	resp := upload(t, svc, auth, readFile(t, "Storm.jpg"), map[string]string{
		"width": "120", "email": "mary@example.com", "callback_url": hook.URL + "/hooks/thumbs?token=s3cret",
	})
	is.Equal(resp.StatusCode, http.StatusAccepted)
	accepted := decode[jobJSON](t, resp)
	is.Equal(len(accepted.Deliveries), 2)
	for _, d := range accepted.Deliveries {
		is.Equal(d.Status, "pending")
		is.True(!strings.Contains(d.Target, "mary@"))  // the address is masked
		is.True(!strings.Contains(d.Target, "s3cret")) // and the callback's query dropped
	}

	ev := rc.eventFor(t, accepted.ID)
	is.Equal(ev.Type, "thumbnail.succeeded")
	is.Equal(ev.Data.Status, "succeeded")
	is.Equal(ev.Data.Result.Width, 120)
	is.True(ev.Data.Image != nil)
	is.Equal(ev.Data.Image.ContentType, "image/jpeg")
	raw, err := base64.StdEncoding.DecodeString(ev.Data.Image.Base64)
	is.NoErr(err)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(raw))
	is.NoErr(err)
	is.Equal(cfg.Width, 120) // the thumbnail itself rides along
	is.Equal(cfg.Height, 80)

	msg, _ := mailFor(t, smtp, accepted.ID)
	is.True(strings.Contains(msg.Header.Get("To"), "mary@example.com"))
	img := inlineImage(t, msg)
	is.Equal(img.Bounds().Dx(), 120) // the inline thumbnail has the asked size

	// Both deliveries show as delivered.
	job := waitDelivered(t, svc, auth, accepted.ID)
	for _, d := range job.Deliveries {
		is.Equal(d.Status, "delivered")
		is.Equal(d.Attempts, 1)
	}

	// A job that fails is pushed too, with the reason.
	src := httptest.NewServer(http.NotFoundHandler())
	defer src.Close()
	resp = postJSON(t, svc, auth, fmt.Sprintf(`{"url": %q, "width": 64, "email": "mary@example.com", "callback_url": %q}`, src.URL+"/gone.jpg", hook.URL+"/hooks/thumbs"))
	is.Equal(resp.StatusCode, http.StatusAccepted)
	failedID := decode[jobJSON](t, resp).ID
	ev = rc.eventFor(t, failedID)
	is.Equal(ev.Type, "thumbnail.failed")
	is.Equal(ev.Data.Error.Code, "source_not_found")
	is.True(ev.Data.Image == nil)
	_, data := mailFor(t, smtp, failedID)
	is.True(bytes.Contains(data, []byte("source_not_found"))) // the email names the error

	rc.mu.Lock()
	is.Equal(rc.bad, 0) // every callback carried a valid signature
	rc.mu.Unlock()
}

// waitDelivered polls until no delivery of the job is pending.
func waitDelivered(t *testing.T, svc *service, header http.Header, id string) jobJSON {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		job := waitEnded(t, svc, header, id)
		pending := false
		for _, d := range job.Deliveries {
			pending = pending || d.Status == "pending"
		}
		if !pending {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s deliveries still pending after 30s", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
