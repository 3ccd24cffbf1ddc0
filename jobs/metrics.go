package jobs

import (
	"context"
	"strconv"
	"sync"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/mtproto"
)

// Metrics are the jobs package's Prometheus series: updates taken in,
// job results from River's events, and upload progress. A nil *Metrics
// records nothing; cmd/ferry makes one per process and passes it in
// (Deps.Metrics, WithMetrics).
type Metrics struct {
	updates     *prometheus.CounterVec
	results     *prometheus.CounterVec
	runTime     *prometheus.HistogramVec
	uploadBytes prometheus.Counter
	uploadParts *prometheus.CounterVec
}

// NewMetrics registers the series on reg (never the global registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_updates_total", Help: "Updates committed by the intake, by bot id and kind (a re-delivered update that made no new job is not counted; a re-delivered channel file is).",
		}, []string{"bot", "kind"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_job_results_total", Help: "Job runs in this process by kind and result: completed, failed (to be retried or discarded), snoozed, cancelled.",
		}, []string{"kind", "result"}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_job_run_seconds", Help: "Time a job run took in its worker, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"kind"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_upload_bytes_total", Help: "Bytes of upload parts Telegram acknowledged in this process (parts resumed from an earlier attempt are not counted).",
		}),
		uploadParts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_upload_parts_total", Help: "Upload parts by outcome: sent (acknowledged in this process), resent (a part sent again after a failed call), resumed (acknowledged by an earlier attempt, not sent again).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.updates, m.results, m.runTime, m.uploadBytes, m.uploadParts)
	return m
}

// WithMetrics counts the updates each commit accepted.
func WithMetrics(m *Metrics) IntakeOption { return func(in *Intake) { in.metrics = m } }

func (m *Metrics) update(botID int64, kind Kind) {
	if m == nil {
		return
	}
	if kind == "" {
		kind = KindOther
	}
	m.updates.WithLabelValues(strconv.FormatInt(botID, 10), string(kind)).Inc()
}

// jobResult names the result a River event reports.
func jobResult(k river.EventKind) string {
	switch k {
	case river.EventKindJobCompleted:
		return "completed"
	case river.EventKindJobFailed:
		return "failed"
	case river.EventKindJobSnoozed:
		return "snoozed"
	case river.EventKindJobCancelled:
		return "cancelled"
	}
	return string(k)
}

// watch counts the results of the jobs c works, from its event
// subscription, until c stops (River then closes the channel). Call it
// before c.Start, on a client that works queues.
func (m *Metrics) watch(c db.River) {
	if m == nil {
		return
	}
	events, _ := c.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed,
		river.EventKindJobSnoozed, river.EventKindJobCancelled)
	go func() {
		for ev := range events {
			if ev.Job == nil {
				continue
			}
			m.results.WithLabelValues(ev.Job.Kind, jobResult(ev.Kind)).Inc()
			if ev.JobStats != nil {
				m.runTime.WithLabelValues(ev.Job.Kind).Observe(ev.JobStats.RunDuration.Seconds())
			}
		}
	}()
}

// uploadMeter turns one upload attempt's progress reports into the upload
// series; its invoker wraps the data pool to see parts sent twice.
type uploadMeter struct {
	m *Metrics

	mu        sync.Mutex
	started   bool
	lastParts int
	lastAcked int64
	sent      map[[2]int64]struct{} // (file id, part) sent in this attempt
}

func (m *Metrics) uploadMeter() *uploadMeter {
	return &uploadMeter{m: m, sent: map[[2]int64]struct{}{}}
}

// progress counts the parts and bytes acknowledged since the last report.
// The first report of an attempt also brings the parts resumed from an
// earlier one; their bytes are taken as full parts (only the last part of
// a file is shorter, so a resumed last part is off by less than a part).
func (u *uploadMeter) progress(p mtproto.Progress, partSize int64) {
	if u.m == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.started {
		u.started = true
		u.lastParts = p.Resumed
		u.lastAcked = min(int64(p.Resumed)*partSize, p.Acked)
		if p.Resumed > 0 {
			u.m.uploadParts.WithLabelValues("resumed").Add(float64(p.Resumed))
		}
	}
	if n := p.Parts - u.lastParts; n > 0 {
		u.m.uploadParts.WithLabelValues("sent").Add(float64(n))
	}
	if b := p.Acked - u.lastAcked; b > 0 {
		u.m.uploadBytes.Add(float64(b))
	}
	u.lastParts, u.lastAcked = max(u.lastParts, p.Parts), max(u.lastAcked, p.Acked)
}

// invoker wraps the pool the uploader sends parts on: a part whose save
// call is made a second time in this attempt was re-sent.
func (u *uploadMeter) invoker(next tg.Invoker) tg.Invoker {
	if u.m == nil {
		return next
	}
	return partInvoker{u: u, next: next}
}

type partInvoker struct {
	u    *uploadMeter
	next tg.Invoker
}

func (p partInvoker) Invoke(ctx context.Context, input bin.Encoder, output bin.Decoder) error {
	var key [2]int64
	switch r := input.(type) {
	case *tg.UploadSaveBigFilePartRequest:
		key = [2]int64{r.FileID, int64(r.FilePart)}
	case *tg.UploadSaveFilePartRequest:
		key = [2]int64{r.FileID, int64(r.FilePart)}
	case mtproto.FilePartRequest:
		id, part := r.FilePart()
		key = [2]int64{id, int64(part)}
	default:
		return p.next.Invoke(ctx, input, output)
	}
	p.u.mu.Lock()
	_, again := p.u.sent[key]
	p.u.sent[key] = struct{}{}
	p.u.mu.Unlock()
	if again {
		p.u.m.uploadParts.WithLabelValues("resent").Inc()
	}
	return p.next.Invoke(ctx, input, output)
}
