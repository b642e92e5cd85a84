package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/thumbnailed/thumbnailed/webhook"
)

// receiverPath is where the receiver takes callbacks.
const receiverPath = "/hooks/thumbs"

// callback is the first event received for one job.
type callback struct {
	at     time.Time // when the request arrived
	status string    // succeeded or failed
	code   string    // the job's error code when failed
}

// receiver takes the service's callbacks, verifies them when it knows the
// secret, and remembers the first event of every job.
type receiver struct {
	secret string

	mu            sync.Mutex
	byJob         map[string]callback
	events        map[string]bool // webhook-id of every event taken
	badSignatures int
	duplicates    int
	malformed     int
	changed       chan struct{} // closed and replaced whenever a job's event arrives
}

func newReceiver(secret string) *receiver {
	return &receiver{
		secret:  secret,
		byJob:   map[string]callback{},
		events:  map[string]bool{},
		changed: make(chan struct{}),
	}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	if r.URL.Path != receiverPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	if rc.secret != "" {
		if err := webhook.Verify(rc.secret, r.Header, body, webhook.DefaultTolerance); err != nil {
			rc.mu.Lock()
			rc.badSignatures++
			rc.mu.Unlock()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Error  *struct {
				Code string `json:"code"`
			} `json:"error"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Data.ID == "" {
		rc.mu.Lock()
		rc.malformed++
		rc.mu.Unlock()
		http.Error(w, "not a Thumbnailed event", http.StatusBadRequest)
		return
	}
	cb := callback{at: at, status: ev.Data.Status}
	if ev.Data.Error != nil {
		cb.code = ev.Data.Error.Code
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	eventID := r.Header.Get(webhook.HeaderID)
	if _, seen := rc.byJob[ev.Data.ID]; seen || (eventID != "" && rc.events[eventID]) {
		rc.duplicates++ // a retry of an event we answered: 2xx, nothing else
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.events[eventID] = true
	rc.byJob[ev.Data.ID] = cb
	close(rc.changed)
	rc.changed = make(chan struct{})
	w.WriteHeader(http.StatusNoContent)
}

// get returns the event received for a job, if any.
func (rc *receiver) get(id string) (callback, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	cb, ok := rc.byJob[id]
	return cb, ok
}

// counts returns the receiver's error counters.
func (rc *receiver) counts() (badSignatures, duplicates, malformed int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.badSignatures, rc.duplicates, rc.malformed
}

// waitFor returns when every job in ids has had its event, or at deadline,
// or when ctx ends; it reports whether all arrived.
func (rc *receiver) waitFor(ctx context.Context, ids []string, deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		rc.mu.Lock()
		all := true
		for _, id := range ids {
			if _, ok := rc.byJob[id]; !ok {
				all = false
				break
			}
		}
		changed := rc.changed
		rc.mu.Unlock()
		if all {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
