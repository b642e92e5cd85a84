package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/thumbnailed/thumbnailed/jobs"
)

// leases keeps the leases of the work this process runs alive: one renewal
// of all of them every third of the lease, so a slow job is told from one
// whose process died.
type leases struct {
	store *jobs.Store
	every time.Duration
	log   *slog.Logger

	mu   sync.Mutex
	held map[jobs.Lease]int
}

func newLeases(store *jobs.Store, lease time.Duration, log *slog.Logger) *leases {
	return &leases{store: store, every: max(lease/3, 10*time.Millisecond), log: log, held: map[jobs.Lease]int{}}
}

// hold keeps kind:id's lease renewed until release is called. (The lease
// itself is taken and released in the record's own transactions.)
func (l *leases) hold(kind, id string) (release func()) {
	key := jobs.Lease{Kind: kind, JobID: id}
	l.mu.Lock()
	l.held[key]++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.held[key]--; l.held[key] <= 0 {
				delete(l.held, key)
			}
		})
	}
}

func (l *leases) run(ctx context.Context) {
	every(ctx, l.every, func() {
		l.mu.Lock()
		held := make([]jobs.Lease, 0, len(l.held))
		for k := range l.held {
			held = append(held, k)
		}
		l.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, l.every)
		if err := l.store.Renew(rctx, held); err != nil && ctx.Err() == nil {
			l.log.Warn("could not renew the leases of running work", "count", len(held), "error", err)
		}
		cancel()
	})
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
