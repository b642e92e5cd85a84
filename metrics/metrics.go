// Package metrics is what /metrics shows: jobs, stages, deliveries, queues
// and HTTP requests, in Prometheus form. Every method is safe on a nil
// *Metrics, so code under test can run without one.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the service's collectors in its own registry.
type Metrics struct {
	registry    *prometheus.Registry
	enqueued    *prometheus.CounterVec
	finished    *prometheus.CounterVec
	stage       *prometheus.HistogramVec
	deliveries  *prometheus.CounterVec
	outputs     prometheus.Histogram
	encode      *prometheus.HistogramVec
	httpReqs    *prometheus.CounterVec
	httpLatency *prometheus.HistogramVec
}

// New registers every collector.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thumbnailed_jobs_enqueued_total", Help: "Jobs put on a queue, by job type.",
		}, []string{"type"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thumbnailed_jobs_finished_total", Help: "Thumbnail jobs that ended, by outcome (succeeded, failed) and error code.",
		}, []string{"type", "outcome", "code"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "thumbnailed_job_stage_duration_seconds",
			Help:    "Time spent in each stage of a thumbnail job: fetch, decode_resize, encode (decode_resize_encode with libvips, which streams them as one pass), total.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"stage"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thumbnailed_delivery_attempts_total", Help: "Delivery attempts by channel (email, callback) and outcome (delivered, retry, failed).",
		}, []string{"channel", "outcome"}),
		outputs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "thumbnailed_job_outputs", Help: "Outputs made per succeeded job.",
			Buckets: []float64{1, 2, 3, 4, 5, 6, 7, 8},
		}),
		encode: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "thumbnailed_output_encode_duration_seconds",
			Help:    "Time spent encoding one output, by format.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"format"}),
		httpReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thumbnailed_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		httpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "thumbnailed_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
	m.registry.MustRegister(m.enqueued, m.finished, m.stage, m.outputs, m.encode, m.deliveries, m.httpReqs, m.httpLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector of figures read at scrape time (the worker's
// queue collector).
func (m *Metrics) Register(c prometheus.Collector) {
	if m != nil {
		m.registry.MustRegister(c)
	}
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return nil
	}
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Enqueued counts a job put on the queue.
func (m *Metrics) Enqueued(jobType string) {
	if m != nil {
		m.enqueued.WithLabelValues(jobType).Inc()
	}
}

// Finished counts a thumbnail job that ended; code is "" on success.
func (m *Metrics) Finished(jobType, outcome, code string) {
	if m != nil {
		m.finished.WithLabelValues(jobType, outcome, code).Inc()
	}
}

// Stage records the time of one stage of a job.
func (m *Metrics) Stage(stage string, d time.Duration) {
	if m != nil && d > 0 {
		m.stage.WithLabelValues(stage).Observe(d.Seconds())
	}
}

// Outputs records how many outputs a succeeded job made.
func (m *Metrics) Outputs(n int) {
	if m != nil {
		m.outputs.Observe(float64(n))
	}
}

// Encode records the time one output took to encode; format is one the
// service writes (jpeg, png, webp).
func (m *Metrics) Encode(format string, d time.Duration) {
	if m != nil && d > 0 {
		m.encode.WithLabelValues(format).Observe(d.Seconds())
	}
}

// Delivery counts one delivery attempt's outcome.
func (m *Metrics) Delivery(channel, outcome string) {
	if m != nil {
		m.deliveries.WithLabelValues(channel, outcome).Inc()
	}
}

// Request records one HTTP request. Every label comes from a fixed set, so
// no client can add a series: a method the service does not know is
// "other", and a path that matched no route is "unmatched" (route is the
// matched route's pattern, never the path a client sent).
func (m *Metrics) Request(method, route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	method = Method(method)
	m.httpReqs.WithLabelValues(method, route, statusClass(status)).Inc()
	m.httpLatency.WithLabelValues(method, route).Observe(d.Seconds())
}

// Method is an HTTP method as a label: one of the standard methods, or "other".
func Method(method string) string {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return method
	}
	return "other"
}

// statusClass is a status as a label: the code itself when it is a real
// one (the server chooses it), else "other".
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status)
}
