package testapi

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tally is what a Receiver got for a set of jobs, counted by webhook-id.
type Tally struct {
	// Missing lists the jobs whose event never came.
	Missing []string
	// Repeats counts, per job, the deliveries of its event after the first.
	Repeats map[string]int
	// Unknown lists the webhook-ids of events of no job of the set.
	Unknown []string
	// Problems: an unsigned callback, an event that does not describe its
	// job (its id, or a type that does not match its status), or a body
	// that differs from the first delivery of the same event.
	Problems []string
}

// Duplicates is how many deliveries came after each event's first.
func (t Tally) Duplicates() int {
	n := 0
	for _, r := range t.Repeats {
		n += r
	}
	return n
}

// Tally counts the callbacks for the jobs of ids.
func (rc *Receiver) Tally(ids []string) Tally {
	t := Tally{Repeats: map[string]int{}}
	byEvent := map[string][]Callback{}
	for _, c := range rc.All() {
		byEvent[c.ID] = append(byEvent[c.ID], c)
	}
	want := map[string]bool{}
	for _, id := range ids {
		event := "msg_" + id
		want[event] = true
		cbs := byEvent[event]
		if len(cbs) == 0 {
			t.Missing = append(t.Missing, id)
			continue
		}
		if len(cbs) > 1 {
			t.Repeats[id] = len(cbs) - 1
		}
		for i, c := range cbs {
			if len(rc.secrets) > 0 && !c.Signed {
				t.Problems = append(t.Problems, fmt.Sprintf("job %s: callback %d not signed: %v", id, i+1, c.SignError))
			}
			if c.Event.Data.ID != id || c.Event.Type != "thumbnail."+c.Event.Data.Status {
				t.Problems = append(t.Problems, fmt.Sprintf("job %s: callback %d is a %q event about job %q with status %q",
					id, i+1, c.Event.Type, c.Event.Data.ID, c.Event.Data.Status))
			}
			if !bytes.Equal(c.Body, cbs[0].Body) {
				t.Problems = append(t.Problems, fmt.Sprintf("job %s: callback %d's body differs from the first's", id, i+1))
			}
		}
	}
	for event := range byEvent {
		if !want[event] {
			t.Unknown = append(t.Unknown, event)
		}
	}
	return t
}

// Distinct is how many different events (webhook-ids) arrived.
func (rc *Receiver) Distinct() int {
	seen := map[string]bool{}
	for _, c := range rc.All() {
		seen[c.ID] = true
	}
	return len(seen)
}

// WaitEach waits until the event of every job of ids has arrived at least
// once, and reports whether they all did within timeout.
func (rc *Receiver) WaitEach(ids []string, timeout time.Duration) bool {
	return Eventually(timeout, func() bool { return len(rc.Tally(ids).Missing) == 0 })
}

// LastFirst is when the last of the first deliveries of the events of ids
// arrived.
func (rc *Receiver) LastFirst(ids []string) time.Time {
	first := map[string]time.Time{}
	for _, c := range rc.All() {
		if _, ok := first[c.ID]; !ok {
			first[c.ID] = c.Received
		}
	}
	var last time.Time
	for _, id := range ids {
		if at := first["msg_"+id]; at.After(last) {
			last = at
		}
	}
	return last
}

// HoldNext keeps the request of the next callback open until release is
// called, then answers it with status; the callbacks after it are answered
// as before. arrived gets the held callback once it has come (it is kept,
// as every callback is). The end of the test releases it.
func (rc *Receiver) HoldNext(t testing.TB, status int) (arrived <-chan Callback, release func()) {
	got := make(chan Callback, 1)
	released := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	t.Cleanup(release) // before the receiver closes, which waits for the held request
	rc.mu.Lock()
	before := rc.Answer
	rc.mu.Unlock()
	var taken atomic.Bool
	rc.SetAnswer(func(w http.ResponseWriter, c Callback) {
		if !taken.CompareAndSwap(false, true) {
			if before != nil {
				before(w, c)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		got <- c
		<-released
		w.WriteHeader(status)
	})
	return got, release
}
