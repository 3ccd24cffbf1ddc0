package r2_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-dev/ferry/r2"
)

// flaky is a record store whose answers the test picks by unique id.
type flaky struct{}

var errDown = errors.New("bucket unreachable")

func (flaky) Get(_ context.Context, id string) (r2.Record, string, error) {
	if id == "absent" {
		return r2.Record{}, "", r2.ErrNotFound
	}
	return r2.Record{}, "", errDown
}

func (flaky) Create(_ context.Context, rec r2.Record) error {
	switch rec.UniqueID {
	case "exists":
		return r2.ErrExists
	case "new":
		return nil
	}
	return errDown
}

func (flaky) Merge(context.Context, r2.Record) (r2.Record, error) { return r2.Record{}, errDown }

// Every operation counts, with its time; only failures count as errors:
// an absent object on get and an existing one on create are answers.
func TestMetricsCountOperationsAndErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := r2.NewMetrics(reg)
	rs := m.Wrap("r2", flaky{})
	ctx := context.Background()
	_, _, _ = rs.Get(ctx, "absent")
	_, _, _ = rs.Get(ctx, "down")
	for _, id := range []string{"exists", "new", "down"} {
		_ = rs.Create(ctx, r2.Record{UniqueID: id})
	}
	_, _ = rs.Merge(ctx, r2.Record{UniqueID: "down"})
	for _, c := range []struct {
		family, op string
		want       float64
	}{
		{"ferry_r2_operations_total", "get", 2}, {"ferry_r2_errors_total", "get", 1},
		{"ferry_r2_operations_total", "create", 3}, {"ferry_r2_errors_total", "create", 1},
		{"ferry_r2_operations_total", "merge", 1}, {"ferry_r2_errors_total", "merge", 1},
	} {
		if got := value(t, reg, c.family, c.op); got != c.want {
			t.Errorf("%s{op=%q} = %v, want %v", c.family, c.op, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "ferry_r2_operation_duration_seconds"); n != 3 {
		t.Errorf("%d duration series, want one per op", n)
	}
}

func value(t *testing.T, reg *prometheus.Registry, family, op string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["store"] == "r2" && labels["op"] == op {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
