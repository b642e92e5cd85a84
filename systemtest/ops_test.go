package systemtest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// readyz probes /readyz once; 0 when the request itself failed.
func readyz(p *process) int {
	ctx, cancel := probeCtx()
	defer cancel()
	code, _, err := p.get(ctx, "/readyz")
	if err != nil {
		return 0
	}
	return code
}

// Issue 7.7: /readyz follows Redis: 200, 503 while redis-server is down,
// 200 again once it is back.
func TestReadinessFollowsRedis(t *testing.T) {
	is := is.New(t)
	r := startRedis(t)
	api := startProcess(t, "api", "api", serviceEnv(t, r, namespace()))

	is.Equal(readyz(api), http.StatusOK) // ready with Redis up

	downAt := time.Now()
	r.Shutdown()
	is.True(eventually(10*time.Second, 50*time.Millisecond, func() bool {
		return readyz(api) == http.StatusServiceUnavailable
	})) // not ready while Redis is down
	notReady := time.Since(downAt)
	ctx, cancel := probeCtx()
	defer cancel()
	code, body, err := api.get(ctx, "/readyz")
	is.NoErr(err)
	is.Equal(code, http.StatusServiceUnavailable)
	is.True(strings.Contains(body, "redis_unavailable")) // the problem says why

	upAt := time.Now()
	r.Start()
	is.True(eventually(15*time.Second, 50*time.Millisecond, func() bool {
		return readyz(api) == http.StatusOK
	})) // ready again
	t.Logf("/readyz: 503 %s after redis stopped, 200 again %s after it was back",
		notReady.Round(time.Millisecond), time.Since(upAt).Round(time.Millisecond))
	is.True(!api.Exited())
}

// A worker serves only /healthz, /readyz and /metrics, and its metrics show
// the jobs it finished and the queues.
func TestWorkerServesOnlyOps(t *testing.T) {
	is := is.New(t)
	r := startRedis(t)
	env := serviceEnv(t, r, namespace())
	api := startProcess(t, "api", "api", env)
	w := startProcess(t, "worker", "worker", env)

	ctx, cancel := probeCtx()
	defer cancel()
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		code, _, err := w.get(ctx, path)
		is.NoErr(err)
		is.Equal(code, http.StatusOK) // the worker serves path
	}
	for _, path := range []string{"/v1/thumbnails/abcdefghijklmnopqrstuvwxyz", "/openapi.yaml"} {
		code, _, err := w.get(ctx, path)
		is.NoErr(err)
		is.Equal(code, http.StatusNotFound) // the worker does not serve the API
	}
	code, _, _ := submitUpload(w.URL, readTestdata(t, "go-video-001.jpeg"), map[string]string{"width": "16"})
	is.Equal(code, http.StatusNotFound) // nor take jobs

	code, job, err := submitUpload(api.URL, readTestdata(t, "go-video-001.jpeg"), map[string]string{"width": "16"})
	is.NoErr(err)
	is.Equal(code, http.StatusAccepted)
	all, _, _ := waitEnded(api.URL, []string{job.ID}, 20*time.Second)
	is.Equal(all[job.ID].Status, "succeeded")

	ctx2, cancel2 := probeCtx()
	defer cancel2()
	code, metrics, err := w.get(ctx2, "/metrics")
	is.NoErr(err)
	is.Equal(code, http.StatusOK)
	var finished, depth string
	for _, line := range strings.Split(metrics, "\n") {
		switch {
		case strings.HasPrefix(line, "thumbnailed_jobs_finished_total{") && strings.Contains(line, `outcome="succeeded"`):
			finished = line
		case strings.HasPrefix(line, "thumbnailed_queue_depth{") && strings.Contains(line, `type="thumbnail"`):
			depth = line
		}
	}
	t.Logf("worker /metrics: %s | %s", finished, depth)
	is.True(strings.HasSuffix(finished, " 1")) // thumbnailed_jobs_finished_total counts the job
	is.True(depth != "")                       // thumbnailed_queue_depth is reported
}
