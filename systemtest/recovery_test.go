package systemtest

import (
	"net/http"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// msgRescued is what the sweeper logs when it takes back a job whose
// worker died.
const msgRescued = "re-queued a job whose worker stopped renewing its lease"

// submitURL submits a url job with a callback to rcv and returns its id;
// the answer must be 202.
func submitURL(t *testing.T, api *process, source string, rcv *testapi.Receiver, width int) string {
	t.Helper()
	req := map[string]any{"url": source, "width": width}
	if rcv != nil {
		req["callback_url"] = rcv.URL + "/hook"
	}
	r := api.API().Submit(t, req, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit %s: %d %s", source, r.Status, r.Body)
	}
	return r.Job(t).ID
}

// submitSlow submits n url jobs like submitURL, each of a source of src
// that takes jobTime, and returns their ids.
func submitSlow(t *testing.T, api *process, src *sourceServer, jobTime time.Duration, n int, rcv *testapi.Receiver, width int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		ids = append(ids, submitURL(t, api, src.slow(jobTime, i), rcv, width))
	}
	return ids
}

// waitDelivered waits until every job of ids has ended with no delivery
// pending: no attempt is running or due, so no callback can still come.
func waitDelivered(t *testing.T, api *process, ids []string, timeout time.Duration) map[string]testapi.Job {
	t.Helper()
	out := map[string]testapi.Job{}
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		out[id] = api.API().WaitDelivered(t, id, max(time.Until(deadline), time.Second))
	}
	return out
}

// expectEachOnce fails t unless the event of every job of ids arrived
// exactly once, signed, as the same bytes, and no other event arrived.
func expectEachOnce(t *testing.T, rcv *testapi.Receiver, ids []string) testapi.Tally {
	t.Helper()
	tally := rcv.Tally(ids)
	for _, id := range tally.Missing {
		t.Errorf("no callback for job %s", id)
	}
	for id, n := range tally.Repeats {
		t.Errorf("job %s: callback delivered %d times", id, n+1)
	}
	for _, ev := range tally.Unknown {
		t.Errorf("callback for an unknown event %s", ev)
	}
	for _, p := range tally.Problems {
		t.Error(p)
	}
	return tally
}

