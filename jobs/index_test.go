package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
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
func startIndexWorkers(t *testing.T, tg *telegramtest.Server, tokens []string, store *r2.Store) (db.Driver, *jobs.Deps, db.River) {
	t.Helper()
	pool := dbtest.New(t)
	d := testDeps(t, pool, tg.URL(), map[string]string{"BOT_TOKENS": strings.Join(tokens, ",")})
	opts := index.Options{DB: pool, Logger: d.Logger}
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
	var refs []db.PostRef
	var pairs []postFile
	var uids []string
	for p := int64(1); p <= posts; p++ {
		uid := sightingOf(t, channelFileUpdate(p, chat, p, 1, p)).Post.UniqueID
		refs, pairs, uids = append(refs, db.PostRef{ChatID: chat, MessageID: p}), append(pairs, postFile{chat, p, uid}), append(uids, uid)
	}
	if n := len(claims(t, pool, pairs...)); n != posts {
		t.Fatalf("%d posts claimed, want %d", n, posts)
	}
	if n := len(pendingReplies(t, pool, refs...)); n != 0 {
		t.Fatalf("%d posts without their reply recorded", n)
	}
	if n := fileIDCount(t, pool, uids...); n != posts*bots {
		t.Fatalf("%d file_ids recorded, want %d", n, posts*bots)
	}
	if n := stats(t, pool).SightingsWaiting; n != 0 {
		t.Fatalf("%d sightings left", n)
	}
	if n := len(dbtest.Jobs(t, pool, jobs.UpdateArgs{}.Kind())); n != 0 {
		t.Fatalf("%d update jobs", n)
	}
	waitNoUnfinished(t, pool, "index_drain")
	// How many rounds the waves make depends on timing; one job per
	// sighting (660) or per post and kind would be far more.
	if n := len(dbtest.Jobs(t, pool, "index_drain")) + len(dbtest.Jobs(t, pool, "index_reply")); n >= posts*bots/3 {
		t.Fatalf("%d index jobs for %d sightings: not batched", n, posts*bots)
	}
}

// postFile is a post and the file it carries.
type postFile struct {
	chatID, messageID int64
	uniqueID          string
}

