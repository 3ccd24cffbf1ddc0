package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbpg"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2"
)

// newIndex builds the file index on d, with R2 when it is configured.
func newIndex(cfg *config.Config, d db.Driver, logger *slog.Logger) (*index.Indexer, bool, error) {
	opts := index.Options{DB: d, Logger: logger.With("component", "index"), PublicURL: cfg.PublicURL}
	if cfg.R2.Enabled() {
		store, err := r2.New(r2.Options{
			Endpoint: cfg.R2.Endpoint, AccountID: cfg.R2.AccountID, Bucket: cfg.R2.Bucket,
			AccessKeyID: cfg.R2.AccessKeyID, SecretAccessKey: cfg.R2.SecretAccessKey,
			Folder: cfg.R2.Folder, PublicURL: cfg.R2.PublicURL,
		})
		if err != nil {
			return nil, false, err
		}
		opts.Check, opts.Write = store, store
		if cfg.R2.PublicURL != "" {
			opts.R2PublicURL = store.PublicURL
		}
	} else {
		logger.Warn("R2 not configured: the index uses the database alone (set R2_BUCKET and R2_ENDPOINT or R2_ACCOUNT_ID)")
	}
	ix, err := index.New(opts)
	if err != nil {
		return nil, false, err
	}
	return ix, cfg.R2.Enabled(), nil
}

// runR2 is `ferry r2 sync`: rewrite every indexed file to R2 (a new bucket,
// or repair after an outage).
func runR2(ctx context.Context, logger *slog.Logger, stdout io.Writer, args []string) error {
	if len(args) != 1 || args[0] != "sync" {
		return usageError{"usage: ferry r2 sync"}
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if err := cfg.Check(config.NeedDatabase); err != nil {
		return err
	}
	if !cfg.R2.Enabled() {
		return fmt.Errorf("missing required settings: R2_BUCKET and R2_ENDPOINT (or R2_ACCOUNT_ID)")
	}
	d, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer d.Close()
	ix, _, err := newIndex(cfg, d, logger)
	if err != nil {
		return err
	}
	n, err := ix.SyncAll(ctx, 8, func(done int, uniqueID string) {
		if done%500 == 0 {
			fmt.Fprintf(stdout, "%d files synced (last %s)\n", done, uniqueID)
		}
	})
	fmt.Fprintf(stdout, "%d files synced to R2 bucket %s\n", n, cfg.R2.Bucket)
	return err
}

// openMigrated connects to DATABASE_URL and brings both schemas up to date;
// every command that touches the database starts this way.
func openMigrated(ctx context.Context, cfg *config.Config, logger *slog.Logger) (db.Driver, error) {
	d, err := dbpg.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, logger); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}
