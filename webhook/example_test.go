package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/thumbnailed/thumbnailed/webhook"
)

// A receiver checks every callback before trusting it: read the raw body,
// verify it against the secret, then decode the JSON.
func Example() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // THUMBNAILED_WEBHOOK_SECRET

	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header, body, 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		// Deduplicate on webhook-id: a retry carries the same id.
		fmt.Println("verified event", r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	})

	// What Thumbnailed sends:
	body := `{"type":"thumbnail.succeeded","timestamp":"2025-01-02T03:04:05Z","data":{"id":"abc"}}`
	now := time.Now()
	signature, _ := webhook.Sign(secret, "msg_abc", now, []byte(body))
	req := httptest.NewRequest(http.MethodPost, "/hooks/thumbs", strings.NewReader(body))
	req.Header.Set("webhook-id", "msg_abc")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", signature)
	rec := httptest.NewRecorder()
	receiver.ServeHTTP(rec, req)
	fmt.Println(rec.Code)

	// A forged request is refused.
	forged := httptest.NewRequest(http.MethodPost, "/hooks/thumbs", strings.NewReader(strings.Replace(body, "abc", "xyz", 1)))
	forged.Header = req.Header.Clone()
	rec = httptest.NewRecorder()
	receiver.ServeHTTP(rec, forged)
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))

	// Output:
	// verified event msg_abc
	// 204
	// 401 webhook: no matching signature
}
