// Package dbsqlite is the SQLite driver of package db, pure Go (modernc.org/sqlite),
// for a deployment that runs as one process with its database in a file.
//
// One process, one connection. A lock file keeps a second process off the
// database, and the pool holds a single connection (River's SQLite
// guidance: several connections fail with SQLITE_BUSY), on which every
// transaction begins IMMEDIATE, taking SQLite's one write lock from its
// start. Transactions therefore run one after another, which is what the
// Postgres driver's advisory locks and FOR UPDATE SKIP LOCKED arrange among
// concurrent ones: here they are no-ops and plain selects. The price: code
// holding a Tx must not call the Driver itself (or River's methods without
// Tx) until the Tx ends, or it waits for the connection its own Tx holds.
//
// Each method does what the Postgres driver's statement does (see package
// dbpg and db.Executor's comments). Where Postgres unnests arrays, a
// statement here reads one JSON array parameter with json_each, as
// riversqlite does; where Postgres picks rows with DISTINCT ON ("the lowest
// slot", "the latest post's"), the method picks them in Go first, which is
// exact where a translation to SQLite's SQL would be subtle. A method of
// several statements runs in a transaction of its own outside one, and in
// a savepoint inside one, so it is atomic as a single Postgres statement
// is; and a failed statement aborts its transaction until it rolls back (to
// a savepoint), as on Postgres, so code that works here works there. SQLite is in-process: a statement costs microseconds, not a round
// trip, so none of dbpg's batching is needed.
package dbsqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/migrations"
)

// Driver is db.Driver on a SQLite file.
type Driver struct {
	executor
	sqlDB     *sql.DB
	unlock    func()
	closeOnce sync.Once
}

var _ db.Driver = (*Driver)(nil)

// pragmas are the connection's settings: WAL (readers do not block the
// writer), a busy timeout for the rare outside reader, NORMAL sync (a
// commit waits for the WAL write, not its fsync: a crash loses at most the
// last commits, never consistency), foreign keys enforced, and every
// transaction started IMMEDIATE.
const pragmas = "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"

// Open opens (creating it and its directory when missing) the database file
// at path, for this process alone: while it is open, another Open of the
// same path fails with "another ferry is using PATH".
func Open(ctx context.Context, path string) (*Driver, error) {
	if path == "" {
		return nil, errors.New("open SQLite database: no path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("create the directory of %s: %w", path, err)
	}
	unlock, err := lockFile(abs + ".lock")
	if errors.Is(err, errLocked) {
		return nil, errors.New("another ferry is using " + path)
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	sqlDB, err := sql.Open("sqlite", "file:"+uriPath(abs)+"?"+pragmas)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	sqlDB.SetMaxOpenConns(1)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		unlock()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, wrapErr(err))
	}
	d := &Driver{sqlDB: sqlDB, unlock: unlock}
	d.executor = executor{q: sqlDB, d: d}
	return d, nil
}

// OpenReadOnly opens the database at path to look at while the process
// that owns it runs (tests, inspection tools): it takes no lock, writes
// fail, and in WAL mode it reads the last committed state without blocking
// the owner. Migrate and writes are the owner's.
func OpenReadOnly(ctx context.Context, path string) (*Driver, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	sqlDB, err := sql.Open("sqlite", "file:"+uriPath(abs)+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	sqlDB.SetMaxOpenConns(1)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, wrapErr(err))
	}
	d := &Driver{sqlDB: sqlDB, unlock: func() {}}
	d.executor = executor{q: sqlDB, d: d}
	return d, nil
}

// uriPath escapes what a file: URI's path may not hold as is (SQLite
// decodes %XX there; ? and # would end the path).
func uriPath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(filepath.ToSlash(p))
}

// DB is the driver's database/sql handle, for tests and tools that need
// SQLite itself.
func (d *Driver) DB() *sql.DB { return d.sqlDB }

// Name is "sqlite".
func (d *Driver) Name() string { return "sqlite" }

// Close closes the database and releases the file to other processes; a
// second Close does nothing.
func (d *Driver) Close() {
	d.closeOnce.Do(func() {
		_ = d.sqlDB.Close()
		d.unlock()
	})
}

// Ping checks the database answers.
func (d *Driver) Ping(ctx context.Context) error { return wrapErr(d.sqlDB.PingContext(ctx)) }

// Begin starts a transaction (BEGIN IMMEDIATE: it holds the write lock from
// here). It waits while another transaction has the connection.
func (d *Driver) Begin(ctx context.Context) (db.Tx, error) {
	return d.begin(ctx)
}

func (d *Driver) begin(ctx context.Context) (*Tx, error) {
	// The connection is taken with ctx (a cancelled caller stops waiting),
	// the transaction begun without it: database/sql would roll a
	// transaction back when its BeginTx context ends, where a pgx one
	// lives until Commit or Rollback whatever the context.
	conn, err := d.sqlDB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", wrapErr(err))
	}
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("begin: %w", wrapErr(err))
	}
	st := &txState{conn: conn, tx: tx}
	return &Tx{executor: executor{q: tx, tx: st, now: time.Now()}, st: st}, nil
}

// NewRiver builds the River client on this database.
func (d *Driver) NewRiver(cfg *river.Config) (db.River, error) {
	return db.NewRiver(riversqlite.New(d.sqlDB), cfg)
}

