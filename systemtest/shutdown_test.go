package systemtest

import (
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// Issue 7.4: a worker that gets SIGTERM in the middle of a job finishes it
// and exits 0 within THUMBNAILED_SHUTDOWN_TIMEOUT.
func TestWorkerFinishesItsJobOnSIGTERM(t *testing.T) {
	is := is.New(t)
	env := newEnv(t)
	rcv := testapi.NewReceiver(t, webhookSecret)
	src := newSourceServer(t, readTestdata(t, "go-video-001.jpeg"))
	api := startProcess(t, "api", "api", env)
	w1 := startProcess(t, "worker-1", "worker", env, "THUMBNAILED_WORKER_CONCURRENCY", "1")

	const jobTime = 2 * time.Second
	id := submitURL(t, api, src.slow(jobTime, 1), rcv, 64)

	started := testapi.Eventually(10*time.Second, func() bool {
		return slices.Contains(w1.JobIDs("job started"), id)
	})
	is.True(started) // worker-1 picked the job up
	startedAt, _ := w1.FirstAt("job started")

	sigAt := w1.Signal(syscall.SIGTERM)
	is.True(w1.WaitExit(20 * time.Second)) // worker-1 exits after SIGTERM
	shutdown := w1.exitedAt.Sub(sigAt)
	t.Logf("worker-1 exited %d after SIGTERM in %s (the job had run %s of its %s source when the signal came)",
		w1.ExitCode(), shutdown.Round(time.Millisecond), sigAt.Sub(startedAt).Round(time.Millisecond), jobTime)
	is.Equal(w1.ExitCode(), 0)                               // a graceful stop exits 0
	is.True(shutdown < 15*time.Second)                       // within THUMBNAILED_SHUTDOWN_TIMEOUT
	is.True(shutdown > jobTime/2)                            // it waited for the job rather than dropping it
	is.True(slices.Contains(w1.JobIDs("job succeeded"), id)) // worker-1 itself finished the job

	// The record says so at once: no other worker has run yet.
	got, code := api.API().Get(t, id)
	is.Equal(code, http.StatusOK)
	is.Equal(got.Status, "succeeded")

	// The callback is a job of its own, queued when the thumbnail job ended.
	// Whether the stopping worker still takes it is up to gocraft/work's
	// loop (it may see the stop first); if it did not, the next worker must.
	before := len(rcv.For(id))
	t.Logf("callbacks delivered by the stopping worker: %d", before)
	if before == 0 {
		startProcess(t, "worker-2", "worker", env)
		is.True(rcv.WaitEach([]string{id}, 15*time.Second)) // the next worker delivers the queued callback
		t.Logf("the callback was left queued by worker-1 and delivered by worker-2")
	}
	waitDelivered(t, api, []string{id}, 15*time.Second) // no attempt is left to send one more
	expectEachOnce(t, rcv, []string{id})
}

// Issue 7.4: an api process that gets SIGTERM while a slow upload is in
// flight answers it (202), refuses new connections, and exits 0.
func TestAPIFinishesInFlightRequestOnSIGTERM(t *testing.T) {
	is := is.New(t)
	r, ns, env := redisEnv(t)
	api := startProcess(t, "api", "api", env)

	body, contentType := testapi.Multipart(readTestdata(t, "Storm.jpg"), map[string]string{"width": "64"})
	pr, pw := io.Pipe()
	const chunks = 20
	const trickle = time.Second
	halfway := make(chan struct{})
	go func() {
		step := (len(body) + chunks - 1) / chunks
		for i, off := 0, 0; off < len(body); i, off = i+1, off+step {
			if _, err := pw.Write(body[off:min(off+step, len(body))]); err != nil {
				return
			}
			if i == chunks/4 {
				close(halfway)
			}
			time.Sleep(trickle / chunks)
		}
		pw.Close()
	}()
	type answer struct {
		code int
		at   time.Time
		err  error
		id   string
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, api.URL+"/v1/thumbnails", pr)
		req.Header.Set("Content-Type", contentType)
		client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
		resp, err := client.Do(req)
		if err != nil {
			answered <- answer{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- answer{code: resp.StatusCode, id: jobID(testapi.Response{Body: b}), err: err, at: time.Now()}
	}()

	<-halfway // a quarter of the upload is on the wire: the request is in flight
	sigAt := api.Signal(syscall.SIGTERM)

	// New connections are refused once the listener is closed; the in-flight
	// upload keeps going meanwhile.
	var refusedAt time.Time
	var lastDialErr error
	refused := testapi.Eventually(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", api.Addr, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		lastDialErr = err
		refusedAt = time.Now()
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	is.True(refused) // a new connection after SIGTERM is refused

	a := <-answered
	is.NoErr(a.err)
	t.Logf("SIGTERM -> new connections refused after %s (%v); in-flight upload answered %d after %s",
		refusedAt.Sub(sigAt).Round(time.Millisecond), lastDialErr, a.code, a.at.Sub(sigAt).Round(time.Millisecond))
	is.Equal(a.code, http.StatusAccepted) // the in-flight upload is accepted
	is.True(a.id != "")                   // with its job
	is.True(refusedAt.Before(a.at))       // connections were refused while the upload was still in flight

	is.True(api.WaitExit(20 * time.Second)) // the api exits
	t.Logf("api exited %d, %s after SIGTERM", api.ExitCode(), api.exitedAt.Sub(sigAt).Round(time.Millisecond))
	is.Equal(api.ExitCode(), 0)
	is.True(api.exitedAt.Sub(sigAt) < 15*time.Second) // within THUMBNAILED_SHUTDOWN_TIMEOUT

	// The accepted job is really queued in Redis for a worker.
	c, err := r.Conn()
	is.NoErr(err)
	defer c.Close()
	exists, err := c.Do("EXISTS", ns+":record:"+a.id)
	is.NoErr(err)
	is.Equal(exists, int64(1)) // the job record of the accepted upload is stored
	queued, err := c.Do("LLEN", ns+":jobs:thumbnail")
	is.NoErr(err)
	is.Equal(queued, int64(1)) // and its job is on the queue
}
