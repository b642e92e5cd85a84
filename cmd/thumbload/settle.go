package main

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// settleInterval is the pause between two rounds of GETs over the jobs not
// yet settled.
const settleInterval = 100 * time.Millisecond

// jobsReport is what the jobs' own records said at the end of a run: every
// accepted job read back with GET until it had ended and none of its
// deliveries was pending (or until -timeout).
type jobsReport struct {
	Checked  int            `json:"checked"`
	ByStatus map[string]int `json:"by_status"` // succeeded, failed, queued, processing; "lost" for a 404
	// LastFinished is the latest finished_at of the jobs (the service's clock,
	// on this machine); LastFinishedSeconds is it less the first submit.
	LastFinished        time.Time `json:"last_finished_at"`
	LastFinishedSeconds float64   `json:"first_submit_to_last_finished_s,omitempty"`
	Unsettled           int       `json:"unsettled"` // not ended, or a delivery still pending, at the deadline
	Lost                []string  `json:"lost,omitempty"`
}

// settle reads every job in ids with GET, conc at a time, round after round
// every settleInterval, until each has settled (ended with no delivery
// pending; a 404 counts as settled, as lost) or deadline. 429 and 503
// answers are asked again in the next round.
func settle(ctx context.Context, c *client, ids []string, conc int, deadline time.Time) *jobsReport {
	r := &jobsReport{Checked: len(ids), ByStatus: map[string]int{}}
	last := map[string]jobStatus{}
	lost := map[string]bool{}
	pending := ids
	var mu sync.Mutex
	for len(pending) > 0 && ctx.Err() == nil {
		next := make(chan string)
		var still []string
		var wg sync.WaitGroup
		for range min(conc, len(pending)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range next {
					job, ans, err := c.status(ctx, id)
					mu.Lock()
					switch {
					case err == nil && ans.status == http.StatusNotFound:
						lost[id] = true
					case err == nil && ans.status == http.StatusOK:
						last[id] = job
						if !job.settled() {
							still = append(still, id)
						}
					default: // 429, 503, no answer: ask again
						still = append(still, id)
					}
					mu.Unlock()
				}
			}()
		}
		for _, id := range pending {
			next <- id
		}
		close(next)
		wg.Wait()
		pending = still
		if len(pending) == 0 || time.Now().After(deadline) || !sleep(ctx, settleInterval) {
			break
		}
	}
	r.Unsettled = len(pending)
	for _, id := range ids {
		if lost[id] {
			r.ByStatus["lost"]++
			r.Lost = append(r.Lost, id)
			continue
		}
		job, ok := last[id]
		if !ok {
			r.ByStatus["unknown"]++
			continue
		}
		r.ByStatus[job.Status]++
		if job.FinishedAt != nil && job.FinishedAt.After(r.LastFinished) {
			r.LastFinished = *job.FinishedAt
		}
	}
	return r
}
