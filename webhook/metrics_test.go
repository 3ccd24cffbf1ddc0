package webhook_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/webhook"
)

// The jobs collector reports River's jobs by state at scrape time.
func TestJobsCollectorCountsByState(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	logger := slog.New(slog.DiscardHandler)
	d := dbtest.New(t)
	bots, err := botapi.New(cfg.Bots, "http://127.0.0.1:1", nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	client, err := jobs.NewClient(&jobs.Deps{DB: d, Config: cfg, Bots: bots, Logger: logger}, jobs.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 2; id++ {
		if _, err := client.Insert(ctx, jobs.UpdateArgs{BotID: botID, UpdateID: id, Update: []byte(`{}`)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(webhook.NewJobsCollector(client))
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "ferry_jobs" {
		t.Fatalf("gathered %v, %v", mfs, err)
	}
	got := map[string]float64{}
	for _, m := range mfs[0].GetMetric() {
		if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "state" {
			t.Fatalf("labels %v, want state alone", m.GetLabel())
		}
		got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	for state, n := range got {
		if want := map[bool]float64{true: 2}[state == "available"]; n != want {
			t.Fatalf("ferry_jobs = %v, want available 2 and every other state 0", got)
		}
	}
	if got["available"] != 2 {
		t.Fatalf("ferry_jobs = %v, want available 2", got)
	}
}
