// Package db opens ferry's Postgres pool and keeps its schema current: our
// own tables through goose (package migrations) and River's through
// rivermigrate, both run by `ferry migrate` and at start-up of `serve`.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/ferry-dev/ferry/migrations"
)

// Open connects a pool and checks the connection, so a wrong DATABASE_URL
// fails at start-up rather than on the first webhook.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
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
	return pool, nil
}

// Migrate applies River's migrations and then ours. Concurrent callers (several
// machines starting at once) serialise on a Postgres advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	rm, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: quiet(logger)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	// River's migrations have no lock of their own; take ours around them.
	conn, err := pool.Acquire(ctx)
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

	p, closeP, err := provider(pool)
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

// Current reports whether both River's and our migrations are fully applied;
// /readyz uses it so a machine never takes traffic on an old schema.
func Current(ctx context.Context, pool *pgxpool.Pool) error {
	rm, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: quiet(nil)})
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
	p, closeP, err := provider(pool)
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

func provider(pool *pgxpool.Pool) (*goose.Provider, func(), error) {
	sqlDB := stdlib.OpenDBFromPool(pool)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("goose locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithSessionLocker(locker))
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
