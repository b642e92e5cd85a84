package systemtest

import (
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
)

// Issue 7.5: a worker killed with SIGKILL in the middle of jobs loses none:
// the other worker's sweeper notices the missing heartbeats after
// THUMBNAILED_STALE_AFTER and runs them again, and every job's callback
// arrives exactly once.
func TestKilledWorkerJobsAreRecovered(t *testing.T) {
	is := is.New(t)
	r := startRedis(t)
	env := serviceEnv(t, r, namespace())
	env["THUMBNAILED_STALE_AFTER"] = "2s"
	env["THUMBNAILED_WORKER_CONCURRENCY"] = "2"
	rcv := newReceiver(t)
	src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
	api := startProcess(t, "api", "api", env)
	w1 := startProcess(t, "worker-1", "worker", env)
	w2 := startProcess(t, "worker-2", "worker", env)

	const jobs = 10
	const jobTime = 1500 * time.Millisecond
	var ids []string
	for i := range jobs {
		code, job := submitURL(t, api.URL, src.slow(jobTime, i), rcv.URL+"/hook", 48)
		is.Equal(code, 202)
		ids = append(ids, job.ID)
	}

	// Kill worker-1 once both workers are busy.
	busy := eventually(15*time.Second, 10*time.Millisecond, func() bool {
		return len(w1.Running()) > 0 && len(w2.Running()) > 0
	})
	is.True(busy) // both workers hold jobs
	killAt := w1.Signal(syscall.SIGKILL)
	is.True(w1.WaitExit(5 * time.Second))
	orphans := w1.Running() // the output is complete once the process is gone
	t.Logf("SIGKILL worker-1 while it held %d job(s): %v (worker-2 held %v)", len(orphans), orphans, w2.Running())
	is.True(len(orphans) > 0) // worker-1 died holding a job

	all, pollErrors, lastErr := waitEnded(api.URL, ids, 30*time.Second)
	if pollErrors > 0 {
		t.Logf("%d polls failed, the last: %v", pollErrors, lastErr)
	}
	var recovery time.Duration
	for _, id := range ids {
		j := all[id]
		if j.Status != "succeeded" {
			t.Errorf("job %s ended %q (error %+v); Redis holds:\n%s", id, j.Status, j.Error, describeJob(r, env["THUMBNAILED_NAMESPACE"], id))
			continue
		}
		if slices.Contains(orphans, id) {
			took := j.FinishedAt.Sub(killAt)
			t.Logf("orphaned job %s succeeded %s after the kill", id, took.Round(10*time.Millisecond))
			recovery = max(recovery, took)
		}
	}
	detected := time.Duration(0)
	if at, ok := w2.FirstAt("re-queued a job whose worker stopped sending heartbeats"); ok {
		detected = at.Sub(killAt)
	}
	t.Logf("recovered in %s (SIGKILL -> the last orphaned job succeeded; stale after 2s, source %s); the sweeper re-queued it %s after the kill, at the back of the queue",
		recovery.Round(10*time.Millisecond), jobTime, detected.Round(10*time.Millisecond))
	is.True(recovery > 0)              // the orphaned jobs succeeded
	is.True(recovery < 30*time.Second) // within a generous bound

	is.True(rcv.WaitAll(ids, 20*time.Second)) // every job's callback arrived
	time.Sleep(time.Second)                   // a duplicate would show now
	problems, duplicates := rcv.Check(ids)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("callbacks: %d distinct events, %d duplicates; worker-2 re-queued %d job(s) by heartbeat and started %d",
		rcv.Distinct(), duplicates, len(w2.JobIDs("re-queued a job whose worker stopped sending heartbeats")), len(w2.JobIDs("job started")))

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
// copy's start counted a crash. Rescue now counts the death once and puts
// the job back to queued, out of the sweeper's sight.)
func TestOrphanBehindBacklogRunsOnce(t *testing.T) {
	is := is.New(t)
	r := startRedis(t)
	ns := namespace()
	env := serviceEnv(t, r, ns)
	env["THUMBNAILED_STALE_AFTER"] = "1s"
	rcv := newReceiver(t)
	src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
	api := startProcess(t, "api", "api", env)
	w1 := startProcess(t, "worker-1", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")
	w2 := startProcess(t, "worker-2", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "4")

	const jobTime = 1500 * time.Millisecond
	var ids []string
	for i := range 20 {
		code, job := submitURL(t, api.URL, src.slow(jobTime, i), rcv.URL+"/hook", 48)
		is.Equal(code, 202)
		ids = append(ids, job.ID)
	}
	is.True(eventually(15*time.Second, 10*time.Millisecond, func() bool {
		return len(w1.Running()) > 0 && len(w2.Running()) > 0
	}))
	killAt := w1.Signal(syscall.SIGKILL)
	is.True(w1.WaitExit(5 * time.Second))
	orphans := w1.Running()
	is.Equal(len(orphans), 1)
	orphan := orphans[0]

	all, _, _ := waitEnded(api.URL, ids, 30*time.Second)
	requeued, starts := 0, 0
	for _, id := range w2.JobIDs("re-queued a job whose worker stopped sending heartbeats") {
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
	t.Logf("orphan %s: %s %+v %s after the kill; the sweeper re-queued it %d times and worker-2 started it %d times",
		orphan, j.Status, j.Error, j.FinishedAt.Sub(killAt).Round(10*time.Millisecond), requeued, starts)
	is.Equal(j.Status, "succeeded") // the orphan succeeds
	is.Equal(requeued, 1)           // re-queued once
	is.Equal(starts, 1)             // and run once more
	for _, id := range ids {
		is.Equal(all[id].Status, "succeeded")
	}
}
