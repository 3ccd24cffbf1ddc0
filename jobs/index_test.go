package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
	"github.com/ferry-dev/ferry/telegramtest"
)

// channelFileUpdate is what bot (slot) receives when a document is posted in
// a channel: its own file_id, the file's shared unique id.
func channelFileUpdate(updateID, chatID, messageID int64, slot int, file int64) []byte {
	u := models.Update{ID: updateID, ChannelPost: &models.Message{
		ID: int(messageID), Date: int(time.Now().Unix()), Chat: models.Chat{ID: chatID, Type: models.ChatTypeChannel},
		Document: &models.Document{
			FileID:       telegramtest.EncodeFileID(telegramtest.KindDocument, 4, file, int64(slot), nil),
			FileUniqueID: fmt.Sprintf("AgADdrain%06d", file),
			FileName:     fmt.Sprintf("file-%d.mkv", file), MimeType: "video/x-matroska", FileSize: 1 << 30,
		},
	}}
	raw, _ := json.Marshal(u)
	return raw
}

// sightingOf is what the webhook hands the intake for a raw update.
func sightingOf(t testing.TB, raw []byte) *jobs.Sighting {
	t.Helper()
	var u models.Update
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatal(err)
	}
	s := jobs.SightingOf(&u)
	if s == nil {
		t.Fatalf("not a channel file: %s", raw)
	}
	return s
}

// startIndexWorkers runs workers for the bots of tokens on a fresh
// database, with the index on and R2 in store when it is not nil; they stop
// when the test ends.
func startIndexWorkers(t *testing.T, tg *telegramtest.Server, tokens []string, store *r2.Store) (*pgxpool.Pool, *jobs.Deps, *river.Client[pgx.Tx]) {
	t.Helper()
	pool := dbtest.New(t)
	d := testDeps(t, pool, tg.URL(), map[string]string{"BOT_TOKENS": strings.Join(tokens, ",")})
	opts := index.Options{Pool: pool, Logger: d.Logger}
	if store != nil {
		opts.Check, opts.Write, d.R2Enabled = store, store, true
	}
	ix, err := index.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	d.Index = ix
	return pool, d, startClient(t, d)
}