// Issue 7.5: a worker killed with SIGKILL in the middle of jobs loses none:
// the other worker's sweeper notices the lease that is no longer renewed
// after THUMBNAILED_STALE_AFTER and runs them again, and every job's
// callback arrives exactly once.
func TestKilledWorkerJobsAreRecovered(t *testing.T) {
	is := is.New(t)
	r, ns, env := redisEnv(t, "THUMBNAILED_STALE_AFTER", "2s", "THUMBNAILED_WORKER_CONCURRENCY", "2")
	rcv := testapi.NewReceiver(t, webhookSecret)
	src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
	api := startProcess(t, "api", "api", env)
	w1 := startProcess(t, "worker-1", "worker", env)
	w2 := startProcess(t, "worker-2", "worker", env)

	const jobs = 10
	const jobTime = 1500 * time.Millisecond
	ids := submitSlow(t, api, src, jobTime, jobs, rcv, 48)

	// Kill worker-1 once both workers are busy.
	busy := testapi.Eventually(15*time.Second, func() bool {
		return len(w1.Running()) > 0 && len(w2.Running()) > 0
	})
	is.True(busy) // both workers hold jobs
	killAt := w1.Signal(syscall.SIGKILL)
	is.True(w1.WaitExit(5 * time.Second))
	orphans := w1.Running() // the output is complete once the process is gone
	t.Logf("SIGKILL worker-1 while it held %d job(s): %v (worker-2 held %v)", len(orphans), orphans, w2.Running())
	is.True(len(orphans) > 0) // worker-1 died holding a job

	all, pollErrors, lastErr := api.API().EndAll(ids, 30*time.Second)
	if pollErrors > 0 {
		t.Logf("%d polls failed, the last: %v", pollErrors, lastErr)
	}
	var recovery time.Duration
	for _, id := range ids {
		j := all[id]
		if j.Status != "succeeded" {
			t.Errorf("job %s ended %q (error %+v); Redis holds:\n%s", id, j.Status, j.Error, describeJob(r, ns, id))
			continue
		}
		if slices.Contains(orphans, id) {
			took := j.FinishedAt.Sub(killAt)
			t.Logf("orphaned job %s succeeded %s after the kill", id, took.Round(10*time.Millisecond))
			recovery = max(recovery, took)
		}
	}
	detected := time.Duration(0)
	if at, ok := w2.FirstAt(msgRescued); ok {
		detected = at.Sub(killAt)
	}
	t.Logf("recovered in %s (SIGKILL -> the last orphaned job succeeded; stale after 2s, source %s); the sweeper re-queued it %s after the kill",
		recovery.Round(10*time.Millisecond), jobTime, detected.Round(10*time.Millisecond))
	is.True(recovery > 0)              // the orphaned jobs succeeded
	is.True(recovery < 30*time.Second) // within a generous bound

	is.True(rcv.WaitEach(ids, 20*time.Second)) // every job's callback arrived
	waitDelivered(t, api, ids, 20*time.Second) // and no attempt is left to send one more
	tally := expectEachOnce(t, rcv, ids)
	t.Logf("callbacks: %d distinct events, %d duplicates; worker-2 re-queued %d job(s) by lease and started %d",
		rcv.Distinct(), tally.Duplicates(), len(w2.JobIDs(msgRescued)), len(w2.JobIDs("job started")))

	ran := map[string]int{}
	for _, p := range []*process{w1, w2} {
		for _, id := range p.JobIDs("job started") {
			ran[id]++
		}
	}
	var twice []string
	for id, n := range ran {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	sort.Strings(twice)
	t.Logf("jobs started more than once: %v (the orphans were %v)", twice, orphans)
}

// A job orphaned by a killed worker and re-queued behind a backlog longer
// than THUMBNAILED_STALE_AFTER must still run once and succeed: it must not
// be re-queued again and again while it waits, nor be failed as
// worker_crashed when its copies start.
//
// (It once failed: Rescue left the job processing with a fresh heartbeat,
// so the sweeper queued copy after copy while the first waited, and each
// copy's start counted a crash. Rescue now counts the death once, drops the
// lease and puts the job back to queued, out of the sweeper's sight.)
func TestOrphanBehindBacklogRunsOnce(t *testing.T) {
	is := is.New(t)
	env := newEnv(t, "THUMBNAILED_STALE_AFTER", "1s")
	rcv := testapi.NewReceiver(t, webhookSecret)
	src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
	api := startProcess(t, "api", "api", env)
	w1 := startProcess(t, "worker-1", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	w2 := startProcess(t, "worker-2", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "4")

	const jobTime = 1500 * time.Millisecond
	ids := submitSlow(t, api, src, jobTime, 20, rcv, 48)
	is.True(testapi.Eventually(15*time.Second, func() bool {
		return len(w1.Running()) > 0 && len(w2.Running()) > 0
	}))
	killAt := w1.Signal(syscall.SIGKILL)
	is.True(w1.WaitExit(5 * time.Second))
	orphans := w1.Running()
	is.Equal(len(orphans), 1)
	orphan := orphans[0]

	all, _, _ := api.API().EndAll(ids, 30*time.Second)
	requeued, starts := 0, 0
	for _, id := range w2.JobIDs(msgRescued) {
		if id == orphan {
			requeued++
		}
	}
	for _, id := range w2.JobIDs("job started") {
		if id == orphan {
			starts++
		}
	}
	j := all[orphan]
	var after time.Duration
	if j.FinishedAt != nil {
		after = j.FinishedAt.Sub(killAt)
	}
	t.Logf("orphan %s: %s %+v %s after the kill; the sweeper re-queued it %d times and worker-2 started it %d times",
		orphan, j.Status, j.Error, after.Round(10*time.Millisecond), requeued, starts)
	is.Equal(j.Status, "succeeded") // the orphan succeeds
	is.Equal(requeued, 1)           // re-queued once
	is.Equal(starts, 1)             // and run once more
	for _, id := range ids {
		is.Equal(all[id].Status, "succeeded")
	}
}
