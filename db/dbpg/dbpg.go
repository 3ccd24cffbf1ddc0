// Package dbpg is the Postgres driver of package db, on pgx. Its statements
// are set-based (arrays sent whole and unnested) and group-committed where
// the intake and index benchmarks showed it matters; each one's comment says
// why it is shaped as it is.
package dbpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/migrations"
)

// Driver is db.Driver on a pgx pool.
type Driver struct {
	executor
	pool *pgxpool.Pool
}

var _ db.Driver = (*Driver)(nil)

// Open connects a pool to url and checks the connection, so a wrong
// DATABASE_URL fails at start-up rather than on the first webhook.
func Open(ctx context.Context, url string) (*Driver, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx errors can echo the URL, password included: keep it out.
		return nil, errors.New("parse DATABASE_URL: invalid connection string")
	}
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s@%s/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return New(pool), nil
}

// New is the driver on an open pool.
func New(pool *pgxpool.Pool) *Driver {
	return &Driver{executor: executor{q: pool, pool: pool}, pool: pool}
}

// Pool is the driver's pool, for tests and tools that need Postgres itself.
func (d *Driver) Pool() *pgxpool.Pool { return d.pool }

// Name is "postgres".
func (d *Driver) Name() string { return "postgres" }

// Close closes the pool.
func (d *Driver) Close() { d.pool.Close() }

// Ping checks the database answers.
func (d *Driver) Ping(ctx context.Context) error { return d.pool.Ping(ctx) }

// Begin starts a transaction.
func (d *Driver) Begin(ctx context.Context) (db.Tx, error) {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &Tx{executor: executor{q: tx}, tx: tx}, nil
}

// NewRiver builds the River client on this pool.
func (d *Driver) NewRiver(cfg *river.Config) (db.River, error) {
	return db.NewRiver(riverpgxv5.New(d.pool), cfg)
}

// Tx is db.Tx on a pgx transaction.
type Tx struct {
	executor
	tx pgx.Tx
}

// Commit commits.
func (t *Tx) Commit(ctx context.Context) error { return t.tx.Commit(ctx) }

// Rollback rolls back; after Commit it does nothing.
func (t *Tx) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// RiverTx is the pgx.Tx, as riverpgxv5 takes it.
func (t *Tx) RiverTx() any { return t.tx }

// Savepoint runs f in a savepoint.
func (t *Tx) Savepoint(ctx context.Context, f func(db.Tx) error) error {
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := f(&Tx{executor: executor{q: sp}, tx: sp}); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

// querier is what a pool and a transaction both do.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// executor runs db.Executor's statements on q. pool is set outside a
// transaction: bookkeeping statements then commit without waiting for the
// WAL flush (see asyncCommit).
type executor struct {
	q    querier
	pool *pgxpool.Pool
}

// Migrate applies River's migrations and then ferry's. Concurrent callers
// (several machines starting at once) serialise on an advisory lock.
func (d *Driver) Migrate(ctx context.Context, logger *slog.Logger) error {
	logger = quiet(logger)
	rm, err := rivermigrate.New(riverpgxv5.New(d.pool), &rivermigrate.Config{Logger: quiet(nil)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	// River's migrations have no lock of their own; take ours around them.
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection for migrations: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", riverMigrateLockID); err != nil {
		return fmt.Errorf("lock river migrations: %w", err)
	}
	_, err = rm.Migrate(ctx, rivermigrate.DirectionUp, nil)
	_, unlockErr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", riverMigrateLockID)
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if unlockErr != nil {
		return fmt.Errorf("unlock river migrations: %w", unlockErr)
	}

	p, closeP, err := d.goose()
	if err != nil {
		return err
	}
	defer closeP()
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("ferry migrations: %w", err)
	}
	for _, r := range results {
		logger.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
	}
	return nil
}

// Current reports whether both River's and ferry's migrations are applied.
func (d *Driver) Current(ctx context.Context) error {
	rm, err := rivermigrate.New(riverpgxv5.New(d.pool), &rivermigrate.Config{Logger: quiet(nil)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	vr, err := rm.Validate(ctx, nil)
	if err != nil {
		return fmt.Errorf("validate river migrations: %w", err)
	}
	if !vr.OK {
		return fmt.Errorf("river migrations pending: %v", vr.Messages)
	}
	p, closeP, err := d.goose()
	if err != nil {
		return err
	}
	defer closeP()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check ferry migrations: %w", err)
	}
	if pending {
		return errors.New("ferry migrations pending: run `ferry migrate`")
	}
	return nil
}

// riverMigrateLockID is an arbitrary advisory lock key ("ferryriv").
const riverMigrateLockID = 0x6665727279726976

// goose is a goose provider on the pool with ferry's Postgres schema.
func (d *Driver) goose() (*goose.Provider, func(), error) {
	sqlDB := stdlib.OpenDBFromPool(d.pool)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("goose locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.Postgres(), goose.WithSessionLocker(locker))
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("goose provider: %w", err)
	}
	return p, func() { _ = p.Close() }, nil
}

func quiet(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
