package r2

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Records is what the index asks of a record store: *Store (the bucket)
// and *Local (the folder used without one) are both.
type Records interface {
	Get(ctx context.Context, uniqueID string) (Record, string, error)
	Create(ctx context.Context, rec Record) error
	Merge(ctx context.Context, rec Record) (Record, error)
}

// Metrics count record operations by kind (get, create, merge) and store
// ("r2" for the bucket, "local" for the folder). An absent object on get
// and an existing one on create are answers, not errors. A nil *Metrics
// records nothing.
type Metrics struct {
	ops      *prometheus.CounterVec
	errs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the series on reg (never the global registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"store", "op"}
	m := &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_r2_operations_total", Help: "Index record operations by store and kind.",
		}, labels),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_r2_errors_total", Help: "Index record operations that failed, by store and kind.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_r2_operation_duration_seconds", Help: "Time of an index record operation (a merge includes its compare-and-swap rounds).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, labels),
	}
	reg.MustRegister(m.ops, m.errs, m.duration)
	return m
}

// Wrap returns r with its operations counted under store; with a nil
// *Metrics it returns r.
func (m *Metrics) Wrap(store string, r Records) Records {
	if m == nil {
		return r
	}
	return counted{m: m, store: store, next: r}
}

type counted struct {
	m     *Metrics
	store string
	next  Records
}

func (c counted) observe(op string, start time.Time, err error) {
	c.m.ops.WithLabelValues(c.store, op).Inc()
	c.m.duration.WithLabelValues(c.store, op).Observe(time.Since(start).Seconds())
	if err != nil {
		c.m.errs.WithLabelValues(c.store, op).Inc()
	}
}

func (c counted) Get(ctx context.Context, uniqueID string) (Record, string, error) {
	start := time.Now()
	rec, etag, err := c.next.Get(ctx, uniqueID)
	if errors.Is(err, ErrNotFound) {
		c.observe("get", start, nil)
	} else {
		c.observe("get", start, err)
	}
	return rec, etag, err
}

func (c counted) Create(ctx context.Context, rec Record) error {
	start := time.Now()
	err := c.next.Create(ctx, rec)
	if errors.Is(err, ErrExists) {
		c.observe("create", start, nil)
	} else {
		c.observe("create", start, err)
	}
	return err
}

func (c counted) Merge(ctx context.Context, rec Record) (Record, error) {
	start := time.Now()
	out, err := c.next.Merge(ctx, rec)
	c.observe("merge", start, err)
	return out, err
}