// txState is a transaction, shared by the Tx and its savepoints.
type txState struct {
	conn *sql.Conn
	tx   *sql.Tx
	// savepoints names the next savepoint.
	savepoints int
	done       bool
	// aborted is the error that aborted the transaction (see
	// executor.failed); nil while it is usable.
	aborted error
}

// end returns the connection to the pool.
func (s *txState) end() {
	s.done = true
	_ = s.conn.Close()
}

// Tx is db.Tx on a database/sql transaction, or a savepoint in one (sp set).
type Tx struct {
	executor
	st *txState
	sp string
}

// Commit commits (a savepoint's Tx: releases it).
func (t *Tx) Commit(ctx context.Context) error {
	if t.sp != "" {
		return t.release(ctx)
	}
	if t.st.done {
		return sql.ErrTxDone
	}
	if cause := t.st.aborted; cause != nil {
		// Postgres answers COMMIT in an aborted transaction by rolling it
		// back (pgx: ErrTxCommitRollback).
		_ = t.st.tx.Rollback()
		t.st.end()
		return fmt.Errorf("commit: rolled back instead: the transaction was aborted by an earlier error (%v)", cause)
	}
	// A commit SQLite refuses (a deferred foreign key) would leave its
	// transaction open; modernc's Commit rolls it back, so the connection
	// goes back clean, the transaction ended as on Postgres.
	err := t.st.tx.Commit()
	t.st.end()
	if err != nil {
		return fmt.Errorf("commit: %w", wrapErr(err))
	}
	return nil
}

// Rollback rolls back (a savepoint's Tx: to the savepoint); after Commit it
// does nothing.
func (t *Tx) Rollback(ctx context.Context) error {
	if t.sp != "" {
		return t.rollbackTo(ctx)
	}
	if t.st.done {
		return nil
	}
	err := t.st.tx.Rollback()
	t.st.end()
	if err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("rollback: %w", wrapErr(err))
	}
	return nil
}

// RiverTx is the *sql.Tx, as riversqlite takes it. A savepoint's Tx carries
// the same one: SQLite's savepoints belong to the connection, so what River
// writes through it is inside the savepoint.
func (t *Tx) RiverTx() any { return t.st.tx }

// Savepoint runs f in a savepoint.
func (t *Tx) Savepoint(ctx context.Context, f func(db.Tx) error) error {
	sp, err := t.savepoint(ctx)
	if err != nil {
		return err
	}
	if err := f(sp); err != nil {
		_ = sp.rollbackTo(ctx)
		return err
	}
	return sp.release(ctx)
}

// savepoint opens a savepoint in t's transaction.
func (t *Tx) savepoint(ctx context.Context) (*Tx, error) {
	if err := t.usable(); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	t.st.savepoints++
	name := fmt.Sprintf("ferry_sp_%d", t.st.savepoints)
	if _, err := t.st.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return nil, fmt.Errorf("savepoint: %w", wrapErr(err))
	}
	return &Tx{executor: t.executor, st: t.st, sp: name}, nil
}

// release ends the savepoint, keeping its writes.
func (t *Tx) release(ctx context.Context) error {
	if err := t.usable(); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	if _, err := t.st.tx.ExecContext(context.WithoutCancel(ctx), "RELEASE "+t.sp); err != nil {
		return fmt.Errorf("release savepoint: %w", wrapErr(err))
	}
	return nil
}

// rollbackTo undoes the savepoint's writes and ends it.
func (t *Tx) rollbackTo(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	if _, err := t.st.tx.ExecContext(ctx, "ROLLBACK TO "+t.sp); err != nil {
		// The savepoint is gone with a transaction SQLite rolled back:
		// it stays aborted.
		return fmt.Errorf("roll back to savepoint: %w", wrapErr(err))
	}
	t.st.aborted = nil
	if _, err := t.st.tx.ExecContext(ctx, "RELEASE "+t.sp); err != nil {
		return fmt.Errorf("release savepoint: %w", wrapErr(err))
	}
	return nil
}

// Migrate applies River's migrations and then ferry's. No lock is taken
// around them: the lock file already makes this process the database's
// only user.
func (d *Driver) Migrate(ctx context.Context, logger *slog.Logger) error {
	logger = quiet(logger)
	rm, err := rivermigrate.New(riversqlite.New(d.sqlDB), &rivermigrate.Config{Logger: quiet(nil)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	if _, err := rm.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", wrapErr(err))
	}
	p, err := d.goose()
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("ferry migrations: %w", wrapErr(err))
	}
	for _, r := range results {
		logger.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
	}
	return nil
}

// Current reports whether both River's and ferry's migrations are applied.
func (d *Driver) Current(ctx context.Context) error {
	rm, err := rivermigrate.New(riversqlite.New(d.sqlDB), &rivermigrate.Config{Logger: quiet(nil)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	vr, err := rm.Validate(ctx, nil)
	if err != nil {
		return fmt.Errorf("validate river migrations: %w", wrapErr(err))
	}
	if !vr.OK {
		return fmt.Errorf("river migrations pending: %v", vr.Messages)
	}
	p, err := d.goose()
	if err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check ferry migrations: %w", wrapErr(err))
	}
	if pending {
		return errors.New("ferry migrations pending: run `ferry migrate`")
	}
	return nil
}

// goose is a goose provider with ferry's SQLite schema. It is never closed:
// its Close would close the driver's database.
func (d *Driver) goose() (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectSQLite3, d.sqlDB, migrations.SQLite())
	if err != nil {
		return nil, fmt.Errorf("goose provider: %w", err)
	}
	return p, nil
}

func quiet(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
