package dbpg_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/db/dbpg"
	"github.com/ferry-dev/ferry/db/dbtest"
)

// On the pool the batch runs as one implicit transaction, so the local
// settings apply to the statements queued after them, and to nothing else.
func TestAsyncCommitSettingsAreLocal(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE t (v text)`); err != nil {
		t.Fatal(err)
	}
	err = dbpg.New(pool).AsyncCommit(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO t SELECT current_setting('synchronous_commit') || ' ' || current_setting('plan_cache_mode')`)
	})
	if err != nil {
		t.Fatal(err)
	}
	var inside, after string
	if err := pool.QueryRow(ctx, `SELECT v, current_setting('synchronous_commit') FROM t`).Scan(&inside, &after); err != nil {
		t.Fatal(err)
	}
	if inside != "off force_custom_plan" || after != "on" {
		t.Fatalf("inside the batch %q, after it synchronous_commit=%q", inside, after)
	}
}
