package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/index"
)

// IndexReplyArgs answers the posts one index transaction claimed ("File
// Stored Successfully" or "File Already Exists"). It is inserted in that
// transaction, and a post is claimed once, so each post is in exactly one
// reply job however many bots saw it.
type IndexReplyArgs struct {
	Posts []ReplyPost `json:"posts"`
	// BotID, ChatID and MessageID are the one-post form of earlier
	// releases; jobs already queued with it still run.
	BotID     int64 `json:"bot_id,omitempty"`
	ChatID    int64 `json:"chat_id,omitempty"`
	MessageID int64 `json:"message_id,omitempty"`
}

// ReplyPost is one post to answer and the bot that claimed it.
type ReplyPost struct {
	index.PostRef
	BotID int64 `json:"bot_id"`
}

// Kind names the job.
func (IndexReplyArgs) Kind() string { return "index_reply" }

// InsertOpts: the index queue.
func (IndexReplyArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueIndex} }

func (a IndexReplyArgs) posts() []ReplyPost {
	if a.ChatID != 0 {
		return append([]ReplyPost{{PostRef: index.PostRef{ChatID: a.ChatID, MessageID: a.MessageID}, BotID: a.BotID}}, a.Posts...)
	}
	return a.Posts
}

// R2SyncArgs writes files' records to R2 (create, or merge new file_ids
// with compare-and-swap). A new file's object is created by the index
// transaction that first sees it, with the file_ids of that transaction;
// each index transaction that records other file_ids queues a job for
// their files. The job waits r2Debounce, so the other bots' sightings of a
// post usually land first and cost one merge, except for files that every
// configured bot already holds: no sighting is left to wait for, so they
// are written at once. A job whose files were written meanwhile costs one
// query, no R2 request. Because the job is committed with the rows it
// covers, no file_id is ever left without a job that will write it.
type R2SyncArgs struct {
	UniqueIDs []string `json:"unique_ids"`
	// NotBefore is when the write may start (the debounce). The job itself
	// is available at once and waits in its worker: River promotes
	// scheduled jobs only every few seconds, which would stretch a 2 s
	// debounce to as much as 7.
	NotBefore time.Time `json:"not_before,omitzero"`
	// UniqueID is the single-file form of earlier releases; jobs already
	// queued with it still run.
	UniqueID string `json:"unique_id,omitempty"`
}

// Kind names the job.
func (R2SyncArgs) Kind() string { return "r2_sync" }

// InsertOpts: the R2 queue.
func (R2SyncArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueR2} }

func (a R2SyncArgs) ids() []string {
	if a.UniqueID != "" {
		return append([]string{a.UniqueID}, a.UniqueIDs...)
	}
	return a.UniqueIDs
}

// unfinished are the states a job is unique over while it has work to do.
var unfinished = []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending,
	rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled}

// r2Debounce delays an R2 write after the first sighting of a file.
const r2Debounce = 2 * time.Second

// R2SweepArgs is the periodic safety net: it writes every file_id not yet in
// R2 that no job is carrying (e.g. one discarded after R2 was down for days).
type R2SweepArgs struct{}

// Kind names the job.
func (R2SweepArgs) Kind() string { return "r2_sweep" }

// InsertOpts: one sweep at a time.
func (R2SweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueR2, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: unfinished}}
}

// indexPost records one bot's sighting of a channel file that arrived as an
// update job rather than through the intake's batches (a job inserted by
// hand or by another tool): the same path, for one sighting.
func (w *UpdateWorker) indexPost(ctx context.Context, b *botapi.Bot, msg *models.Message) error {
	post, ok := index.PostFromMessage(b.Slot, b.ID, msg)
	if !ok || w.d.Index == nil {
		return nil
	}
	return indexPosts(ctx, w.d, []index.Post{post})
}

