package stream

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the stream handler's Prometheus series. A nil *Metrics
// records nothing.
type Metrics struct {
	inFlight  prometheus.Gauge
	bytes     prometheus.Counter
	firstByte prometheus.Histogram
	refreshes prometheus.Counter
	failovers prometheus.Counter
	requests  *prometheus.CounterVec
}

// NewMetrics registers the series on reg (never the global registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_stream_in_flight", Help: "Streams being served now.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_stream_served_bytes_total", Help: "Bytes of file content sent to stream clients.",
		}),
		firstByte: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_stream_first_byte_seconds", Help: "Time from a stream request to its first byte of content.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_stream_reference_refreshes_total", Help: "Expired file references refreshed during streams.",
		}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_stream_failovers_total", Help: "Streams moved to another bot after a bot failed.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_stream_requests_total", Help: "Stream requests by HTTP status.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.inFlight, m.bytes, m.firstByte, m.refreshes, m.failovers, m.requests)
	return m
}
