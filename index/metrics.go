package index

import "github.com/prometheus/client_golang/prometheus"

// Metrics count what the index recorded, once its transaction committed
// (see Indexer.Committed). A nil *Metrics records nothing.
type Metrics struct {
	sightings prometheus.Counter
	posts     *prometheus.CounterVec
	files     prometheus.Counter
}

// NewMetrics registers the series on reg (never the global registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sightings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_index_sightings_total", Help: "Bots' sightings of channel file posts recorded by the index.",
		}),
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_index_posts_total", Help: "Channel posts claimed by the index (one reply each), by decision: new or existing.",
		}, []string{"result"}),
		files: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_index_new_files_total", Help: "Files new to the index (answered File Stored Successfully).",
		}),
	}
	reg.MustRegister(m.sightings, m.posts, m.files)
	return m
}

// Committed counts the outcomes of an IndexMany whose transaction was
// committed; the caller calls it after the commit, so a rolled-back and
// retried round is counted once.
func (ix *Indexer) Committed(outs []Outcome) {
	m := ix.metrics
	if m == nil {
		return
	}
	m.sightings.Add(float64(len(outs)))
	for _, o := range outs {
		if !o.Reply {
			continue
		}
		if o.Existing {
			m.posts.WithLabelValues("existing").Inc()
		} else {
			m.posts.WithLabelValues("new").Inc()
			m.files.Inc()
		}
	}
}