// indexPosts records sightings in one transaction with the jobs they call
// for: the reply of each post this transaction claimed, and one R2 write
// for the files that have file_ids not yet in R2. Concurrent batches can
// deadlock on rows they share (Postgres aborts one); that batch is simply
// run again at once, without spending a job attempt.
func indexPosts(ctx context.Context, d *Deps, posts []index.Post) error {
	client := river.ClientFromContext[pgx.Tx](ctx)
	return inTxRetrying(ctx, d.Pool, func(tx pgx.Tx) error {
		outs, err := d.Index.IndexMany(ctx, tx, posts)
		if err != nil {
			return err
		}
		return queueIndexJobs(ctx, tx, client, d, posts, outs)
	})
}

// inTxRetrying runs f in a transaction, and again (up to five times in all)
// when Postgres aborts it to break a deadlock or a serialization conflict:
// running it again is expected to succeed, and costs no job attempt.
func inTxRetrying(ctx context.Context, pool *pgxpool.Pool, f func(pgx.Tx) error) error {
	var err error
	for try := 0; try < 5; try++ {
		err = pgx.BeginFunc(ctx, pool, f)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
	}
	return err
}

// queueIndexJobs inserts, in the transaction that recorded the sightings,
// one reply job for the posts it claimed and R2 jobs for the files with
// file_ids not yet in R2: at once for the files that every configured bot
// now holds, after r2Debounce for the others (see R2SyncArgs).
func queueIndexJobs(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], d *Deps, posts []index.Post, outs []index.Outcome) error {
	var jobs []river.InsertManyParams
	var replies []ReplyPost
	var r2IDs []string
	r2 := map[string]bool{}
	for i, out := range outs {
		p := posts[i]
		if out.Reply {
			replies = append(replies, ReplyPost{PostRef: index.PostRef{ChatID: p.ChatID, MessageID: p.MessageID}, BotID: p.BotID})
		}
		if out.NeedR2Write && d.R2Enabled && !r2[p.UniqueID] {
			r2[p.UniqueID] = true
			r2IDs = append(r2IDs, p.UniqueID)
		}
	}
	if len(replies) > 0 {
		jobs = append(jobs, river.InsertManyParams{Args: IndexReplyArgs{Posts: replies}})
	}
	if len(r2IDs) > 0 {
		held, err := d.Index.HeldByAll(ctx, tx, r2IDs, len(d.Bots.All()))
		if err != nil {
			return err
		}
		if len(held) > 0 {
			jobs = append(jobs, river.InsertManyParams{Args: R2SyncArgs{UniqueIDs: held}})
		}
		if rest := slices.DeleteFunc(r2IDs, func(id string) bool { return slices.Contains(held, id) }); len(rest) > 0 {
			jobs = append(jobs, river.InsertManyParams{Args: R2SyncArgs{UniqueIDs: rest, NotBefore: time.Now().Add(r2Debounce)}})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	if _, err := client.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("queue %d index jobs: %w", len(jobs), err)
	}
	return nil
}

// SightingsLockKey is the advisory lock key ("ferrysig") that the intake
// holds shared while it adds sightings, and an index_drain job exclusively
// while it checks that none is left before completing.
const SightingsLockKey int64 = 0x6665727279736967

// sqlDrainQueued tells whether an index_drain job is waiting or running: one
// that is will take the sightings being committed, so the intake queues
// none. (Reading River's table instead of a unique job: every intake commit
// would otherwise lock the same job row and wait on the one before.)
const sqlDrainQueued = `
SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = 'index_drain'
               AND state IN ('available', 'pending', 'running', 'retryable', 'scheduled'))`

// IndexDrainArgs indexes every sighting waiting (sighting_batches, and
// post_sightings rows from before it), in rounds of many posts and bots:
// one transaction, four statements and one reply job per round instead of
// per post.
type IndexDrainArgs struct{}

// Kind names the job.
func (IndexDrainArgs) Kind() string { return "index_drain" }

// InsertOpts: the index queue.
func (IndexDrainArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueIndex} }

// IndexDrainWorker drains sighting_batches (and post_sightings).
type IndexDrainWorker struct {
	river.WorkerDefaults[IndexDrainArgs]
	d *Deps
}

const (
	// drainRound is the most sightings one round indexes together.
	drainRound = 1024
	// drainSlice is how long one run keeps draining before it snoozes
	// (and runs again at once), well inside the job timeout and the stuck
	// job rescue.
	drainSlice = 30 * time.Second
)

