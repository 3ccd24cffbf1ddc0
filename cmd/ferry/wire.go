package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbpg"
	"github.com/ferry-dev/ferry/db/dbsqlite"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2"
)

// newIndex builds the file index on d. Its records go to the R2 bucket
// when one is configured, else to DATA_DIR/r2 in the same layout, for
// `ferry r2 sync` to copy to a bucket later. ms (nil: none) counts what
// it does.
func newIndex(cfg *config.Config, d db.Driver, logger *slog.Logger, ms *metricSet) (*index.Indexer, error) {
	opts := index.Options{DB: d, Logger: logger.With("component", "index"), PublicURL: cfg.PublicURL, Metrics: ms.indexMetrics(),
		PageURL: pageURLFunc(cfg)}
	if cfg.R2.Enabled() {
		store, err := newBucket(cfg)
		if err != nil {
			return nil, err
		}
		records := ms.records("r2", store)
		opts.Check, opts.Write = records, records
		if cfg.R2.PublicURL != "" {
			opts.R2PublicURL = store.PublicURL
		}
	} else {
		local, err := r2.NewLocal(localRecordsDir(cfg), cfg.R2.Folder)
		if err != nil {
			return nil, err
		}
		records := ms.records("local", local)
		opts.Check, opts.Write = records, records
		logger.Info("R2 not configured: index records are kept in a local folder; `ferry r2 sync` copies them to a bucket once R2_BUCKET is set",
			"dir", local.Dir())
	}
	return index.New(opts)
}

// localRecordsDir is where the index keeps its records without a bucket.
func localRecordsDir(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "r2") }

func newBucket(cfg *config.Config) (*r2.Store, error) {
	return r2.New(r2.Options{
		Endpoint: cfg.R2.Endpoint, AccountID: cfg.R2.AccountID, Bucket: cfg.R2.Bucket,
		AccessKeyID: cfg.R2.AccessKeyID, SecretAccessKey: cfg.R2.SecretAccessKey,
		Folder: cfg.R2.Folder, PublicURL: cfg.R2.PublicURL,
	})
}

// runR2 is `ferry r2 sync`: copy the records kept locally while no bucket
// was configured, then rewrite every file the database has (a new bucket,
// or repair after an outage). Both merge into objects that exist.
func runR2(ctx context.Context, logger *slog.Logger, stdout io.Writer, args []string) error {
	if len(args) != 1 || args[0] != "sync" {
		help, _ := commandHelp("r2")
		return usageError{help}
	}
	cfg, err := loadConfig()
	if err != nil {
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
	bucket, err := newBucket(cfg)
	if err != nil {
		return err
	}
	progress := func(what string) func(int, string) {
		return func(done int, uniqueID string) {
			if done%500 == 0 {
				fmt.Fprintf(stdout, "%d %s (last %s)\n", done, what, uniqueID)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(localRecordsDir(cfg), cfg.R2.Folder)); err == nil {
		local, err := r2.NewLocal(localRecordsDir(cfg), cfg.R2.Folder)
		if err != nil {
			return err
		}
		n, err := r2.CopyLocal(ctx, local, bucket, 8, progress("local records copied"))
		fmt.Fprintf(stdout, "%d local records copied from %s to R2 bucket %s\n", n, local.Dir(), cfg.R2.Bucket)
		if err != nil {
			return err
		}
	}
	ix, err := newIndex(cfg, d, logger, nil)
	if err != nil {
		return err
	}
	n, err := ix.SyncAll(ctx, 8, progress("files synced"))
	fmt.Fprintf(stdout, "%d files synced to R2 bucket %s\n", n, cfg.R2.Bucket)
	return err
}

// openMigrated opens the database (DATABASE_URL, else the embedded one in
// DATA_DIR) and brings both schemas up to date; every command that touches
// the database starts this way.
func openMigrated(ctx context.Context, cfg *config.Config, logger *slog.Logger) (db.Driver, error) {
	var d db.Driver
	if cfg.DatabaseURL != "" {
		pg, err := dbpg.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		d = pg
	} else {
		lite, err := dbsqlite.Open(ctx, cfg.DatabasePath())
		if err != nil {
			return nil, err
		}
		logger.Info("using the embedded database (DATABASE_URL is empty)", "path", cfg.DatabasePath())
		d = lite
	}
	if err := d.Migrate(ctx, logger); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}
