package webhook

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-dev/ferry/db"
)

// Metrics are the webhook's Prometheus series. A nil *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	batch    prometheus.Histogram
	commit   *prometheus.HistogramVec
}

// NewMetrics registers the series on reg (never the global registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_webhook_requests_total", Help: "Webhook requests by HTTP status.",
		}, []string{"code"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_intake_batch_size", Help: "Updates committed per transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_intake_commit_seconds", Help: "Time to commit a batch of updates.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.batch, m.commit)
	return m
}

func (m *Metrics) request(code int) {
	if m != nil {
		m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

// ObserveCommit is the jobs.Intake observer.
func (m *Metrics) ObserveCommit(n int, took time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.batch.Observe(float64(n))
	m.commit.WithLabelValues(result).Observe(took.Seconds())
}

// JobsCollector reports River jobs by state at scrape time.
type JobsCollector struct {
	river db.River
	desc  *prometheus.Desc
}

// NewJobsCollector makes the collector on r; register it on the same
// registry as the other series.
func NewJobsCollector(r db.River) *JobsCollector {
	return &JobsCollector{river: r, desc: prometheus.NewDesc("ferry_jobs", "River jobs by state.", []string{"state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *JobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector; a database error yields no series.
func (c *JobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.river.JobCountByState(ctx)
	if err != nil {
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(state))
	}
}
