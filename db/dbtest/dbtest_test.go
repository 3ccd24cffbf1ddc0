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
	if err := db.Current(ctx, a); err != nil {
		t.Fatalf("template not migrated: %v", err)
	}
	if _, err := a.Exec(ctx, "INSERT INTO received_updates (bot_id, update_id) VALUES (1, 1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM received_updates").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("databases share rows: %d", n)
	}
}
