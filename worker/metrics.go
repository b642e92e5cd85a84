package worker

import (
	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueCollector reports gocraft/work's queues (depth and oldest job age per
// job type, the scheduled, retry and dead sets) and the work scheduled
// for later, read at scrape time, so every process reports the same shared
// figures without keeping state.
func QueueCollector(namespace string, pool *redis.Pool) prometheus.Collector {
	return &queueCollector{client: work.NewClient(namespace, pool)}
}

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
