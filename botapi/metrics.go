package botapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count the Bot API calls of every bot by method. A nil *Metrics
// records nothing. 429s by bot are botpool's; these are all calls.
type Metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the series on reg (never the global registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_botapi_requests_total", Help: "Bot API calls by method.",
		}, []string{"method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_botapi_errors_total", Help: "Bot API calls by method that failed: no answer, or an answer other than HTTP 200.",
		}, []string{"method"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_botapi_request_duration_seconds", Help: "Time from sending a Bot API call to its answer's headers.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"method"}),
	}
	reg.MustRegister(m.requests, m.errors, m.duration)
	return m
}

// Instrument returns a copy of c whose calls are counted; c itself is not
// changed. With a nil *Metrics it returns c.
func (m *Metrics) Instrument(c *http.Client) *http.Client {
	if m == nil {
		return c
	}
	out := *c
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	out.Transport = countingTransport{m: m, next: next}
	return &out
}

type countingTransport struct {
	m    *Metrics
	next http.RoundTripper
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	method := MethodOf(req.URL.Path)
	start := time.Now()
	res, err := t.next.RoundTrip(req)
	t.m.requests.WithLabelValues(method).Inc()
	t.m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if err != nil || res.StatusCode != http.StatusOK {
		t.m.errors.WithLabelValues(method).Inc()
	}
	return res, err
}

// MethodOf names the Bot API method of a request path
// (".../bot<token>/sendMessage" → "sendMessage"; a file download
// ".../file/bot<token>/..." → "file"). The token never appears in it, and
// anything else is "other", so the label's values stay few.
func MethodOf(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s == "file" && i+1 < len(segs) && strings.HasPrefix(segs[i+1], "bot") {
			return "file"
		}
	}
	if n := len(segs); n >= 2 && strings.HasPrefix(segs[n-2], "bot") && isMethodName(segs[n-1]) {
		return segs[n-1]
	}
	return "other"
}

func isMethodName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}