// Work indexes rounds of sightings until none is left, then completes in a
// transaction that holds SightingsLockKey exclusively and sees no sighting:
// the intake holds the key shared while it adds sightings and queues no new
// job while this one runs, so a sighting is either seen here or finds this
// job finished and queues another. Rows another drain job has locked are
// that job's to finish (or, if it fails, to retry).
func (w *IndexDrainWorker) Work(ctx context.Context, job *river.Job[IndexDrainArgs]) error {
	if w.d.Index == nil {
		return nil
	}
	start := time.Now()
	for {
		n, err := w.round(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			if time.Since(start) > drainSlice {
				return river.JobSnooze(0)
			}
			continue
		}
		var done bool
		err = pgx.BeginFunc(ctx, w.d.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, SightingsLockKey); err != nil {
				return fmt.Errorf("lock sightings: %w", err)
			}
			var left bool
			if err := tx.QueryRow(ctx, `SELECT
				EXISTS (SELECT FROM sighting_batches LIMIT 1 FOR UPDATE SKIP LOCKED) OR
				EXISTS (SELECT FROM post_sightings WHERE error IS NULL LIMIT 1 FOR UPDATE SKIP LOCKED)`).Scan(&left); err != nil || left {
				return err // or a sighting arrived: go round again
			}
			if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
				return fmt.Errorf("complete index_drain job: %w", err)
			}
			done = true
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}

// sighting is one sighting taken by a round: its post, or for a
// post_sightings row written before migration 00008, the raw update it
// came in.
type sighting struct {
	chatID, messageID, botID int64
	post                     index.Post
	raw                      []byte
}

// NextRetry retries a failed drain (the database was unreachable, say)
// within seconds, not on River's growing backoff: while this job waits to
// retry, the intake queues no other, so every new sighting waits with it.
func (w *IndexDrainWorker) NextRetry(job *river.Job[IndexDrainArgs]) time.Time {
	d := time.Duration(1<<min(job.Attempt, 4)) * time.Second
	return time.Now().Add(min(d, 10*time.Second))
}

// round takes up to about drainRound sightings and indexes them in the same
// transaction; it returns how many it took. It takes the oldest rows of
// sighting_batches (a commit of the intake each), and only when there are
// none, post_sightings rows written before migration 00010.
func (w *IndexDrainWorker) round(ctx context.Context) (int, error) {
	var taken int
	err := inTxRetrying(ctx, w.d.Pool, func(tx pgx.Tx) error {
		var from []sighting
		var err error
		if from, err = takeBatches(ctx, tx); err == nil && len(from) == 0 {
			from, err = takeLegacySightings(ctx, tx)
		}
		if err != nil {
			return err
		}
		taken = len(from)
		var posts []index.Post
		var kept []sighting
		for _, s := range from {
			if post, ok := w.postOf(&s); ok {
				s.post = post
				posts, kept = append(posts, post), append(kept, s)
			} else {
				w.d.Logger.Warn("sighting not indexed: not a file post, or its bot is no longer configured",
					"chat_id", s.chatID, "message_id", s.messageID, "bot_id", s.botID)
			}
		}
		if len(posts) == 0 {
			return nil
		}
		posts, outs, err := w.indexIsolating(ctx, tx, posts, kept)
		if err != nil {
			return err
		}
		return queueIndexJobs(ctx, tx, river.ClientFromContext[pgx.Tx](ctx), w.d, posts, outs)
	})
	return taken, err
}

// sqlTakeBatches deletes and returns the oldest sighting_batches rows not
// locked by another drain, as many as hold fewer than $1 sightings before
// the last one taken (at least one row, at most 64).
const sqlTakeBatches = `
WITH locked AS (
    SELECT id, n FROM sighting_batches ORDER BY id LIMIT 64 FOR UPDATE SKIP LOCKED
), taken AS (
    SELECT id FROM (SELECT id, sum(n) OVER (ORDER BY id) - n AS before FROM locked) l WHERE before < $1
)
DELETE FROM sighting_batches b USING taken WHERE b.id = taken.id
RETURNING b.chat_ids, b.message_ids, b.bot_ids, b.file_unique_ids, b.file_ids, b.file_types, b.file_names,
          b.file_sizes, b.mime_types, b.dc_ids, b.captions, b.durations, b.widths, b.heights`