// TestDrainLeavesNoSightingBehind: eleven bots' sightings of 60 posts arrive
// in waves through the intake while workers drain them, so drain jobs keep
// completing just as new sightings commit. Every post gets exactly one
// reply, every bot's file_id is recorded, no sighting is left, and far
// fewer jobs ran than there were sightings.
func TestDrainLeavesNoSightingBehind(t *testing.T) {
	const bots, posts = 11, 60
	tg := telegramtest.NewServer(t)
	var tokens []string
	for i := 1; i <= bots; i++ {
		tok := fmt.Sprintf("%d:AAH%s", 700+i, strings.Repeat(string(rune('a'+i)), 32))
		tokens = append(tokens, tok)
		tg.AddBot(tok)
	}
	pool, d, client := startIndexWorkers(t, tg, tokens, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := jobs.NewIntake(pool, client, d.Logger, jobs.WithSightings(true))
	intakeDone := make(chan struct{})
	go func() { in.Run(ctx); close(intakeDone) }()
	defer func() { cancel(); <-intakeDone }()

	const chat = -1001555
	for wave := 0; wave < posts/3; wave++ {
		var wg sync.WaitGroup
		for p := int64(wave*3 + 1); p <= int64(wave*3+3); p++ {
			for slot := 1; slot <= bots; slot++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					u := jobs.Update{BotID: int64(700 + slot), UpdateID: p, Raw: channelFileUpdate(p, chat, p, slot, p),
						Sighting: sightingOf(t, channelFileUpdate(p, chat, p, slot, p))}
					if err := in.Submit(context.Background(), u); err != nil {
						t.Error(err)
					}
				}()
			}
		}
		wg.Wait()
		time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
	}

	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if _, err := tg.WaitCalls(wctx, "sendMessage", posts); err != nil {
		t.Fatalf("replies: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // let a duplicate reply show itself
	perPost := map[string]int{}
	for _, c := range tg.CallsTo("sendMessage") {
		if c.OK {
			perPost[c.Params["reply_parameters"]]++
		}
	}
	if len(perPost) != posts {
		t.Fatalf("%d posts answered, want %d", len(perPost), posts)
	}
	for k, n := range perPost {
		if n != 1 {
			t.Fatalf("post %s answered %d times", k, n)
		}
	}
	for q, want := range map[string]int{
		`SELECT count(*) FROM channel_posts WHERE replied_at IS NOT NULL`: posts,
		`SELECT count(*) FROM file_bot_ids`:                               posts * bots,
		`SELECT count(*) FROM post_sightings`:                             0,
		`SELECT count(*) FROM sighting_batches`:                           0,
		`SELECT count(*) FROM river_job WHERE kind = 'update'`:            0,
	} {
		if n := count(t, pool, q); n != want {
			t.Fatalf("%s = %d, want %d", q, n, want)
		}
	}
	waitNoUnfinished(t, pool, "index_drain")
	// How many rounds the waves make depends on timing; one job per
	// sighting (660) or per post and kind would be far more.
	if n := count(t, pool, `SELECT count(*) FROM river_job WHERE kind IN ('index_drain', 'index_reply')`); n >= posts*bots/3 {
		t.Fatalf("%d index jobs for %d sightings: not batched", n, posts*bots)
	}
}

func waitNoUnfinished(t *testing.T, pool *pgxpool.Pool, kind string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for count(t, pool, `SELECT count(*) FROM river_job WHERE kind = $1 AND state NOT IN ('completed', 'cancelled', 'discarded')`, kind) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s jobs still unfinished", kind)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// indexPosts records n posts seen by the worker bot and returns them for a
// reply job.
func indexPosts(t *testing.T, ix *index.Indexer, n int) []jobs.ReplyPost {
	t.Helper()
	var out []jobs.ReplyPost
	for i := 1; i <= n; i++ {
		var u models.Update
		if err := json.Unmarshal(channelFileUpdate(int64(i), channel, int64(i), 1, int64(i)), &u); err != nil {
			t.Fatal(err)
		}
		p, ok := index.PostFromMessage(1, 111, u.ChannelPost)
		if !ok {
			t.Fatal("not a file post")
		}
		if _, err := ix.IndexCommit(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		out = append(out, jobs.ReplyPost{PostRef: index.PostRef{ChatID: channel, MessageID: int64(i)}, BotID: 111})
	}
	return out
}

// TestReplyBatchObeysTooManyRequests: one of three replies is answered 429;
// the job waits retry_after without burning an attempt and then sends only
// that one, so each post is answered exactly once.
func TestReplyBatchObeysTooManyRequests(t *testing.T) {
	var ix *index.Indexer
	h := startWorkers(t, func(d *jobs.Deps) { ix = d.Index })
	posts := indexPosts(t, ix, 3)
	h.tg.FailNext("sendMessage", 1, telegramtest.TooManyRequests(1))
	res, err := h.client.Insert(context.Background(), jobs.IndexReplyArgs{Posts: posts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := h.wait(t, "sendMessage", 4)
	ok := map[string]int{}
	for _, c := range calls {
		if c.OK {
			ok[c.Params["reply_parameters"]]++
		}
	}
	if len(ok) != 3 || calls[0].Injected != telegramtest.FailTooManyRequests {
		t.Fatalf("sends: %d posts answered; first call %q", len(ok), calls[0].Injected)
	}
	for k, n := range ok {
		if n != 1 {
			t.Fatalf("post %s answered %d times", k, n)
		}
	}
	if gap := calls[3].Time.Sub(calls[0].Time); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v, before retry_after", gap)
	}
	job := waitJob(t, h.client, res.Job.ID)
	if job.State != "completed" || job.Attempt != 1 {
		t.Fatalf("job %s after attempt %d, want completed on attempt 1", job.State, job.Attempt)
	}
}

// TestReplyBatchSkipsRefusedPost: Telegram refuses one reply for good (the
// bot was removed from the channel); the others are sent, the refused one is
// not retried, and the job completes.
func TestReplyBatchSkipsRefusedPost(t *testing.T) {
	var ix *index.Indexer
	h := startWorkers(t, func(d *jobs.Deps) { ix = d.Index })
	posts := indexPosts(t, ix, 3)
	h.tg.FailNext("sendMessage", 1, telegramtest.BotBlocked())
	res, err := h.client.Insert(context.Background(), jobs.IndexReplyArgs{Posts: posts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	job := waitJob(t, h.client, res.Job.ID)
	calls := h.tg.CallsTo("sendMessage")
	sent := 0
	for _, c := range calls {
		if c.OK {
			sent++
		}
	}
	if job.State != "completed" || len(calls) != 3 || sent != 2 {
		t.Fatalf("job %s, %d calls, %d sent; want completed, 3, 2", job.State, len(calls), sent)
	}
}

func waitJob(t *testing.T, client *river.Client[pgx.Tx], id int64) *rivertype.JobRow {
	t.Helper()
	job, _ := pollJob(t, client, id, 15*time.Second, func(j *rivertype.JobRow) bool { return j.FinalizedAt != nil })
	return job
}

// pollJob reads job id until done says so or within has passed, and tells
// which happened.
func pollJob(t *testing.T, client *river.Client[pgx.Tx], id int64, within time.Duration, done func(*rivertype.JobRow) bool) (*rivertype.JobRow, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		job, err := client.JobGet(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if done(job) {
			return job, true
		}
		if time.Now().After(deadline) {
			return job, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type execer interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}

// addSighting writes bot 111's sighting of raw as the intake does (a row
// of sighting_batches), through q (the pool, or a transaction held open).
func addSighting(t *testing.T, q execer, messageID int64, raw []byte) {
	t.Helper()
	addSightingBy(t, q, 111, messageID, raw)
}

// addLegacySighting writes bot 111's sighting of raw as the intake did
// before migration 00010: a post_sightings row.
func addLegacySighting(t *testing.T, q execer, messageID int64, raw []byte) {
	t.Helper()
	p := sightingOf(t, raw).Post
	if _, err := q.Exec(context.Background(), `
		INSERT INTO post_sightings (chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
		                            file_size, mime_type, dc_id, caption, duration, width, height)
		VALUES ($1, $2, 111, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		channel, messageID, p.UniqueID, p.FileID, p.Type, p.Name, p.Size, p.MimeType, p.DC, p.Caption,
		p.Duration, p.Width, p.Height); err != nil {
		t.Fatal(err)
	}
}

// addRawSighting writes a sighting in the form used before migration
// 00008: the raw update.
func addRawSighting(t *testing.T, q execer, messageID int64, raw []byte) {
	t.Helper()
	if _, err := q.Exec(context.Background(), `INSERT INTO post_sightings (chat_id, message_id, bot_id, update_json) VALUES ($1, $2, 111, $3)`,
		channel, messageID, raw); err != nil {
		t.Fatal(err)
	}
}

// TestDrainWaitsForSightingsInFlight: a drain job that has found nothing
// left must not complete while an intake commit is adding a sighting (that
// commit queues no job of its own, since this one is running): it waits for
// the commit, then indexes the sighting. The intake's statements are run by
// hand here to hold its transaction open.
func TestDrainWaitsForSightingsInFlight(t *testing.T) {
	var pool *pgxpool.Pool
	h := startWorkers(t, func(d *jobs.Deps) { pool = d.Pool })
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, jobs.SightingsLockKey); err != nil {
		t.Fatal(err)
	}
	addSighting(t, tx, 7, channelFileUpdate(7, channel, 7, 1, 7))
	res, err := h.client.Insert(ctx, jobs.IndexDrainArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Once running, the job finds nothing it can take and must wait for the
	// open transaction instead of completing.
	job, ok := pollJob(t, h.client, res.Job.ID, 10*time.Second, func(j *rivertype.JobRow) bool {
		return j.State == rivertype.JobStateRunning || j.FinalizedAt != nil
	})
	if !ok || job.State != rivertype.JobStateRunning {
		t.Fatalf("drain job %s before the sighting committed; want it running, waiting", job.State)
	}
	time.Sleep(500 * time.Millisecond)
	if job, err := h.client.JobGet(ctx, res.Job.ID); err != nil || job.State != rivertype.JobStateRunning {
		t.Fatalf("drain job %+v (%v) while a sighting is being committed; want it waiting, running", job, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if job := waitJob(t, h.client, res.Job.ID); job.State != rivertype.JobStateCompleted {
		t.Fatalf("drain job %s", job.State)
	}
	if n := count(t, pool, `SELECT count(*) FROM channel_posts WHERE chat_id = $1 AND message_id = 7`, channel); n != 1 {
		t.Fatalf("the sighting committed during the drain's last check was not indexed (%d claims)", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM sighting_batches`); n != 0 {
		t.Fatalf("%d sighting batches left", n)
	}
	h.wait(t, "sendMessage", 1)
}

// TestDrainKeepsAPoisonedSightingAside: a sighting whose data the database
// refuses (here a trigger stands in for any data or constraint error) is
// kept in post_sightings with its error; the other posts of the same round
// are indexed and answered, and the drain completes instead of failing
// every round.
func TestDrainKeepsAPoisonedSightingAside(t *testing.T) {
	var pool *pgxpool.Pool
	h := startWorkers(t, func(d *jobs.Deps) { pool = d.Pool })
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.file_name = 'poison.mkv' THEN RAISE EXCEPTION 'poisoned file' USING ERRCODE = '22023'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER poison BEFORE INSERT ON files FOR EACH ROW EXECUTE FUNCTION poison();`); err != nil {
		t.Fatal(err)
	}
	for m := int64(1); m <= 4; m++ {
		raw := channelFileUpdate(m, channel, m, 1, m)
		switch m {
		case 3:
			raw = []byte(strings.Replace(string(raw), "file-3.mkv", "poison.mkv", 1))
		case 2:
			addLegacySighting(t, pool, m, raw) // a row from before migration 00010
			continue
		case 4:
			addRawSighting(t, pool, m, raw) // a row from before migration 00008
			continue
		}
		addSighting(t, pool, m, raw)
	}
	res, err := h.client.Insert(ctx, jobs.IndexDrainArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job := waitJob(t, h.client, res.Job.ID); job.State != rivertype.JobStateCompleted || job.Attempt != 1 {
		t.Fatalf("drain job %s after %d attempts", job.State, job.Attempt)
	}
	replies := h.wait(t, "sendMessage", 3)
	for _, r := range replies {
		if strings.Contains(r.Params["reply_parameters"], `"message_id":3`) {
			t.Fatalf("the poisoned post was answered: %+v", r.Params)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM channel_posts`); n != 3 {
		t.Fatalf("%d posts indexed, want 3", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM post_sightings WHERE message_id = 3 AND error LIKE '%poisoned file%'`); n != 1 {
		t.Fatalf("poisoned sighting not kept with its error")
	}
	if n := count(t, pool, `SELECT count(*) FROM post_sightings`); n != 1 || count(t, pool, `SELECT count(*) FROM sighting_batches`) != 0 {
		t.Fatalf("%d sightings left, want only the poisoned one", n)
	}
	// /stats tells the admin.
	h.deliver(t, command(50, admin, "/stats"))
	stats := h.wait(t, "sendMessage", 4)[3]
	if !strings.Contains(stats.Params["text"], "3 files; 0 sightings waiting; 1 could not be indexed") {
		t.Fatalf("/stats: %q", stats.Params["text"])
	}
}

// TestR2RetriesAtMostAMinuteApart: a bucket that was down for an hour is
// caught up within a minute of coming back, not after River's default
// backoff (hours by the tenth attempt).
func TestR2RetriesAtMostAMinuteApart(t *testing.T) {
	w := &jobs.R2SyncWorker{}
	prev := time.Duration(0)
	for attempt := 1; attempt <= 25; attempt++ {
		job := &river.Job[jobs.R2SyncArgs]{JobRow: &rivertype.JobRow{Attempt: attempt}}
		wait := time.Until(w.NextRetry(job))
		if wait > time.Minute+time.Second || wait+time.Second < prev {
			t.Fatalf("attempt %d retries in %v (previous %v)", attempt, wait, prev)
		}
		prev = wait
	}
	if prev < 59*time.Second {
		t.Fatalf("retries settle at %v, want a minute", prev)
	}
}

// TestDrainRetriesWithinSeconds: while a failed drain job waits to retry,
// the intake queues no other, so its retries must come quickly.
func TestDrainRetriesWithinSeconds(t *testing.T) {
	w := &jobs.IndexDrainWorker{}
	for attempt := 1; attempt <= 25; attempt++ {
		job := &river.Job[jobs.IndexDrainArgs]{JobRow: &rivertype.JobRow{Attempt: attempt}}
		if wait := time.Until(w.NextRetry(job)); wait > 10*time.Second+100*time.Millisecond || wait <= 0 {
			t.Fatalf("attempt %d retries in %v", attempt, wait)
		}
	}
}

// TestDrainSurvivesDatabaseErrors: while the index tables are unusable (a
// table renamed away stands in for a database failing mid-job), the drain
// job fails and keeps every sighting; once they are back, its next attempt
// (seconds later) indexes them and the posts are answered.
func TestDrainSurvivesDatabaseErrors(t *testing.T) {
	var pool *pgxpool.Pool
	h := startWorkers(t, func(d *jobs.Deps) { pool = d.Pool })
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE files RENAME TO files_gone`); err != nil {
		t.Fatal(err)
	}
	for m := int64(1); m <= 3; m++ {
		addSighting(t, pool, m, channelFileUpdate(m, channel, m, 1, m))
	}
	res, err := h.client.Insert(ctx, jobs.IndexDrainArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job, ok := pollJob(t, h.client, res.Job.ID, 10*time.Second, func(j *rivertype.JobRow) bool { return len(j.Errors) > 0 }); !ok {
		t.Fatalf("drain job %s with no error while the files table is gone", job.State)
	}
	if n := count(t, pool, `SELECT coalesce(sum(n), 0) FROM sighting_batches`); n != 3 {
		t.Fatalf("%d sightings kept through the failure, want 3", n)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE files_gone RENAME TO files`); err != nil {
		t.Fatal(err)
	}
	h.wait(t, "sendMessage", 3)
	if job := waitJob(t, h.client, res.Job.ID); job.State != rivertype.JobStateCompleted || job.Attempt < 2 {
		t.Fatalf("drain job %s after %d attempts", job.State, job.Attempt)
	}
	if n := count(t, pool, `SELECT count(*) FROM sighting_batches`); n != 0 {
		t.Fatalf("%d sighting batches left", n)
	}
}

// TestR2WriteWaitsOnlyForMissingBots: a file's later file_ids are written
// to R2 at once when every configured bot now holds it (no sighting is left
// to wait for), and after the debounce while a bot's sighting may still
// come.
func TestR2WriteWaitsOnlyForMissingBots(t *testing.T) {
	tokens := []string{workerToken, otherToken, "333:AAHeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}
	tg := telegramtest.NewServer(t)
	for _, tok := range tokens {
		tg.AddBot(tok)
	}
	store, err := r2.New(r2test.Fake(t))
	if err != nil {
		t.Fatal(err)
	}
	pool, _, client := startIndexWorkers(t, tg, tokens, store)
	ctx := context.Background()
	drain := func(sightings ...[2]int64) { // (bot id, post = file)
		t.Helper()
		for _, s := range sightings {
			addSightingBy(t, pool, s[0], s[1], channelFileUpdate(s[1], channel, s[1], int(s[0]/111), s[1]))
		}
		res, err := client.Insert(ctx, jobs.IndexDrainArgs{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if job := waitJob(t, client, res.Job.ID); job.State != rivertype.JobStateCompleted {
			t.Fatalf("drain job %s", job.State)
		}
	}
	// File 1 is created in R2 with b_1's file_id, then the other two bots'
	// sightings complete it; file 2 lacks bot 333's.
	drain([2]int64{111, 1}, [2]int64{111, 2})
	drain([2]int64{222, 1}, [2]int64{333, 1}, [2]int64{222, 2})
	// The R2 jobs the second round queued: file 1's at once, file 2's
	// after the debounce.
	var wait1, wait2 *time.Duration
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT (args->>'not_before')::timestamptz - created_at FROM river_job WHERE kind = 'r2_sync' AND args->'unique_ids' ? 'AgADdrain000001'),
		(SELECT (args->>'not_before')::timestamptz - created_at FROM river_job WHERE kind = 'r2_sync' AND args->'unique_ids' ? 'AgADdrain000002')`).
		Scan(&wait1, &wait2); err != nil {
		t.Fatal(err)
	}
	if wait1 != nil {
		t.Fatalf("file 1, held by every bot, waits %v", *wait1)
	}
	if wait2 == nil || *wait2 < 1500*time.Millisecond {
		t.Fatalf("file 2, missing a bot, waits %v", wait2)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rec1, _, err1 := store.Get(ctx, "AgADdrain000001")
		rec2, _, err2 := store.Get(ctx, "AgADdrain000002")
		if err1 == nil && err2 == nil && len(rec1.BotFileIDs) == 3 && len(rec2.BotFileIDs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("R2: %+v %v, %+v %v", rec1, err1, rec2, err2)
		}
	}
}

// addSightingBy is addSighting for any bot.
func addSightingBy(t *testing.T, q execer, botID, messageID int64, raw []byte) {
	t.Helper()
	p := sightingOf(t, raw).Post
	if _, err := q.Exec(context.Background(), `
		INSERT INTO sighting_batches (n, chat_ids, message_ids, bot_ids, file_unique_ids, file_ids, file_types, file_names,
		                              file_sizes, mime_types, dc_ids, captions, durations, widths, heights)
		VALUES (1, ARRAY[$1::bigint], ARRAY[$2::bigint], ARRAY[$14::bigint], ARRAY[$3], ARRAY[$4], ARRAY[$5], ARRAY[$6],
		        ARRAY[$7::bigint], ARRAY[$8], ARRAY[$9::int], ARRAY[$10], ARRAY[$11::int], ARRAY[$12::int], ARRAY[$13::int])`,
		channel, messageID, p.UniqueID, p.FileID, p.Type, p.Name, p.Size, p.MimeType, p.DC, p.Caption,
		p.Duration, p.Width, p.Height, botID); err != nil {
		t.Fatal(err)
	}
}
