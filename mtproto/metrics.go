package mtproto

import (
	"context"
	"errors"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/telegram"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count MTProto calls, errors and flood waits by method
// ("upload.saveBigFilePart"). Its middleware sits innermost in every
// client's chain (main connection and data pools), under the flood-wait
// waiter, so each FLOOD_WAIT Telegram sends is counted even when the
// waiter obeys it and the caller never sees it. A nil *Metrics records
// nothing.
type Metrics struct {
	requests   *prometheus.CounterVec
	errors     *prometheus.CounterVec
	floodWaits *prometheus.CounterVec
	floodSecs  *prometheus.CounterVec
}

// NewMetrics registers the series on reg (never the global registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_mtproto_requests_total", Help: "MTProto calls by method (each retry counts).",
		}, []string{"method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_mtproto_errors_total", Help: "MTProto calls that failed, by method and error (Telegram's error type, or network/canceled).",
		}, []string{"method", "error"}),
		floodWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_mtproto_flood_waits_total", Help: "FLOOD_WAIT answers by method.",
		}, []string{"method"}),
		floodSecs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_mtproto_flood_wait_seconds_total", Help: "Seconds Telegram asked to wait in FLOOD_WAIT answers, by method.",
		}, []string{"method"}),
	}
	reg.MustRegister(m.requests, m.errors, m.floodWaits, m.floodSecs)
	return m
}

// Middleware counts every call that passes through it.
func (m *Metrics) Middleware() telegram.Middleware {
	return telegram.MiddlewareFunc(func(next tg.Invoker) telegram.InvokeFunc {
		return func(ctx context.Context, input bin.Encoder, output bin.Decoder) error {
			method := methodOf(input)
			err := next.Invoke(ctx, input, output)
			m.requests.WithLabelValues(method).Inc()
			if err == nil {
				return nil
			}
			m.errors.WithLabelValues(method, errorType(ctx, err)).Inc()
			if d, ok := tgerr.AsFloodWait(err); ok {
				m.floodWaits.WithLabelValues(method).Inc()
				m.floodSecs.WithLabelValues(method).Add(d.Seconds())
			}
			return err
		}
	})
}

// methodOf is the TL name of a request ("upload.saveBigFilePart"); gotd's
// generated request types all have one.
func methodOf(input bin.Encoder) string {
	if n, ok := input.(interface{ TypeName() string }); ok && n.TypeName() != "" {
		return n.TypeName()
	}
	return "unknown"
}

// errorType is Telegram's error type (FLOOD_WAIT, FILE_PART_MISSING, …,
// without the argument), or "canceled" / "network" for a call that got
// no answer.
func errorType(ctx context.Context, err error) string {
	if e, ok := tgerr.As(err); ok && e.Type != "" {
		return e.Type
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	return "network"
}
