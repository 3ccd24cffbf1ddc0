package migrations_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/go-telegram/bot/models"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/migrations"
)

// Every migration's Down undoes its Up, and the ones that move data (R2
// state per row or per file, sightings as raw updates, columns or batches)
// move it both ways without losing a pending write or a sighting.
func TestMigrationsRoundTrip(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t) // at the newest version
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, pool, `
		INSERT INTO files (file_unique_id, file_type, first_chat_id, first_message_id) VALUES ('AgADpend', 'document', -1, 1), ('AgADdone', 'video', -1, 2);
		INSERT INTO file_bot_ids (file_unique_id, slot, bot_id, file_id, chat_id, message_id) VALUES
			('AgADpend', 1, 11, 'fid-p1', -1, 1), ('AgADpend', 2, 12, 'fid-p2', -1, 1), ('AgADdone', 1, 11, 'fid-d1', -1, 2);
		INSERT INTO r2_pending (file_unique_id) VALUES ('AgADpend');
		INSERT INTO post_sightings (chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
		                            file_size, mime_type, dc_id, caption, duration, width, height)
		VALUES (-100123, 77, 11, 'AgADsight', 'BAACAgIAAxkB', 'video', 'clip.mp4', 5000000, 'video/mp4', 2, 'a clip', 61, 1280, 720);
		INSERT INTO sighting_batches (n, chat_ids, message_ids, bot_ids, file_unique_ids, file_ids, file_types, file_names,
		                              file_sizes, mime_types, dc_ids, captions, durations, widths, heights)
		VALUES (2, '{-100123,-100123}', '{78,78}', '{11,12}', '{AgADbatch,AgADbatch}', '{BQACAgIAAxkB1,BQACAgIAAxkB2}',
		        '{document,document}', '{b.zip,b.zip}', '{9000,9000}', '{application/zip,application/zip}', '{4,4}', '{"",""}',
		        '{0,0}', '{0,0}', '{0,0}')`)

	if _, err := p.DownTo(ctx, 6); err != nil {
		t.Fatalf("down to 6: %v", err)
	}
	// Updates accepted before update_counts existed are counted by it.
	exec(t, pool, `INSERT INTO received_updates (bot_id, update_id, received_at) VALUES (11, 1, now()), (11, 2, now()), (12, 1, now() - interval '3 hours')`)
	if n := count(t, pool, `SELECT count(*) FROM file_bot_ids WHERE r2_synced_at IS NULL`); n != 2 {
		t.Fatalf("%d rows pending after down; want the 2 of AgADpend", n)
	}
	// Undrained batches became one row per sighting (and then raw updates).
	if n := count(t, pool, `SELECT count(*) FROM post_sightings WHERE message_id = 78 AND bot_id IN (11, 12)
		AND convert_from(update_json, 'UTF8')::jsonb #>> '{channel_post,document,file_unique_id}' = 'AgADbatch'`); n != 2 {
		t.Fatalf("%d of the batch's 2 sightings kept on the way down", n)
	}
	var raw []byte
	if err := pool.QueryRow(ctx, `SELECT update_json FROM post_sightings WHERE message_id = 77`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var u models.Update
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatalf("rebuilt update %s: %v", raw, err)
	}
	m := u.ChannelPost
	if m == nil || m.Chat.ID != -100123 || m.Chat.Type != models.ChatTypeChannel || m.ID != 77 || m.Caption != "a clip" ||
		m.Video == nil || m.Video.FileID != "BAACAgIAAxkB" || m.Video.FileUniqueID != "AgADsight" || m.Video.FileName != "clip.mp4" ||
		m.Video.FileSize != 5000000 || m.Video.Duration != 61 || m.Video.Width != 1280 || m.Video.Height != 720 {
		t.Fatalf("rebuilt update lost fields: %s", raw)
	}

	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM r2_pending WHERE file_unique_id = 'AgADpend'`); n != 1 || count(t, pool, `SELECT count(*) FROM r2_pending`) != 1 {
		t.Fatal("r2_pending not rebuilt from the pending rows")
	}
	if n := count(t, pool, `SELECT count(*) FROM post_sightings WHERE update_json IS NOT NULL`); n != 3 {
		t.Fatal("sightings lost on the way back up")
	}
	if n := count(t, pool, `SELECT sum(n) FILTER (WHERE hour > now() - interval '2 hours') FROM update_counts`); n != 2 ||
		count(t, pool, `SELECT sum(n) FROM update_counts`) != 3 {
		t.Fatal("update_counts does not count the updates received before it")
	}

	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up from 0: %v", err)
	}
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
