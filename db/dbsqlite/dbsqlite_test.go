package dbsqlite_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbsqlite"
	"github.com/ferry-dev/ferry/db/drivertest"
)

// open opens and migrates a fresh database in t's temporary directory,
// closed when t ends.
func open(t *testing.T) *dbsqlite.Driver {
	t.Helper()
	d, err := dbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "data", "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if err := d.Migrate(context.Background(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDriver(t *testing.T) {
	// One writer at a time: the subtests that need two open transactions
	// are skipped.
	drivertest.Run(t, func(t *testing.T) db.Driver { return open(t) }, drivertest.Capabilities{})
}

// A second Open of the same file is refused while the first holds it, and
// allowed once it is closed.
func TestOpenRefusesSecond(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ferry.db")
	first, err := dbsqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := dbsqlite.Open(ctx, path)
	if err == nil {
		second.Close()
		t.Fatal("a second Open of the same file succeeded")
	}
	if want := "another ferry is using " + path; err.Error() != want {
		t.Fatalf("second Open: %q, want %q", err, want)
	}
	first.Close()
	first.Close() // a second Close does nothing
	again, err := dbsqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}

// Current fails before Migrate and passes after it, and River works on the
// migrated database: a job inserted in a transaction is listed once
// committed.
func TestMigrateCurrentRiver(t *testing.T) {
	ctx := t.Context()
	d, err := dbsqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Current(ctx); err == nil {
		t.Fatal("Current before Migrate succeeded")
	}
	if err := d.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Current(ctx); err != nil {
		t.Fatalf("Current after Migrate: %v", err)
	}

	rc, err := d.NewRiver(&river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := d.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rc.InsertTx(ctx, tx, jobArgs{N: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := rc.JobList(ctx, river.NewJobListParams().Kinds(jobArgs{}.Kind()))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 1 || list.Jobs[0].ID != res.Job.ID || list.Jobs[0].State != rivertype.JobStateAvailable {
		t.Fatalf("jobs %+v, want the one inserted (%d), available", list.Jobs, res.Job.ID)
	}
}

type jobArgs struct {
	N int `json:"n"`
}

func (jobArgs) Kind() string { return "dbsqlite_test" }
