package dbtest_test

import (
	"context"
	"testing"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
)

func TestNewIsMigratedAndIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := dbtest.New(t), dbtest.New(t)
	if err := a.Current(ctx); err != nil {
		t.Fatalf("template not migrated: %v", err)
	}
	if _, err := a.UpdateAcceptMany(ctx, &db.UpdateAcceptManyParams{Updates: []db.UpdateKey{{BotID: 1, UpdateID: 1}}}); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]db.Driver{"a": a, "b": b} {
		s, err := d.StatsCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int64{"a": 1, "b": 0}[name]; s.Updates != want {
			t.Fatalf("database %s counts %d updates, want %d: databases share rows", name, s.Updates, want)
		}
	}
}
