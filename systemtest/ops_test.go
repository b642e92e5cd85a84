package systemtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// readyz probes /readyz once; 0 when the request itself failed.
func readyz(p *process) int {
	code, _, err := p.get("/readyz")
	if err != nil {
		return 0
	}
	return code
}

// Issue 7.7: /readyz follows Redis: 200, 503 while redis-server is down,
// 200 again once it is back.
func TestReadinessFollowsRedis(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r, _, env := redisEnv(t)
	api := startProcess(t, "api", "api", env)

	is.Equal(readyz(api), http.StatusOK) // ready with Redis up

	downAt := time.Now()
	r.Shutdown()
	is.True(testapi.Eventually(10*time.Second, func() bool {
		return readyz(api) == http.StatusServiceUnavailable
	})) // not ready while Redis is down
	notReady := time.Since(downAt)
	code, body, err := api.get("/readyz")
	is.NoErr(err)
	is.Equal(code, http.StatusServiceUnavailable)
	var p testapi.Problem
	is.NoErr(json.Unmarshal([]byte(body), &p))
	is.Equal(p.Code, "storage_unavailable")           // the problem says why (issue 12 renamed redis_unavailable)
	is.True(strings.Contains(p.Detail, "Redis does")) // and names Redis

	upAt := time.Now()
	r.Start()
	is.True(testapi.Eventually(15*time.Second, func() bool {
		return readyz(api) == http.StatusOK
	})) // ready again
	t.Logf("/readyz: 503 %s after redis stopped, 200 again %s after it was back",
		notReady.Round(time.Millisecond), time.Since(upAt).Round(time.Millisecond))
	is.True(!api.Exited())
}

// A worker serves only /healthz, /readyz and /metrics, and its metrics show
// the jobs it finished and the queues.
func TestWorkerServesOnlyOps(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := newEnv(t)
	api := startProcess(t, "api", "api", env)
	w := startProcess(t, "worker", "worker", env)

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		code, _, err := w.get(path)
		is.NoErr(err)
		is.Equal(code, http.StatusOK) // the worker serves path
	}
	for _, path := range []string{"/v1/thumbnails/abcdefghijklmnopqrstuvwxyz", "/openapi.yaml"} {
		code, _, err := w.get(path)
		is.NoErr(err)
		is.Equal(code, http.StatusNotFound) // the worker does not serve the API
	}
	image := readTestdata(t, "go-video-001.jpeg")
	fields := map[string]string{"width": "16"}
	is.Equal(w.API().Upload(t, image, fields, nil).Status, http.StatusNotFound) // nor take jobs

	resp := api.API().Upload(t, image, fields, nil)
	is.Equal(resp.Status, http.StatusAccepted)
	job := api.API().WaitEnded(t, resp.Job(t).ID, 20*time.Second)
	is.Equal(job.Status, "succeeded")

	// The worker counts the job just after it records it: read until it has.
	var finished, depth string
	testapi.Eventually(5*time.Second, func() bool {
		code, metrics, err := w.get("/metrics")
		if err != nil || code != http.StatusOK {
			return false
		}
		for _, line := range strings.Split(metrics, "\n") {
			switch {
			case strings.HasPrefix(line, "thumbnailed_jobs_finished_total{") && strings.Contains(line, `outcome="succeeded"`):
				finished = line
			case strings.HasPrefix(line, "thumbnailed_queue_depth{") && strings.Contains(line, `type="thumbnail"`):
				depth = line
			}
		}
		return strings.HasSuffix(finished, " 1")
	})
	t.Logf("worker /metrics: %s | %s", finished, depth)
	is.True(strings.HasSuffix(finished, " 1")) // thumbnailed_jobs_finished_total counts the job
	is.True(depth != "")                       // thumbnailed_queue_depth is reported
}
