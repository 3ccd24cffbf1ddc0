package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/webhook"
)

// metricSet is one process's registry and each package's series on it,
// made once by runServer and handed to the packages that record; /metrics
// serves reg. A nil *metricSet (the CLI's one-shot commands) records
// nothing.
type metricSet struct {
	reg     *prometheus.Registry
	webhook *webhook.Metrics
	botapi  *botapi.Metrics
	r2      *r2.Metrics
	index   *index.Metrics
	mtproto *mtproto.Metrics
	jobs    *jobs.Metrics
}

func newMetricSet() *metricSet {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &metricSet{
		reg:     reg,
		webhook: webhook.NewMetrics(reg),
		botapi:  botapi.NewMetrics(reg),
		r2:      r2.NewMetrics(reg),
		index:   index.NewMetrics(reg),
		mtproto: mtproto.NewMetrics(reg),
		jobs:    jobs.NewMetrics(reg),
	}
}

// records counts the operations of the index's record store.
func (ms *metricSet) records(store string, r r2.Records) r2.Records {
	if ms == nil {
		return r
	}
	return ms.r2.Wrap(store, r)
}

func (ms *metricSet) indexMetrics() *index.Metrics {
	if ms == nil {
		return nil
	}
	return ms.index
}
