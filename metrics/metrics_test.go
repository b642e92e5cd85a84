package metrics_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testredis"
	"github.com/thumbnailed/thumbnailed/metrics"
	"github.com/thumbnailed/thumbnailed/worker"
)

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetricsShowJobsStagesDeliveriesQueuesAndRequests(t *testing.T) {
	is := is.New(t)
	r := testredis.New(t)
	m := metrics.New()
	m.Register(worker.QueueCollector(r.Namespace, r.Pool))

	_, err := work.NewEnqueuer(r.Namespace, r.Pool).Enqueue("thumbnail", work.Q{"job_id": "a"})
	is.NoErr(err)
	m.Enqueued("thumbnail")
	m.Finished("thumbnail", "failed", "too_many_pixels")
	m.Stage("decode_resize", 120*time.Millisecond)
	m.Delivery("callback", "retry")
	m.Request("POST", "/v1/thumbnails", 202, 3*time.Millisecond)

	out := scrape(t, m)
	for _, want := range []string{
		`thumbnailed_jobs_enqueued_total{type="thumbnail"} 1`,
		`thumbnailed_jobs_finished_total{code="too_many_pixels",outcome="failed",type="thumbnail"} 1`,
		`thumbnailed_job_stage_duration_seconds_count{stage="decode_resize"} 1`,
		`thumbnailed_delivery_attempts_total{channel="callback",outcome="retry"} 1`,
		`thumbnailed_http_requests_total{method="POST",route="/v1/thumbnails",status="202"} 1`,
		`thumbnailed_queue_depth{type="thumbnail"} 1`,
		`thumbnailed_queue_oldest_job_age_seconds{type="thumbnail"}`,
		`thumbnailed_dead_jobs 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Issue 13 item 1: no client-controlled value makes a series. Invented
// and huge methods, and paths that match no route, all land in fixed labels.
func TestRequestLabelsComeFromFixedSets(t *testing.T) {
	is := is.New(t)
	m := metrics.New()
	m.Request("GET", "/healthz", 200, time.Millisecond)
	before := len(scrape(t, m))
	for i := range 2000 {
		m.Request(fmt.Sprintf("M%08d", i), "/healthz", 405, time.Millisecond)
		m.Request("GET", "", 404, time.Millisecond) // no route matched
	}
	m.Request(strings.Repeat("X", 100<<10), "/healthz", 405, time.Millisecond)
	m.Request("GET", "/healthz", 1000, time.Millisecond) // not a status
	out := scrape(t, m)
	t.Logf("/metrics: %d bytes before, %d after 4,002 odd requests", before, len(out))
	is.True(len(out) < before+4096) // a few fixed series more, not one per request
	is.True(strings.Contains(out, `thumbnailed_http_requests_total{method="other",route="/healthz",status="405"} 2001`))
	is.True(strings.Contains(out, `thumbnailed_http_requests_total{method="GET",route="unmatched",status="404"} 2000`))
	is.True(strings.Contains(out, `status="other"`))
	is.True(!strings.Contains(out, "XXXX"))
	is.Equal(metrics.Method("PATCH"), "PATCH")
	is.Equal(metrics.Method("get"), "other") // methods are case-sensitive
}

func TestANilMetricsIsSafe(t *testing.T) {
	var m *metrics.Metrics
	m.Enqueued("thumbnail")
	m.Finished("thumbnail", "succeeded", "")
	m.Stage("total", time.Second)
	m.Delivery("email", "delivered")
	m.Request("GET", "/healthz", 200, time.Millisecond)
	is.New(t).True(m.Handler() == nil)
}
