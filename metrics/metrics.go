// Package metrics is what /metrics shows: jobs, stages, deliveries, queues
// and HTTP requests, in Prometheus form. Every method is safe on a nil
// *Metrics, so code under test can run without one.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
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
	httpReqs    *prometheus.CounterVec
	httpLatency *prometheus.HistogramVec
}

// New registers every collector. With a Redis pool it also reports the
// gocraft/work queues (depth and oldest job age per job type) at each scrape.
func New(namespace string, pool *redis.Pool) *Metrics {
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
		httpReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thumbnailed_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		httpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "thumbnailed_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
	m.registry.MustRegister(m.enqueued, m.finished, m.stage, m.deliveries, m.httpReqs, m.httpLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if pool != nil {
		m.registry.MustRegister(&queueCollector{client: work.NewClient(namespace, pool)})
	}
	return m
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

// Delivery counts one delivery attempt's outcome.
func (m *Metrics) Delivery(channel, outcome string) {
	if m != nil {
		m.deliveries.WithLabelValues(channel, outcome).Inc()
	}
}

// Request records one HTTP request.
func (m *Metrics) Request(method, route string, status int, d time.Duration) {
	if m != nil {
		m.httpReqs.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		m.httpLatency.WithLabelValues(method, route).Observe(d.Seconds())
	}
}

// queueCollector asks gocraft/work for its queues at scrape time, so every
// process reports the same shared figures without keeping state.
type queueCollector struct{ client *work.Client }

var (
	queueDepth = prometheus.NewDesc("thumbnailed_queue_depth", "Jobs waiting in a gocraft/work queue, by job type.", []string{"type"}, nil)
	queueAge   = prometheus.NewDesc("thumbnailed_queue_oldest_job_age_seconds", "Age of the oldest waiting job, by job type.", []string{"type"}, nil)
	scheduled  = prometheus.NewDesc("thumbnailed_scheduled_jobs", "Jobs waiting in the scheduled set (delivery retries).", nil, nil)
	retrying   = prometheus.NewDesc("thumbnailed_retry_jobs", "Jobs waiting in the retry set.", nil, nil)
	dead       = prometheus.NewDesc("thumbnailed_dead_jobs", "Jobs in the dead set.", nil, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueDepth, queueAge, scheduled, retrying, dead} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.client.Queues()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDepth, err)
		return
	}
	for _, q := range queues {
		ch <- prometheus.MustNewConstMetric(queueDepth, prometheus.GaugeValue, float64(q.Count), q.JobName)
		ch <- prometheus.MustNewConstMetric(queueAge, prometheus.GaugeValue, float64(q.Latency), q.JobName)
	}
	if _, n, err := c.client.ScheduledJobs(1); err == nil {
		ch <- prometheus.MustNewConstMetric(scheduled, prometheus.GaugeValue, float64(n))
	}
	if _, n, err := c.client.RetryJobs(1); err == nil {
		ch <- prometheus.MustNewConstMetric(retrying, prometheus.GaugeValue, float64(n))
	}
	if _, n, err := c.client.DeadJobs(1); err == nil {
		ch <- prometheus.MustNewConstMetric(dead, prometheus.GaugeValue, float64(n))
	}
}
