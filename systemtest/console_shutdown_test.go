package systemtest

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
)

// An api process told to stop (SIGTERM) while event streams are open ends
// them and exits 0 promptly. A stream is a request that never finishes by
// itself (it lasts until its job is over, or 10 minutes), and a client
// reconnects with Last-Event-ID to any api: graceful shutdown must not
// wait THUMBNAILED_SHUTDOWN_TIMEOUT for it and then fail.
func TestAPIEndsEventStreamsOnSIGTERM(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r := startRedis(t)
	env := serviceEnv(t, r, namespace())
	env["THUMBNAILED_API_KEYS"] = apiKey
	api := startProcess(t, "api", "api", env) // no worker: the job stays queued
	client := api.API().WithKey(apiKey)
	resp := client.Submit(t, map[string]any{"url": "http://127.0.0.1:9/x.jpg", "width": 16}, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	s, open := client.Events(t, resp.Job(t).ID, nil)
	is.Equal(open.Status, http.StatusOK)
	is.Equal(s.Next(t, 5*time.Second).Job(t).Status, "queued")

	sigAt := api.Signal(syscall.SIGTERM)
	ended := s.Ends(t, 20*time.Second)
	endedAfter := time.Since(sigAt)
	exited := api.WaitExit(20 * time.Second)
	t.Logf("SIGTERM with one event stream open: stream ended %v after %s; api exited %v (code %d) %s after SIGTERM (THUMBNAILED_SHUTDOWN_TIMEOUT 15s)",
		ended, endedAfter.Round(time.Millisecond), exited, api.ExitCode(), api.exitedAt.Sub(sigAt).Round(time.Millisecond))
	is.True(ended)
	is.True(endedAfter < 5*time.Second) // the stream is ended, not left to the shutdown timeout
	is.True(exited)
	is.Equal(api.ExitCode(), 0)                      // a clean stop
	is.True(api.exitedAt.Sub(sigAt) < 5*time.Second) // promptly
}