// claims reads the claims of the posts that have one (and their file).
func claims(t *testing.T, d db.Executor, posts ...postFile) []db.PostOutcome {
	t.Helper()
	p := &db.PostOutcomeManyParams{}
	for _, pf := range posts {
		p.ChatID, p.MessageID, p.UniqueID = append(p.ChatID, pf.chatID), append(p.MessageID, pf.messageID), append(p.UniqueID, pf.uniqueID)
	}
	out, err := d.PostOutcomeMany(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pendingReplies reads the claims of posts whose reply is not recorded.
func pendingReplies(t *testing.T, d db.Executor, posts ...db.PostRef) []db.PostOutcome {
	t.Helper()
	out, err := d.PostPendingReplyMany(context.Background(), posts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fileIDCount counts the file_ids recorded for files, over every slot.
func fileIDCount(t *testing.T, d db.Executor, uniqueIDs ...string) int {
	t.Helper()
	fs, err := d.FileSyncGetMany(context.Background(), uniqueIDs)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fs {
		n += len(f.FileIDs)
	}
	return n
}

// unfinished are the states of a job with work left.
var unfinished = []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled}

func waitNoUnfinished(t *testing.T, d db.Driver, kind string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(dbtest.Jobs(t, d, kind, unfinished...)) != 0 {
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
	// The three sends run at once, so the refused one need not be the
	// first recorded: find it, and the retry of its post.
	ok := map[string]int{}
	var refused []telegramtest.Call
	for _, c := range calls {
		if c.OK {
			ok[c.Params["reply_parameters"]]++
		}
		if c.Injected == telegramtest.FailTooManyRequests {
			refused = append(refused, c)
		}
	}
	if len(ok) != 3 || len(refused) != 1 {
		t.Fatalf("sends: %d posts answered, %d refused with 429; want 3 and 1", len(ok), len(refused))
	}
	for k, n := range ok {
		if n != 1 {
			t.Fatalf("post %s answered %d times", k, n)
		}
	}
	for _, c := range calls {
		if c.OK && c.Params["reply_parameters"] == refused[0].Params["reply_parameters"] {
			if gap := c.Time.Sub(refused[0].Time); gap < 900*time.Millisecond {
				t.Fatalf("retried after %v, before retry_after", gap)
			}
		}
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

func waitJob(t *testing.T, client db.River, id int64) *rivertype.JobRow {
	t.Helper()
	job, _ := pollJob(t, client, id, 15*time.Second, func(j *rivertype.JobRow) bool { return j.FinalizedAt != nil })
	return job
}

// pollJob reads job id until done says so or within has passed, and tells
// which happened.
func pollJob(t *testing.T, client db.River, id int64, within time.Duration, done func(*rivertype.JobRow) bool) (*rivertype.JobRow, bool) {
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

// addSighting commits bot 111's sighting of raw as the intake does (a
// sighting batch), through q (the database, or a transaction held open).
func addSighting(t *testing.T, q db.Executor, messageID int64, raw []byte) {
	t.Helper()
	addSightingBy(t, q, 111, messageID, raw)
}

// TestDrainWaitsForSightingsInFlight: a drain job that has found nothing
// left must not complete while an intake commit is adding a sighting (that
// commit queues no job of its own, since this one is running): it waits for
// the commit, then indexes the sighting. The intake's commit is made by
// hand here to hold its transaction open.
func TestDrainWaitsForSightingsInFlight(t *testing.T) {
	dbtest.SkipUnlessConcurrentWriters(t)
	h := startWorkers(t)
	ctx := context.Background()
	tx, err := h.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	raw := channelFileUpdate(7, channel, 7, 1, 7)
	addSighting(t, tx, 7, raw)
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
	if n := len(claims(t, h.db, postFile{channel, 7, sightingOf(t, raw).Post.UniqueID})); n != 1 {
		t.Fatalf("the sighting committed during the drain's last check was not indexed (%d claims)", n)
	}
	if n := stats(t, h.db).SightingsWaiting; n != 0 {
		t.Fatalf("%d sightings left", n)
	}
	h.wait(t, "sendMessage", 1)
}

// poisonPosts commits, in one intake commit (so one round of the drain),
// bot 111's sightings of posts 1 to 4, post 3 carrying the file named
// poisonName; it returns the posts and their files.
func poisonPosts(t *testing.T, d db.Executor) []postFile {
	t.Helper()
	var sightings []db.Post
	var out []postFile
	for m := int64(1); m <= 4; m++ {
		raw := channelFileUpdate(m, channel, m, 1, m)
		if m == 3 {
			raw = []byte(strings.Replace(string(raw), "file-3.mkv", poisonName, 1))
		}
		p := sightingOf(t, raw).Post
		p.BotID = 111
		sightings, out = append(sightings, p), append(out, postFile{channel, m, p.UniqueID})
	}
	if _, err := d.UpdateAcceptMany(context.Background(), &db.UpdateAcceptManyParams{Sightings: sightings, DrainKind: jobs.IndexDrainArgs{}.Kind()}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDrainKeepsAPoisonedSightingAside: a sighting whose data the database
// refuses (a data error, standing in for any data or constraint error) is
// kept in sighting_failures with its error; the other posts of the same
// round are indexed and answered, and the drain completes instead of
// failing every round.
func TestDrainKeepsAPoisonedSightingAside(t *testing.T) {
	var logs syncBuffer
	h := startWorkers(t, func(d *jobs.Deps) { d.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	ctx := context.Background()
	h.db.poison.Store(true)
	posts := poisonPosts(t, h.db)
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
	if n := len(claims(t, h.db, posts...)); n != 3 {
		t.Fatalf("%d posts indexed, want 3", n)
	}
	failed, err := h.db.SightingFailureList(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].Post.MessageID != 3 || failed[0].Post.Name != poisonName || !strings.Contains(failed[0].Error, "poisoned file") {
		t.Fatalf("kept sightings %+v, want the poisoned one with its error", failed)
	}
	if n := stats(t, h.db).SightingsWaiting; n != 0 {
		t.Fatalf("%d sightings waiting, want only the poisoned one kept aside", n)
	}
	// The log line says which job it is about.
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "sighting cannot be indexed") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil || line["job_id"] != float64(res.Job.ID) || line["kind"] != "index_drain" || line["attempt"] != float64(1) {
		t.Fatalf("the refused sighting's log line %v does not name its job #%d (index_drain, attempt 1)", line, res.Job.ID)
	}
	// /stats tells the admin.
	h.deliver(t, command(50, admin, "/stats"))
	stats := h.wait(t, "sendMessage", 4)[3]
	if text := stats.Params["text"]; !strings.Contains(text, "3 files; 3 posts answered; 0 sightings waiting;") ||
		!strings.Contains(text, "1 could not be indexed (send /retry sightings") {
		t.Fatalf("/stats: %q", stats.Params["text"])
	}
}

// TestRetrySightingsIndexesThemAgain: once what made the index refuse a
// sighting is fixed, /retry sightings puts it back in the drain's queue
// with a drain job; it is indexed and answered, and nothing is left kept
// aside.
func TestRetrySightingsIndexesThemAgain(t *testing.T) {
	h := startWorkers(t)
	ctx := context.Background()
	h.db.poison.Store(true)
	posts := poisonPosts(t, h.db)
	res, err := h.client.Insert(ctx, jobs.IndexDrainArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job := waitJob(t, h.client, res.Job.ID); job.State != rivertype.JobStateCompleted {
		t.Fatalf("drain job %s", job.State)
	}
	h.wait(t, "sendMessage", 3)
	if n := stats(t, h.db).SightingsFailed; n != 1 {
		t.Fatalf("%d sightings kept aside, want 1", n)
	}

	h.db.poison.Store(false)
	h.deliver(t, command(60, stranger, "/retry sightings"))
	if r := h.wait(t, "sendMessage", 4)[3]; !strings.Contains(r.Params["text"], "for the admins") {
		t.Fatalf("stranger's /retry sightings answered %q", r.Params["text"])
	}
	h.deliver(t, command(61, admin, "/retry sightings"))
	calls := h.wait(t, "sendMessage", 6)
	var answer, reply string
	for _, c := range calls[4:] {
		if c.Params["chat_id"] == fmt.Sprint(admin) {
			answer = c.Params["text"]
		} else if strings.Contains(c.Params["reply_parameters"], `"message_id":3`) {
			reply = c.Params["text"]
		}
	}
	if !strings.Contains(answer, "Requeued 1 sightings") {
		t.Fatalf("/retry sightings answered %q", answer)
	}
	if !strings.Contains(reply, "File Stored Successfully") {
		t.Fatalf("the retried post's reply %q (calls %+v)", reply, calls[4:])
	}
	if n := len(claims(t, h.db, posts...)); n != 4 {
		t.Fatalf("%d posts indexed, want 4", n)
	}
	if s := stats(t, h.db); s.SightingsFailed != 0 || s.SightingsWaiting != 0 {
		t.Fatalf("%d sightings kept aside and %d waiting after the retry", s.SightingsFailed, s.SightingsWaiting)
	}
	waitNoUnfinished(t, h.db, "index_drain")

	// With nothing kept aside there is nothing to requeue.
	h.deliver(t, command(62, admin, "/retry sightings"))
	if r := h.wait(t, "sendMessage", 7)[6]; !strings.Contains(r.Params["text"], "No sightings to retry") {
		t.Fatalf("/retry sightings with none kept answered %q", r.Params["text"])
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
// database failing mid-job), the drain job fails and keeps every sighting;
// once they are back, its next attempt (seconds later) indexes them and the
// posts are answered.
func TestDrainSurvivesDatabaseErrors(t *testing.T) {
	h := startWorkers(t)
	ctx := context.Background()
	h.db.indexDown.Store(true)
	for m := int64(1); m <= 3; m++ {
		addSighting(t, h.db, m, channelFileUpdate(m, channel, m, 1, m))
	}
	res, err := h.client.Insert(ctx, jobs.IndexDrainArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job, ok := pollJob(t, h.client, res.Job.ID, 10*time.Second, func(j *rivertype.JobRow) bool { return len(j.Errors) > 0 }); !ok {
		t.Fatalf("drain job %s with no error while the index tables are unusable", job.State)
	}
	if n := stats(t, h.db).SightingsWaiting; n != 3 {
		t.Fatalf("%d sightings kept through the failure, want 3", n)
	}
	h.db.indexDown.Store(false)
	h.wait(t, "sendMessage", 3)
	if job := waitJob(t, h.client, res.Job.ID); job.State != rivertype.JobStateCompleted || job.Attempt < 2 {
		t.Fatalf("drain job %s after %d attempts", job.State, job.Attempt)
	}
	if n := stats(t, h.db).SightingsWaiting; n != 0 {
		t.Fatalf("%d sightings left", n)
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
	wait := map[string]*time.Duration{}
	for _, j := range dbtest.Jobs(t, pool, jobs.R2SyncArgs{}.Kind()) {
		var a jobs.R2SyncArgs
		if err := json.Unmarshal(j.EncodedArgs, &a); err != nil {
			t.Fatal(err)
		}
		for _, id := range a.UniqueIDs {
			if !a.NotBefore.IsZero() {
				w := a.NotBefore.Sub(j.CreatedAt)
				wait[id] = &w
			} else if _, ok := wait[id]; !ok {
				wait[id] = nil
			}
		}
	}
	wait1, ok1 := wait["AgADdrain000001"]
	wait2, ok2 := wait["AgADdrain000002"]
	if !ok1 || wait1 != nil {
		t.Fatalf("file 1, held by every bot, waits %v (queued: %v)", wait1, ok1)
	}
	if !ok2 || wait2 == nil || *wait2 < 1500*time.Millisecond {
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

// addSightingBy commits a sighting of raw by any bot as the intake does.
func addSightingBy(t *testing.T, q db.Executor, botID, messageID int64, raw []byte) {
	t.Helper()
	p := sightingOf(t, raw).Post
	p.BotID, p.ChatID, p.MessageID = botID, channel, messageID
	if _, err := q.UpdateAcceptMany(context.Background(), &db.UpdateAcceptManyParams{Sightings: []db.Post{p}, DrainKind: jobs.IndexDrainArgs{}.Kind()}); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer that goroutines may write at once (a log).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