// takeBatches takes a round's batches of sightings (see sqlTakeBatches).
func takeBatches(ctx context.Context, tx pgx.Tx) ([]sighting, error) {
	rows, err := tx.Query(ctx, sqlTakeBatches, drainRound)
	if err != nil {
		return nil, fmt.Errorf("take sighting batches: %w", err)
	}
	defer rows.Close()
	var out []sighting
	for rows.Next() {
		var c sightingColumns
		if err := rows.Scan(&c.chats, &c.msgs, &c.bots, &c.uids, &c.fids, &c.types, &c.names,
			&c.sizes, &c.mimes, &c.dcs, &c.captions, &c.durations, &c.widths, &c.heights); err != nil {
			return nil, fmt.Errorf("read sighting batch: %w", err)
		}
		for i := range c.chats {
			out = append(out, sighting{chatID: c.chats[i], messageID: c.msgs[i], botID: c.bots[i], post: index.Post{
				UniqueID: c.uids[i], FileID: c.fids[i], Type: c.types[i], Name: c.names[i], Size: c.sizes[i],
				MimeType: c.mimes[i], DC: int(c.dcs[i]), Caption: c.captions[i],
				Duration: int(c.durations[i]), Width: int(c.widths[i]), Height: int(c.heights[i])}})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("take sighting batches: %w", err)
	}
	return out, nil
}

// takeLegacySightings takes up to drainRound post_sightings rows not kept
// aside with an error, in key order: rows the intake wrote one per sighting
// before migration 00010 (and before 00008, as raw updates).
func takeLegacySightings(ctx context.Context, tx pgx.Tx) ([]sighting, error) {
	rows, err := tx.Query(ctx, `
		DELETE FROM post_sightings WHERE ctid IN (
			SELECT ctid FROM post_sightings WHERE error IS NULL ORDER BY chat_id, message_id, bot_id LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING chat_id, message_id, bot_id, update_json,
			coalesce(file_unique_id, ''), coalesce(file_id, ''), coalesce(file_type, ''), coalesce(file_name, ''),
			coalesce(file_size, 0), coalesce(mime_type, ''), coalesce(dc_id, 0), coalesce(caption, ''),
			coalesce(duration, 0), coalesce(width, 0), coalesce(height, 0)`, drainRound)
	if err != nil {
		return nil, fmt.Errorf("take sightings: %w", err)
	}
	defer rows.Close()
	var out []sighting
	for rows.Next() {
		var s sighting
		p := &s.post
		if err := rows.Scan(&s.chatID, &s.messageID, &s.botID, &s.raw,
			&p.UniqueID, &p.FileID, &p.Type, &p.Name, &p.Size, &p.MimeType, &p.DC, &p.Caption,
			&p.Duration, &p.Width, &p.Height); err != nil {
			return nil, fmt.Errorf("read sighting: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("take sightings: %w", err)
	}
	return out, nil
}

// indexIsolating indexes posts together; when the data of one of them makes
// the batch fail, it indexes them one by one and puts each that fails back
// in post_sightings with its error, so one bad sighting cannot stall the
// index. It returns the posts recorded and their outcomes. Any other error
// (the database unreachable, say) fails the round, which is retried whole.
func (w *IndexDrainWorker) indexIsolating(ctx context.Context, tx pgx.Tx, posts []index.Post, from []sighting) ([]index.Post, []index.Outcome, error) {
	ix := w.d.Index
	outs, err := inSavepoint(ctx, tx, func(sp pgx.Tx) ([]index.Outcome, error) { return ix.IndexMany(ctx, sp, posts) })
	if !poisoned(err) {
		if err != nil {
			return nil, nil, fmt.Errorf("index %d sightings: %w", len(posts), err)
		}
		return posts, outs, nil
	}
	var good []index.Post
	var goodOuts []index.Outcome
	for i, p := range posts {
		out, err := inSavepoint(ctx, tx, func(sp pgx.Tx) ([]index.Outcome, error) { return ix.IndexMany(ctx, sp, []index.Post{p}) })
		switch {
		case err == nil:
			good, goodOuts = append(good, p), append(goodOuts, out[0])
		case poisoned(err):
			s, why := from[i], err.Error()
			w.d.Logger.Error("sighting cannot be indexed; kept in post_sightings with its error",
				"chat_id", s.chatID, "message_id", s.messageID, "bot_id", s.botID, "err", why)
			var kept sightingColumns
			kept.add(s.botID, s.post)
			if _, err := tx.Exec(ctx, sqlInsertSightings, append(kept.args(), []*string{&why})...); err != nil {
				return nil, nil, fmt.Errorf("keep failed sighting %d/%d: %w", s.chatID, s.messageID, err)
			}
		default:
			return nil, nil, fmt.Errorf("index sighting %d/%d: %w", p.ChatID, p.MessageID, err)
		}
	}
	return good, goodOuts, nil
}

// inSavepoint runs f in a savepoint of tx, rolled back if f fails.
func inSavepoint(ctx context.Context, tx pgx.Tx, f func(pgx.Tx) ([]index.Outcome, error)) ([]index.Outcome, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	outs, err := f(sp)
	if err != nil {
		_ = sp.Rollback(ctx)
		return nil, err
	}
	return outs, sp.Commit(ctx)
}

// poisoned tells an error caused by the data of a sighting (invalid, or
// breaking a data or integrity rule) from one of the database itself: the
// first fails the same way on every retry.
func poisoned(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, index.ErrInvalidPost) ||
		errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

// postOf makes the post of a sighting for the bot that saw it. One from a
// bot no longer configured, or (an old row's raw update) not a file post,
// has nothing to index.
func (w *IndexDrainWorker) postOf(s *sighting) (index.Post, bool) {
	b, ok := w.d.Bots.ByID(s.botID)
	if !ok {
		return index.Post{}, false
	}
	if s.raw == nil {
		p := s.post
		p.Slot, p.BotID, p.ChatID, p.MessageID = b.Slot, b.ID, s.chatID, s.messageID
		return p, true
	}
	var u models.Update
	if json.Unmarshal(s.raw, &u) != nil {
		return index.Post{}, false
	}
	msg := u.ChannelPost
	if msg == nil {
		msg = u.Message
	}
	return index.PostFromMessage(b.Slot, b.ID, msg)
}

// IndexReplyWorker sends the replies of a batch of indexed posts.
type IndexReplyWorker struct {
	river.WorkerDefaults[IndexReplyArgs]
	d *Deps
}

// replyParallel bounds the replies one job has in flight.
const replyParallel = 8

// Work sends every reply not yet recorded as sent, each recorded as soon as
// its send returns (see markSent), so a retry sends only the rest. A post
// Telegram refuses for good (400, 403: deleted, or the bot lost the channel)
// is logged and left; a 429 snoozes the job for the longest retry_after
// seen; any other failure, a failed mark included, retries the job.
func (w *IndexReplyWorker) Work(ctx context.Context, job *river.Job[IndexReplyArgs]) error {
	ix := w.d.Index
	want := job.Args.posts()
	refs := make([]index.PostRef, len(want))
	bots := make(map[index.PostRef]int64, len(want))
	for i, p := range want {
		refs[i], bots[p.PostRef] = p.PostRef, p.BotID
	}
	pending, err := ix.PendingReplies(ctx, refs)
	if err != nil {
		return err
	}
	errs := make([]error, len(pending))
	sent := make(chan index.SentReply, len(pending))
	marked := make(chan error, 1)
	go func() { marked <- markSent(context.WithoutCancel(ctx), ix, sent) }()
	sem := make(chan struct{}, replyParallel)
	var wg sync.WaitGroup
	for i, r := range pending {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			s, err := w.reply(ctx, bots[r.PostRef], r)
			if err == nil {
				sent <- s
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	close(sent)
	if err := <-marked; err != nil {
		errs = append(errs, err)
	}
	var wait time.Duration
	var failed []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if d, ok := botapi.RetryAfter(err); ok {
			wait = max(wait, d)
			continue
		}
		if botapi.Permanent(err) || errors.Is(err, errBotGone) {
			w.d.Logger.Warn("index reply refused; not retried", "err", err)
			continue
		}
		failed = append(failed, err)
	}
	if len(failed) > 0 {
		return errors.Join(failed...)
	}
	if wait > 0 {
		return river.JobSnooze(wait)
	}
	return nil
}

var errBotGone = errors.New("bot is no longer configured")

// markSent records the replies sent on sent until it is closed, in group
// commits: the sends that return while one mark is being written go in the
// next. A crash between a send and its mark repeats only the replies of the
// commit under way, and a job of many posts writes a few marks, not one
// each.
func markSent(ctx context.Context, ix *index.Indexer, sent <-chan index.SentReply) error {
	var errs []error
	for s := range sent {
		group := []index.SentReply{s}
	more:
		for {
			select {
			case s, ok := <-sent:
				if !ok {
					break more
				}
				group = append(group, s)
			default:
				break more
			}
		}
		if _, err := ix.MarkReplied(ctx, group); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reply sends one post's reply; the caller records it.
func (w *IndexReplyWorker) reply(ctx context.Context, botID int64, r index.PendingReply) (index.SentReply, error) {
	ix := w.d.Index
	b, ok := w.d.Bots.ByID(botID)
	if !ok {
		return index.SentReply{}, fmt.Errorf("reply to post %d/%d: bot %d: %w", r.ChatID, r.MessageID, botID, errBotGone)
	}
	text, button := index.FormatReply(r.Outcome, ix.ViewURL(r.Outcome.File.UniqueID))
	msg, err := b.Client.SendMessage(ctx, &bot.SendMessageParams{
		ChatID:             r.ChatID,
		Text:               text,
		ParseMode:          models.ParseModeHTML,
		ReplyParameters:    &models.ReplyParameters{MessageID: int(r.MessageID), AllowSendingWithoutReply: true},
		ReplyMarkup:        LinkButton(button.Text, button.URL),
		LinkPreviewOptions: &models.LinkPreviewOptions{IsDisabled: bot.True()},
	})
	if err != nil {
		return index.SentReply{}, fmt.Errorf("reply to post %d/%d: %w", r.ChatID, r.MessageID, botapi.Redact(err, b.Token))
	}
	return index.SentReply{PostRef: r.PostRef, ReplyMessageID: int64(msg.ID)}, nil
}

// R2SyncWorker writes files' records to R2; errors retry with backoff, so a
// bucket that is down catches up by itself when it returns.
type R2SyncWorker struct {
	river.WorkerDefaults[R2SyncArgs]
	d *Deps
}

// Work syncs every file of the job, eight writes at a time. A failed file
// fails the job, which retries them all: the files that did land are found
// synced and cost no R2 request.
func (w *R2SyncWorker) Work(ctx context.Context, job *river.Job[R2SyncArgs]) error {
	if wait := time.Until(job.Args.NotBefore); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return river.JobSnooze(max(time.Until(job.Args.NotBefore), 0)) // shutting down: no attempt used
		}
	}
	ids := job.Args.ids()
	if _, err := w.d.Index.SyncFiles(ctx, ids, 8); err != nil {
		return fmt.Errorf("r2 sync of %d files: %w", len(ids), err)
	}
	return nil
}

// NextRetry retries R2 writes at most a minute apart: an outage should end
// with the bucket caught up within a minute, not hours later.
func (w *R2SyncWorker) NextRetry(job *river.Job[R2SyncArgs]) time.Time {
	d := time.Duration(1<<min(job.Attempt, 6)) * time.Second
	return time.Now().Add(min(d, time.Minute))
}

// R2SweepWorker runs the sweep.
type R2SweepWorker struct {
	river.WorkerDefaults[R2SweepArgs]
	d *Deps
}

// Work syncs every file with a file_id written more than a minute ago and
// still not in R2.
func (w *R2SweepWorker) Work(ctx context.Context, _ *river.Job[R2SweepArgs]) error {
	n, err := w.d.Index.SyncPending(ctx, time.Minute, 4)
	if n > 0 {
		w.d.Logger.Info("r2 sweep", "synced", n, "err", err)
	}
	return err
}

// find answers /find <text> [page].
func (w *UpdateWorker) find(ctx context.Context, args string) (string, error) {
	if w.d.Index == nil {
		return "The file index is not enabled.", nil
	}
	text, page := args, 1
	if i := strings.LastIndex(args, " "); i > 0 {
		if _, err := fmt.Sscanf(args[i+1:], "%d", &page); err == nil && page > 0 {
			text = strings.TrimSpace(args[:i])
		} else {
			page = 1
		}
	}
	if text == "" {
		return "Usage: /find &lt;text&gt; [page]", nil
	}
	const pageSize = 10
	files, total, err := w.d.Index.Find(ctx, text, page-1, pageSize) // Find pages from 0
	if err != nil {
		return "", err
	}
	if total == 0 {
		return fmt.Sprintf("No file matches “%s”.", html.EscapeString(text)), nil
	}
	var sb strings.Builder
	pages := (total + pageSize - 1) / pageSize
	fmt.Fprintf(&sb, "<b>%d files</b> match “%s” (page %d of %d)\n\n", total, html.EscapeString(text), page, pages)
	for _, f := range files {
		fmt.Fprintf(&sb, "%s — %s\n<code>/get %s</code>\n", html.EscapeString(f.Name), index.HumanSize(f.Size), html.EscapeString(f.UniqueID))
	}
	if page < pages {
		fmt.Fprintf(&sb, "\nNext: <code>/find %s %d</code>", html.EscapeString(text), page+1)
	}
	return sb.String(), nil
}

// get answers /get <unique_id>: the file is sent to the admin by a bot that
// holds a file_id for it, least loaded first, failing over to the next.
func (w *UpdateWorker) get(ctx context.Context, chatID int64, uniqueID string) (string, error) {
	if w.d.Index == nil {
		return "The file index is not enabled.", nil
	}
	if uniqueID == "" {
		return "Usage: /get &lt;unique_id&gt;", nil
	}
	f, err := w.d.Index.GetFile(ctx, uniqueID)
	if err != nil {
		return fmt.Sprintf("No file %s in the index.", html.EscapeString(uniqueID)), nil
	}
	holders, err := w.d.Index.Holders(ctx, uniqueID)
	if err != nil {
		return "", err
	}
	_, err = w.d.Index.SendWithFailover(ctx, holders, func(ctx context.Context, h index.Holder) error {
		b, ok := w.d.Bots.ByID(h.BotID)
		if !ok {
			return fmt.Errorf("bot %d is not configured here", h.BotID)
		}
		return botapi.Redact(sendFileID(ctx, b, chatID, f.Type, h.FileID, f.Caption), b.Token)
	})
	if errors.Is(err, index.ErrNoHolder) {
		if d, ok := botapi.RetryAfter(err); ok {
			return "", river.JobSnooze(d)
		}
		return fmt.Sprintf("No bot could send %s right now.", html.EscapeString(f.Name)), nil
	}
	if err != nil {
		return "", err
	}
	return "", nil
}

// sendFileID sends a file by one bot's file_id with the method of its type.
func sendFileID(ctx context.Context, b *botapi.Bot, chatID int64, typ, fileID, caption string) error {
	in := &models.InputFileString{Data: fileID}
	var err error
	switch typ {
	case index.TypeVideo:
		_, err = b.Client.SendVideo(ctx, &bot.SendVideoParams{ChatID: chatID, Video: in, Caption: caption, SupportsStreaming: true})
	case index.TypeAudio:
		_, err = b.Client.SendAudio(ctx, &bot.SendAudioParams{ChatID: chatID, Audio: in, Caption: caption})
	case index.TypeAnimation:
		_, err = b.Client.SendAnimation(ctx, &bot.SendAnimationParams{ChatID: chatID, Animation: in, Caption: caption})
	default:
		_, err = b.Client.SendDocument(ctx, &bot.SendDocumentParams{ChatID: chatID, Document: in, Caption: caption})
	}
	return err
}
