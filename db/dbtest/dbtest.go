// Package dbtest gives each test its own real, migrated database behind the
// db.Driver interface, so packages can run in parallel without seeing each
// other's rows, and helpers to look at what a test left there: its jobs
// (through River's API) and what a write would do, in a transaction rolled
// back at once.
//
// FERRY_TEST_DB picks the backend the integration tests run on: "postgres"
// (the default) or "sqlite"; `make test` runs them on both. Tests of one
// backend itself (its driver, its migrations) name it: NewPostgres,
// NewSQLite.
//
// On Postgres each database is cloned from a template that is migrated once
// per schema version. The server is TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). When it
// cannot be reached the test fails: it never skips, because a green run
// without a database would prove nothing. On SQLite each database is a file
// in the test's temporary directory.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbpg"
	"github.com/ferry-dev/ferry/db/dbsqlite"
	"github.com/ferry-dev/ferry/migrations"
)

// AdminURL is the server tests create their databases on.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Backend is the backend of this test run: "postgres" or "sqlite".
func Backend() string {
	if b := os.Getenv("FERRY_TEST_DB"); b != "" {
		return b
	}
	return "postgres"
}

// New creates a fresh, fully migrated database of the run's backend for tb
// and returns its driver. The database is dropped when the test ends.
func New(tb testing.TB) db.Driver {
	tb.Helper()
	switch Backend() {
	case "postgres":
		return NewPostgres(tb)
	case "sqlite":
		return NewSQLite(tb)
	}
	tb.Fatalf("dbtest: FERRY_TEST_DB=%q: want postgres or sqlite", Backend())
	return nil
}

// NewPostgres is New on Postgres, whatever the run's backend.
func NewPostgres(tb testing.TB) db.Driver {
	tb.Helper()
	return Open(tb, NewURL(tb))
}

// NewEnv makes a fresh database of the run's backend for a ferry process
// and returns the settings that point the process at it: DATABASE_URL on
// Postgres, DATA_DIR (the embedded database's directory) on SQLite.
func NewEnv(tb testing.TB) map[string]string {
	tb.Helper()
	if Backend() == "sqlite" {
		dir := tb.TempDir()
		d := openSQLite(tb, filepath.Join(dir, "ferry.db"))
		d.Close() // migrated; the process takes the file
		return map[string]string{"DATA_DIR": dir, "DATABASE_URL": ""}
	}
	return map[string]string{"DATABASE_URL": NewURL(tb)}
}

// OpenEnv opens the database a process was pointed at with env (from
// NewEnv) for the test to look at while the process runs; on SQLite
// read-only, beside the process that owns the file.
func OpenEnv(tb testing.TB, env map[string]string) db.Driver {
	tb.Helper()
	if url := env["DATABASE_URL"]; url != "" {
		return Open(tb, url)
	}
	d, err := dbsqlite.OpenReadOnly(context.Background(), filepath.Join(env["DATA_DIR"], "ferry.db"))
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	tb.Cleanup(d.Close)
	return d
}

// Open returns a Postgres driver on url (from NewURL), closed when the test
// ends.
func Open(tb testing.TB, url string) db.Driver {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatalf("dbtest: open %s: %v", url, err)
	}
	tb.Cleanup(pool.Close)
	return dbpg.New(pool)
}

// RolledBack runs f in a transaction on d and rolls it back as f returns:
// to look at what a write would do, leaving nothing behind. (At once, not
// at the test's end: on SQLite an open transaction holds the one
// connection.)
func RolledBack(tb testing.TB, d db.Driver, f func(tx db.Tx)) {
	tb.Helper()
	ctx := context.Background()
	tx, err := d.Begin(ctx)
	if err != nil {
		tb.Fatalf("dbtest: begin: %v", err)
	}
	defer tx.Rollback(ctx)
	f(tx)
}

// Jobs lists the jobs of kind (every kind when empty) in the given states
// (every state when none), oldest first, through an insert-only River
// client on d.
func Jobs(tb testing.TB, d db.Driver, kind string, states ...rivertype.JobState) []*rivertype.JobRow {
	tb.Helper()
	rc, err := d.NewRiver(&river.Config{})
	if err != nil {
		tb.Fatalf("dbtest: river client: %v", err)
	}
	params := river.NewJobListParams().OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(10000)
	if kind != "" {
		params = params.Kinds(kind)
	}
	if len(states) == 0 {
		states = allStates
	}
	params = params.States(states...)
	res, err := rc.JobList(context.Background(), params)
	if err != nil {
		tb.Fatalf("dbtest: list jobs: %v", err)
	}
	return res.Jobs
}

