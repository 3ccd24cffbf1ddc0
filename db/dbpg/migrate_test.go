package dbpg_test

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbpg"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/migrations"
)

// sqlSchema describes ferry's own tables, columns, indexes, constraints and
// sequences (River's and goose's left out), one line each.
const sqlSchema = `
SELECT format('%s %s %s', c.relkind, c.relname, coalesce(pg_get_indexdef(c.oid), ''))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'S') AND c.relname !~ '^(river|goose)'
UNION ALL
SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type, is_nullable, column_default)
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name !~ '^(river|goose)'
UNION ALL
SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
FROM pg_constraint
WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text !~ '^(river|goose)'
ORDER BY 1`

func schema(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), sqlSchema)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestBaselineDownAndUp: the baseline's Down removes everything its Up
// made, Current then reports the migration pending, and Up again makes the
// same schema, which works.
func TestBaselineDownAndUp(t *testing.T) {
	d := dbtest.NewPostgres(t)
	ctx := t.Context()
	pool := d.(*dbpg.Driver).Pool()
	sqlDB := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { _ = sqlDB.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.Postgres())
	if err != nil {
		t.Fatal(err)
	}
	migrated := schema(t, pool)
	if len(migrated) == 0 {
		t.Fatal("no schema after the baseline")
	}

	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	if left := schema(t, pool); len(left) > 0 {
		t.Fatalf("left after down:\n%v", left)
	}
	if err := d.Current(ctx); err == nil {
		t.Fatal("Current after down reports nothing pending")
	}

	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if again := schema(t, pool); !slices.Equal(again, migrated) {
		t.Fatalf("schema after down and up:\n%v\nwant\n%v", again, migrated)
	}
	if err := d.Current(ctx); err != nil {
		t.Fatalf("Current after up again: %v", err)
	}
	// It works: a write reads back.
	want := db.Session{BotID: 1, Nonce: []byte("n"), Data: []byte("d")}
	if err := d.SessionSave(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := d.SessionGet(ctx, 1); err != nil || string(got.Data) != "d" {
		t.Fatalf("SessionGet after up again: %+v, %v", got, err)
	}
}
