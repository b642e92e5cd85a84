package systemtest

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
)

// holdingReceiver holds the first callback attempt until the test lets it
// go (or the sender hangs up), then answers first; later attempts get 204.
type holdingReceiver struct {
	*httptest.Server
	arrived chan struct{} // closed when the first attempt arrives
	release chan struct{} // close to answer the first attempt

	mu        sync.Mutex
	attempts  int
	delivered int // 2xx answers
}

func newHoldingReceiver(t *testing.T, first int) *holdingReceiver {
	h := &holdingReceiver{arrived: make(chan struct{}), release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.attempts++
		n := h.attempts
		h.mu.Unlock()
		if n == 1 {
			close(h.arrived)
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(first)
			return
		}
		h.mu.Lock()
		h.delivered++
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		h.Close()
	})
	return h
}

func (h *holdingReceiver) counts() (attempts, delivered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attempts, h.delivered
}

// A callback attempt that fails while Redis is away must still be retried
// once Redis is back ("retried until it is accepted").
//
// (It once failed: an outcome that could not be recorded sent the delivery
// job to the dead set with the delivery pending for good. The notifier now
// retries its bookkeeping until Redis answers, within its deadline.)
func TestCallbackFailedDuringRedisOutageIsRetried(t *testing.T) {
	is := is.New(t)
	r := startRedis(t)
	ns := namespace()
	env := serviceEnv(t, r, ns)
	env["THUMBNAILED_CALLBACK_RETRY_SCHEDULE"] = "1s,1s,1s,1s"
	rcv := newHoldingReceiver(t, http.StatusServiceUnavailable)
	svc := startProcess(t, "all", "all", env)

	job := submitAndAwaitFirstAttempt(t, svc.URL, rcv)
	r.Kill()                           // Redis goes while the attempt is in flight
	close(rcv.release)                 // the attempt fails: 503
	time.Sleep(500 * time.Millisecond) // the worker tries to record it meanwhile
	r.Start()

	delivered := eventually(40*time.Second, 100*time.Millisecond, func() bool {
		_, d := rcv.counts()
		return d > 0
	})
	attempts, _ := rcv.counts()
	j, err := getJob(svc.URL, job.ID)
	is.NoErr(err)
	t.Logf("callback attempts seen by the receiver: %d; delivery in the record: %+v; gocraft/work: %s",
		attempts, j.Deliveries, gocraftSummary(r, ns))
	is.True(delivered) // the callback is retried after the outage and accepted
}

// A worker killed while it sends a callback must not lose the callback: the
// attempt is counted interrupted and retried.
//
// (It once failed: the run that found the attempt "in progress" dropped
// it. It now queues a check for when the attempt must have ended, which
// counts it interrupted and schedules the next attempt.)
func TestCallbackInterruptedByKilledWorkerIsRetried(t *testing.T) {
	is := is.New(t)
	r := startRedis(t)
	ns := namespace()
	env := serviceEnv(t, r, ns)
	env["THUMBNAILED_CALLBACK_RETRY_SCHEDULE"] = "1s,1s,1s,1s"
	// An attempt is held at most the callback timeout plus 15 s of
	// bookkeeping; after that the next worker counts it interrupted.
	env["THUMBNAILED_CALLBACK_TIMEOUT"] = "2s"
	rcv := newHoldingReceiver(t, http.StatusNoContent)
	api := startProcess(t, "api", "api", env)
	w1 := startProcess(t, "worker-1", "worker", env)

	job := submitAndAwaitFirstAttempt(t, api.URL, rcv)
	killAt := w1.Signal(syscall.SIGKILL) // dies mid-send
	is.True(w1.WaitExit(5 * time.Second))
	w2 := startProcess(t, "worker-2", "worker", env)

	delivered := eventually(60*time.Second, 100*time.Millisecond, func() bool {
		_, d := rcv.counts()
		return d > 0
	})
	attempts, _ := rcv.counts()
	j, err := getJob(api.URL, job.ID)
	is.NoErr(err)
	t.Logf("%s after the kill: callback attempts %d, delivery %+v, worker-2 said: %v",
		time.Since(killAt).Round(100*time.Millisecond), attempts, j.Deliveries, msgs(w2, job.ID))
	is.True(delivered) // the interrupted callback is retried and accepted
}

// msgs lists the log messages a process wrote about a job.
func msgs(p *process, id string) []string {
	var out []string
	for _, l := range p.Lines() {
		if l.str("job_id") == id {
			out = append(out, l.str("msg"))
		}
	}
	return out
}

// submitAndAwaitFirstAttempt submits a small upload with a callback to rcv and
// returns once the receiver holds the first attempt.
func submitAndAwaitFirstAttempt(t *testing.T, apiURL string, rcv *holdingReceiver) jobJSON {
	t.Helper()
	code, job, err := submitUpload(apiURL, readTestdata(t, "go-video-001.jpeg"),
		map[string]string{"width": "16", "callback_url": rcv.URL + "/hook"})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("submit: %d %v", code, err)
	}
	select {
	case <-rcv.arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("the first callback attempt did not arrive")
	}
	return job
}