var allStates = []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStateCancelled, rivertype.JobStateCompleted,
	rivertype.JobStateDiscarded, rivertype.JobStatePending, rivertype.JobStateRetryable, rivertype.JobStateRunning,
	rivertype.JobStateScheduled}

// NewURL is NewPostgres for code that opens its own pool (a child
// process): it returns the URL of a fresh migrated Postgres database.
func NewURL(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("dbtest: Postgres is required at %s (set TEST_DATABASE_URL): %v", AdminURL(), err)
	}
	defer admin.Close(context.Background())

	// One lock per server serialises template builds and clones across test
	// processes: Postgres refuses to clone a template someone is connected to.
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7262846)"); err != nil {
		tb.Fatalf("dbtest: lock: %v", err)
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock(7262846)")

	tpl := "ferry_tpl_" + schemaHash()
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", tpl).Scan(&exists); err != nil {
		tb.Fatalf("dbtest: look up template: %v", err)
	}
	if !exists {
		if err := buildTemplate(ctx, admin, tpl); err != nil {
			tb.Fatalf("dbtest: build template: %v", err)
		}
	}

	name := "ferry_t_" + randHex(6)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tpl)); err != nil {
		tb.Fatalf("dbtest: create database: %v", err)
	}
	tb.Cleanup(func() { Drop(name) })
	return withDatabase(AdminURL(), name)
}

// Drop removes a test database, closing any connection still open on it.
func Drop(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return
	}
	defer admin.Close(context.Background())
	_, _ = admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
}

func buildTemplate(ctx context.Context, admin *pgx.Conn, tpl string) error {
	tmp := tpl + "_build"
	_, _ = admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", tmp))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+tmp); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, withDatabase(AdminURL(), tmp))
	if err != nil {
		return err
	}
	err = dbpg.New(pool).Migrate(ctx, slog.New(slog.DiscardHandler))
	pool.Close()
	if err != nil {
		return err
	}
	// Build under a temporary name and rename, so a crash mid-build never
	// leaves a half-migrated template behind.
	_, err = admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", tmp, tpl))
	return err
}

// schemaHash names the template after the migrations it holds, so a changed
// migration file gets a new template instead of a stale one.
func schemaHash() string {
	h := sha256.New()
	schema := migrations.Postgres()
	_ = fs.WalkDir(schema, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(schema, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%s\x00", path, b)
		return nil
	})
	rm, err := rivermigrate.New(riverpgxv5.New(nil), nil)
	if err == nil {
		all := rm.AllVersions()
		fmt.Fprintf(h, "river:%d", all[len(all)-1].Version)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func withDatabase(url, name string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		panic(err)
	}
	u := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	if cfg.Password != "" {
		u = fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
	}
	return u
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewSQLite is New on SQLite, whatever the run's backend: a migrated
// database file in tb's temporary directory.
func NewSQLite(tb testing.TB) db.Driver {
	tb.Helper()
	d := openSQLite(tb, filepath.Join(tb.TempDir(), "ferry.db"))
	tb.Cleanup(d.Close)
	return d
}

func openSQLite(tb testing.TB, path string) *dbsqlite.Driver {
	tb.Helper()
	ctx := context.Background()
	d, err := dbsqlite.Open(ctx, path)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	if err := d.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		d.Close()
		tb.Fatalf("dbtest: migrate %s: %v", path, err)
	}
	return d
}

// SkipUnlessConcurrentWriters skips a test that stages two transactions
// writing at once, on a backend that runs them one after another (SQLite):
// there the race it stages cannot happen, and holding one transaction while
// starting another would wait forever.
func SkipUnlessConcurrentWriters(tb testing.TB) {
	tb.Helper()
	if Backend() == "sqlite" {
		tb.Skip("SQLite runs one transaction at a time: the concurrent case this test stages cannot happen there")
	}
}

// SkipOnSQLite skips a test of what only Postgres offers (several ferry
// processes on one database), saying why.
func SkipOnSQLite(tb testing.TB, why string) {
	tb.Helper()
	if Backend() == "sqlite" {
		tb.Skip("SQLite: " + why)
	}
}
