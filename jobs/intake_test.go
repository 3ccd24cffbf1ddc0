package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/jobs"
)

func testDeps(t *testing.T, pool *pgxpool.Pool, apiURL string, env map[string]string) *jobs.Deps {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	if env["BOT_TOKENS"] == "" {
		env["BOT_TOKENS"] = fmt.Sprintf("%d:AAH%s", 111, strings.Repeat("q", 32))
	}
	cfg, err := config.FromMap(env)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	bots, err := botapi.New(cfg.Bots, apiURL, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	return &jobs.Deps{Pool: pool, Config: cfg, Bots: bots, Logger: logger}
}

func startIntake(t *testing.T, pool *pgxpool.Pool) *jobs.Intake {
	t.Helper()
	d := testDeps(t, pool, "http://127.0.0.1:1", nil)
	client, err := jobs.NewClient(d, jobs.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := jobs.NewIntake(pool, client, d.Logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return in
}

func raw(id int64) []byte { return []byte(fmt.Sprintf(`{"update_id":%d}`, id)) }

func count(t *testing.T, pool *pgxpool.Pool, q string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIntakeRedeliveryMakesOneJob(t *testing.T) {
	pool := dbtest.New(t)
	in := startIntake(t, pool)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	// Five concurrent deliveries (one batch) and five later ones (new batches).
	for round := 0; round < 2; round++ {
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); errs <- in.Submit(ctx, jobs.Update{BotID: 111, UpdateID: 9, Raw: raw(9)}) }()
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'update'`); n != 1 {
		t.Fatalf("%d jobs for one update", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM received_updates`); n != 1 {
		t.Fatalf("%d received rows", n)
	}
	// The same update_id from another bot is another update.
	if err := in.Submit(ctx, jobs.Update{BotID: 222, UpdateID: 9, Raw: raw(9)}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM river_job WHERE args->>'bot_id' = '222'`); n != 1 {
		t.Fatalf("%d jobs for bot 222", n)
	}
}

func TestIntakeCommitsEveryUpdateOfABurst(t *testing.T) {
	pool := dbtest.New(t)
	in := startIntake(t, pool)
	const n = 2000
	var wg sync.WaitGroup
	var failed sync.Map
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Submit(context.Background(), jobs.Update{BotID: 111, UpdateID: int64(i), Raw: raw(int64(i))}); err != nil {
				failed.Store(i, err)
			}
		}()
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Fatalf("update %v: %v", k, v); return false })
	if got := count(t, pool, `SELECT count(DISTINCT (args->>'update_id')::bigint) FROM river_job WHERE kind = 'update'`); got != n {
		t.Fatalf("%d jobs committed, want %d", got, n)
	}
	// The raw update is kept byte for byte.
	var args string
	if err := pool.QueryRow(context.Background(), `SELECT convert_from(decode(args->>'update', 'base64'), 'UTF8') FROM river_job WHERE (args->>'update_id')::bigint = 77`).Scan(&args); err != nil {
		t.Fatal(err)
	}
	if args != string(raw(77)) {
		t.Fatalf("stored update %q", args)
	}
}

func TestIntakeReportsDatabaseFailure(t *testing.T) {
	pool := dbtest.New(t)
	in := startIntake(t, pool)
	ctx := context.Background()
	if err := in.Submit(ctx, jobs.Update{BotID: 111, UpdateID: 1, Raw: raw(1)}); err != nil {
		t.Fatal(err)
	}
	// Take the table away: the commit must fail and say so, not answer 200.
	if _, err := pool.Exec(ctx, `ALTER TABLE received_updates RENAME TO received_updates_gone`); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := in.Submit(sctx, jobs.Update{BotID: 111, UpdateID: 2, Raw: raw(2)})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit with a broken database: %v", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("%d jobs after a failed commit", n)
	}
	// Once the database is back, the re-delivery lands.
	if _, err := pool.Exec(ctx, `ALTER TABLE received_updates_gone RENAME TO received_updates`); err != nil {
		t.Fatal(err)
	}
	if err := in.Submit(ctx, jobs.Update{BotID: 111, UpdateID: 2, Raw: raw(2)}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM river_job`); n != 2 {
		t.Fatalf("%d jobs after recovery", n)
	}
}

// TestIntakeRoutesSightingsToTheDrain: eleven bots' updates about one
// channel post become eleven sightings, field for field, in a row of
// sighting_batches per commit, and one index_drain job (a few if commits
// race), not one per update, whether they arrive together or in separate
// commits; a command is still an update job.
func TestIntakeRoutesSightingsToTheDrain(t *testing.T) {
	pool := dbtest.New(t)
	d := testDeps(t, pool, "http://127.0.0.1:1", nil)
	client, err := jobs.NewClient(d, jobs.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := jobs.NewIntake(pool, client, d.Logger, jobs.WithSightings(true))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	post := &jobs.Sighting{Post: index.Post{ChatID: -1001, MessageID: 5, UniqueID: "AgADintake", FileID: "BQACAgQAAxkBAAIB5WMM",
		Type: index.TypeDocument, Name: "a.mkv", Size: 1 << 30, MimeType: "video/x-matroska", DC: 4}}
	var wg sync.WaitGroup
	for bot := int64(1); bot <= 11; bot++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Submit(context.Background(), jobs.Update{BotID: bot, UpdateID: 100, Raw: raw(100), Sighting: post}); err != nil {
				t.Error(err)
			}
		}()
		if bot == 6 {
			wg.Wait() // a second batch
		}
	}
	wg.Wait()
	// A command update is still an update job.
	if err := in.Submit(context.Background(), jobs.Update{BotID: 1, UpdateID: 101, Raw: raw(101)}); err != nil {
		t.Fatal(err)
	}
	// A re-delivery is a second copy (indexing it again changes nothing).
	if err := in.Submit(context.Background(), jobs.Update{BotID: 3, UpdateID: 100, Raw: raw(100), Sighting: post}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM sighting_batches b,
		unnest(b.chat_ids, b.message_ids, b.bot_ids, b.file_unique_ids, b.file_ids, b.file_types, b.file_names,
		       b.file_sizes, b.mime_types, b.dc_ids, b.captions, b.durations, b.widths, b.heights)
		       AS s(chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name, file_size, mime_type, dc_id, caption, d, w, h)
		WHERE chat_id = -1001 AND message_id = 5 AND bot_id BETWEEN 1 AND 11
		AND file_unique_id = 'AgADintake' AND file_id = 'BQACAgQAAxkBAAIB5WMM' AND file_type = 'document' AND file_name = 'a.mkv'
		AND file_size = 1073741824 AND mime_type = 'video/x-matroska' AND dc_id = 4 AND caption = '' AND d = 0 AND w = 0 AND h = 0`); n != 12 {
		t.Fatalf("%d sightings, want 11 and the re-delivery", n)
	}
	if n := count(t, pool, `SELECT count(DISTINCT bot_id) FROM sighting_batches, unnest(bot_ids) AS bot_id`); n != 11 {
		t.Fatalf("sightings of %d bots", n)
	}
	// Two groups of commits (six, then five), and the re-delivery.
	if n := count(t, pool, `SELECT count(*) FROM sighting_batches`); n < 3 || n > 12 {
		t.Fatalf("%d sighting batches", n)
	}
	// One job, or one per commit that raced the first (four flushers);
	// the second group found the first's job waiting and queued none.
	if n := count(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'index_drain'`); n < 1 || n > 4 {
		t.Fatalf("%d index_drain jobs", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'update'`); n != 1 {
		t.Fatalf("%d update jobs", n)
	}
	// Only the command needs the re-delivery guard; every update accepted
	// (the re-delivered sighting too) is counted for /stats.
	if n := count(t, pool, `SELECT count(*) FROM received_updates`); n != 1 {
		t.Fatalf("%d received_updates rows, want the command's alone", n)
	}
	if n := count(t, pool, `SELECT sum(n) FROM update_counts`); n != 13 {
		t.Fatalf("%d updates counted, want 13", n)
	}
}
