package systemtest

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// Issue 7.5: Redis stops while jobs are queued and running, and comes back
// on the same port with its append-only file once the service has noticed
// it gone. The service keeps running through it, and every accepted job
// ends: none lost, none stuck.
func TestRedisRestartLosesNoJob(t *testing.T) {
	needProcesses(t)
	for _, stop := range []string{"shutdown", "sigkill"} {
		t.Run(stop, func(t *testing.T) {
			is := is.New(t)
			r, ns, env := redisEnv(t, "THUMBNAILED_STALE_AFTER", "3s", "THUMBNAILED_WORKER_CONCURRENCY", "2")
			rcv := testapi.NewReceiver(t, webhookSecret)
			src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
			svc := startProcess(t, "all", "all", env)

			const n = 20
			const jobTime = 400 * time.Millisecond
			ids := submitSlow(t, svc, src, jobTime, n, rcv, 40)
			is.True(testapi.Eventually(15*time.Second, func() bool {
				return len(svc.JobIDs("job succeeded")) >= 4
			})) // a few jobs are done before Redis goes

			downAt := time.Now()
			switch stop {
			case "shutdown":
				r.Shutdown()
			case "sigkill":
				r.Kill()
			}
			// No run starts without Redis: these are the runs it left in flight.
			done, running := len(svc.JobIDs("job succeeded")), svc.Running()
			t.Logf("redis stopped (%s) with %d jobs succeeded, %d running %v, %d queued",
				stop, done, len(running), running, n-done-len(running))
			// Redis comes back once the outage has been felt everywhere: the
			// API is not ready, gocraft/work's loops have failed, and every
			// run that was in flight has tried to record its outcome.
			felt := testapi.Eventually(15*time.Second, func() bool {
				if readyz(svc) != http.StatusServiceUnavailable || gocraftErrors(svc) == 0 {
					return false
				}
				for _, id := range svc.Running() {
					if slices.Contains(running, id) {
						return false
					}
				}
				return true
			})
			t.Logf("outage felt: %v (/readyz %d, gocraft/work errors %d, runs still in flight of those running at the stop %v)",
				felt, readyz(svc), gocraftErrors(svc), svc.Running())
			is.True(felt)          // the service noticed Redis was away
			is.True(!svc.Exited()) // and survives it
			r.Start()
			upAt := time.Now()
			t.Logf("redis back after %s", upAt.Sub(downAt).Round(10*time.Millisecond))

			all, pollErrors, lastErr := svc.API().EndAll(ids, 45*time.Second)
			endedAt := time.Now()
			is.True(!svc.Exited()) // still running
			var succeeded, failed, stuck int
			for _, id := range ids {
				j, ok := all[id]
				switch {
				case ok && j.Status == "succeeded":
					succeeded++
				case ok && j.Status == "failed" && j.Error != nil && j.Error.Code != "" && j.Error.Message != "":
					failed++
					t.Logf("job %s failed with a reason: %s: %s", id, j.Error.Code, j.Error.Message)
				default:
					stuck++
					t.Errorf("job %s did not end (status %q, error %+v). Redis holds:\n%s", id, j.Status, j.Error, describeJob(r, ns, id))
				}
			}
			t.Logf("after the restart: %d succeeded, %d failed with a reason, %d lost or stuck; all ended %s after Redis came back; %d status polls failed meanwhile (last: %v)",
				succeeded, failed, stuck, endedAt.Sub(upAt).Round(10*time.Millisecond), pollErrors, lastErr)
			if stuck > 0 {
				t.Logf("gocraft/work keys: %s", gocraftSummary(r, ns))
			}
			is.Equal(stuck, 0) // no job lost or stuck

			is.True(rcv.WaitEach(ids, 20*time.Second)) // every job's callback arrived
			waitDelivered(t, svc, ids, 20*time.Second) // and no attempt is left to send one more
			tally := rcv.Tally(ids)
			for id, k := range tally.Repeats {
				// Deliveries are at least once: a Redis outage between the
				// receiver's 2xx and recording it may repeat one (with the
				// same webhook-id and body, which Problems checks). Report, not fail.
				t.Logf("note: job %s: callback delivered %d times", id, k+1)
			}
			for _, id := range tally.Missing {
				t.Errorf("no callback for job %s", id)
			}
			for _, ev := range tally.Unknown {
				t.Errorf("callback for an unknown event %s", ev)
			}
			for _, p := range tally.Problems {
				t.Error(p)
			}
			for _, id := range ids {
				if cbs := rcv.For(id); all[id].Status == "succeeded" && len(cbs) > 0 && cbs[0].Event.Type != "thumbnail.succeeded" {
					t.Errorf("job %s succeeded but its callback is a %q event", id, cbs[0].Event.Type)
				}
			}
			kinds := map[string]int{}
			for _, l := range svc.Lines() {
				if l.str("component") == "gocraft/work" {
					kinds[l.str("where")]++
				}
			}
			var summary []string
			reported := 0
			for k, v := range kinds {
				summary = append(summary, k+"="+strconv.Itoa(v))
				reported += v
			}
			sort.Strings(summary)
			t.Logf("callback duplicates: %d; gocraft/work reported %d errors while Redis was away: %s; the sweeper re-queued %d job(s) by lease and %d stranded entries; service errors: %s",
				tally.Duplicates(), reported, strings.Join(summary, " "),
				len(svc.JobIDs(msgRescued)), strandedCount(svc), errorMessages(svc))
			t.Logf("gocraft/work keys afterwards: %s", gocraftSummary(r, ns))

			is.Equal(readyz(svc), http.StatusOK) // ready again
		})
	}
}

// gocraftErrors is how many errors gocraft/work reported.
func gocraftErrors(p *process) int {
	return len(p.JobIDs("gocraft/work reported an error"))
}

// strandedCount is how many queue entries the sweeper found stranded in an
// in-progress list and put back.
func strandedCount(p *process) int {
	n := 0
	for _, l := range p.Lines() {
		if l.str("msg") == "re-queued queue entries stranded in progress (fetched just before a Redis outage)" {
			c, _ := l["count"].(float64)
			n += int(c)
		}
	}
	return n
}

// errorMessages counts the service's ERROR records by message.
func errorMessages(p *process) string {
	counts := map[string]int{}
	for _, l := range p.Lines() {
		if l.str("level") == "ERROR" {
			counts[l.str("msg")+": "+l.str("error")]++
		}
	}
	var out []string
	for k, v := range counts {
		out = append(out, fmt.Sprintf("%dx %q", v, k))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
