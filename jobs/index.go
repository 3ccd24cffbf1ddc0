package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
)

// IndexReplyArgs answers the posts one index transaction claimed ("File
// Stored Successfully" or "File Already Exists"). It is inserted in that
// transaction, and a post is claimed once, so each post is in exactly one
// reply job however many bots saw it.
type IndexReplyArgs struct {
	Posts []ReplyPost `json:"posts"`
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
}

// Kind names the job.
func (R2SyncArgs) Kind() string { return "r2_sync" }

// InsertOpts: the R2 queue.
func (R2SyncArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueR2} }

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
	var outs []index.Outcome
	err := db.WithTx(ctx, d.DB, func(tx db.Tx) error {
		var err error
		if outs, err = d.Index.IndexMany(ctx, tx, posts); err != nil {
			return err
		}
		return queueIndexJobs(ctx, tx, d, posts, outs)
	})
	if err == nil {
		d.Index.Committed(outs)
	}
	return err
}

// queueIndexJobs inserts, in the transaction that recorded the sightings,
// one reply job for the posts it claimed and R2 jobs for the files with
// file_ids not yet in R2: at once for the files that every configured bot
// now holds, after r2Debounce for the others (see R2SyncArgs).
func queueIndexJobs(ctx context.Context, tx db.Tx, d *Deps, posts []index.Post, outs []index.Outcome) error {
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
	if _, err := d.River.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("queue %d index jobs: %w", len(jobs), err)
	}
	return nil
}

// IndexDrainArgs indexes every sighting waiting in sighting_batches, in
// rounds of many posts and bots: one transaction, four statements and one
// reply job per round instead of per post.
type IndexDrainArgs struct{}

// Kind names the job.
func (IndexDrainArgs) Kind() string { return "index_drain" }

// InsertOpts: the index queue.
func (IndexDrainArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueIndex} }

// IndexDrainWorker drains sighting_batches.
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
// transaction that holds the sightings lock exclusively and sees no
// sighting (SightingBatchLockEmpty): the intake holds the lock shared while
// it adds sightings and queues no new job while this one runs, so a
// sighting is either seen here or finds this job finished and queues
// another. Batches another drain job has locked are that job's to finish
// (or, if it fails, to retry).
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
		err = db.WithTx(ctx, w.d.DB, func(tx db.Tx) error {
			empty, err := tx.SightingBatchLockEmpty(ctx)
			if err != nil || !empty {
				return err // or a sighting arrived: go round again
			}
			if err := w.d.River.JobCompleteTx(ctx, tx, job.JobRow); err != nil {
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

// NextRetry retries a failed drain (the database was unreachable, say)
// within seconds, not on River's growing backoff: while this job waits to
// retry, the intake queues no other, so every new sighting waits with it.
func (w *IndexDrainWorker) NextRetry(job *river.Job[IndexDrainArgs]) time.Time {
	d := time.Duration(1<<min(job.Attempt, 4)) * time.Second
	return time.Now().Add(min(d, 10*time.Second))
}

// round takes up to about drainRound sightings (the oldest batches, a
// commit of the intake each) and indexes them in the same transaction; it
// returns how many it took.
func (w *IndexDrainWorker) round(ctx context.Context) (int, error) {
	var taken int
	var committed []index.Outcome
	err := db.WithTx(ctx, w.d.DB, func(tx db.Tx) error {
		committed = nil
		from, err := tx.SightingBatchTake(ctx, drainRound)
		if err != nil {
			return err
		}
		taken = len(from)
		var posts []index.Post
		for _, s := range from {
			if post, ok := w.postOf(s); ok {
				posts = append(posts, post)
			} else {
				logOf(ctx, w.d).Warn("sighting not indexed: its bot is no longer configured",
					"chat_id", s.ChatID, "message_id", s.MessageID, "bot_id", s.BotID)
			}
		}
		if len(posts) == 0 {
			return nil
		}
		posts, outs, err := w.indexIsolating(ctx, tx, posts)
		if err != nil {
			return err
		}
		committed = outs
		return queueIndexJobs(ctx, tx, w.d, posts, outs)
	})
	if err == nil {
		w.d.Index.Committed(committed)
	}
	return taken, err
}

// indexIsolating indexes posts together; when the data of one of them makes
// the batch fail, it indexes them one by one and keeps each that fails in
// sighting_failures with its error, so one bad sighting cannot stall the
// index. It returns the posts recorded and their outcomes. Any other error
// (the database unreachable, say) fails the round, which is retried whole.
func (w *IndexDrainWorker) indexIsolating(ctx context.Context, tx db.Tx, posts []index.Post) ([]index.Post, []index.Outcome, error) {
	ix := w.d.Index
	outs, err := inSavepoint(ctx, tx, func(sp db.Tx) ([]index.Outcome, error) { return ix.IndexMany(ctx, sp, posts) })
	if !poisoned(err) {
		if err != nil {
			return nil, nil, fmt.Errorf("index %d sightings: %w", len(posts), err)
		}
		return posts, outs, nil
	}
	var good []index.Post
	var goodOuts []index.Outcome
	var failed []db.SightingFailure
	for _, p := range posts {
		out, err := inSavepoint(ctx, tx, func(sp db.Tx) ([]index.Outcome, error) { return ix.IndexMany(ctx, sp, []index.Post{p}) })
		switch {
		case err == nil:
			good, goodOuts = append(good, p), append(goodOuts, out[0])
		case poisoned(err):
			logOf(ctx, w.d).Error("sighting cannot be indexed; kept in sighting_failures with its error",
				"chat_id", p.ChatID, "message_id", p.MessageID, "bot_id", p.BotID, "err", err)
			failed = append(failed, db.SightingFailure{Post: p, Error: err.Error()})
		default:
			return nil, nil, fmt.Errorf("index sighting %d/%d: %w", p.ChatID, p.MessageID, err)
		}
	}
	if len(failed) > 0 {
		if err := tx.SightingFailureInsert(ctx, failed); err != nil {
			return nil, nil, err
		}
	}
	return good, goodOuts, nil
}

// inSavepoint runs f in a savepoint of tx, rolled back if f fails.
func inSavepoint(ctx context.Context, tx db.Tx, f func(db.Tx) ([]index.Outcome, error)) ([]index.Outcome, error) {
	var outs []index.Outcome
	err := tx.Savepoint(ctx, func(sp db.Tx) error {
		var err error
		outs, err = f(sp)
		return err
	})
	return outs, err
}

// poisoned tells an error caused by the data of a sighting (invalid, or
// breaking a data or integrity rule) from one of the database itself: the
// first fails the same way on every retry.
func poisoned(err error) bool {
	return errors.Is(err, index.ErrInvalidPost) || db.IsDataError(err)
}

// postOf makes the post of a sighting for the bot that saw it, as that bot
// is configured now. One from a bot no longer configured has nothing to
// index.
func (w *IndexDrainWorker) postOf(s index.Post) (index.Post, bool) {
	b, ok := w.d.Bots.ByID(s.BotID)
	if !ok {
		return index.Post{}, false
	}
	s.Slot, s.BotID = b.Slot, b.ID
	return s, true
}

// IndexReplyWorker sends the replies of a batch of indexed posts.
type IndexReplyWorker struct {
	river.WorkerDefaults[IndexReplyArgs]
	d *Deps
}

const (
	// replyParallel bounds the replies one job has in flight.
	replyParallel = 8
	// replyTurns is the most send turns one take reserves, and replyAhead
	// how far ahead they may be: far enough that the sends of a busy chat
	// follow each other without a gap, near enough that another job's
	// replies or an upload's final message get a turn within seconds.
	replyTurns = 64
	replyAhead = 5 * time.Second
	// replySlice is how long one run sends before it snoozes (and runs
	// again at once), well inside the job timeout.
	replySlice = 40 * time.Second
)

// Work sends every reply not yet recorded as sent, each recorded as soon as
// its send returns (see markSent), so a retry sends only the rest. Every
// send takes a turn from the send budget first: a post's reply goes
// through whichever of the bots that see its chat (the bot that claimed
// it first) has the next turn, so N bots answer a busy channel N times as
// fast. When no turn is free within replyAhead the job snoozes until one
// is (no attempt used). A 429 blocks its bot in that chat for everyone and
// the reply goes through another turn. A post Telegram refuses for good
// (400, 403: deleted, or the bot lost the channel) is logged and left;
// any other failure, a failed mark included, retries the job.
func (w *IndexReplyWorker) Work(ctx context.Context, job *river.Job[IndexReplyArgs]) error {
	ix := w.d.Index
	want := job.Args.Posts
	refs := make([]index.PostRef, len(want))
	bots := make(map[index.PostRef]int64, len(want))
	for i, p := range want {
		refs[i], bots[p.PostRef] = p.PostRef, p.BotID
	}
	pending, err := ix.PendingReplies(ctx, refs)
	if err != nil {
		return err
	}
	var chats []int64
	byChat := map[int64][]index.PendingReply{}
	for _, r := range pending {
		if _, ok := byChat[r.ChatID]; !ok {
			chats = append(chats, r.ChatID)
		}
		byChat[r.ChatID] = append(byChat[r.ChatID], r)
	}
	sent := make(chan index.SentReply, len(pending))
	marked := make(chan error, 1)
	go func() { marked <- markSent(context.WithoutCancel(ctx), ix, sent) }()
	run := &replyRun{w: w, sent: sent, sem: make(chan struct{}, replyParallel), until: time.Now().Add(replySlice)}
	var wg sync.WaitGroup
	for _, chat := range chats {
		wg.Add(1)
		go func() { defer wg.Done(); run.chat(ctx, chat, byChat[chat], bots) }()
	}
	wg.Wait()
	close(sent)
	if err := <-marked; err != nil {
		run.failed = append(run.failed, err)
	}
	if len(run.failed) > 0 {
		return errors.Join(run.failed...)
	}
	if run.left > 0 {
		return river.JobSnooze(run.wait)
	}
	return nil
}

// replyRun is one run of a reply job: its chats are answered at once,
// each by its own loop, sharing the sends in flight.
type replyRun struct {
	w     *IndexReplyWorker
	sent  chan<- index.SentReply
	sem   chan struct{}
	until time.Time // the slice's end

	mu     sync.Mutex
	failed []error
	left   int           // replies left for the next run
	wait   time.Duration // how long until the next run
}

// senders are the bots that may answer in chat: the claimers of the posts
// (in order), then every configured bot that has seen one of their files
// there, which so is a member (an admin, in a channel).
func (run *replyRun) senders(ctx context.Context, chat int64, rs []index.PendingReply, claimers map[index.PostRef]int64) ([]int64, error) {
	d := run.w.d
	var ids []int64
	uids := make([]string, 0, len(rs))
	for _, r := range rs {
		if _, ok := d.Bots.ByID(claimers[r.PostRef]); ok {
			ids = append(ids, claimers[r.PostRef])
		}
		uids = append(uids, r.Outcome.File.UniqueID)
	}
	seen, err := d.DB.FileBotIDBotsInChat(ctx, chat, uids)
	if err != nil {
		return nil, err
	}
	for _, id := range seen {
		if _, ok := d.Bots.ByID(id); ok {
			ids = append(ids, id)
		}
	}
	var out []int64 // distinct, first occurrence first
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// chat sends the replies of one chat, taking turns in batches.
func (run *replyRun) chat(ctx context.Context, chat int64, queue []index.PendingReply, claimers map[index.PostRef]int64) {
	d := run.w.d
	fail := func(err error) {
		run.mu.Lock()
		run.failed = append(run.failed, err)
		run.mu.Unlock()
	}
	later := func(n int, wait time.Duration) {
		run.mu.Lock()
		run.left += n
		run.wait = max(run.wait, wait)
		run.mu.Unlock()
	}
	senders, err := run.senders(ctx, chat, queue, claimers)
	if err != nil {
		fail(err)
		return
	}
	if len(senders) == 0 {
		logOf(ctx, d).Warn("index replies not sent: no configured bot sees the chat", "chat_id", chat, "replies", len(queue))
		return
	}
	for len(queue) > 0 {
		if time.Now().After(run.until) {
			later(len(queue), 0)
			return
		}
		turns, next, err := d.budget().Take(ctx, chat, senders, min(len(queue), replyTurns), replyAhead)
		if err != nil {
			fail(err)
			return
		}
		if len(turns) == 0 {
			later(len(queue), time.Until(next))
			return
		}
		batch := queue[:len(turns)]
		queue = queue[len(turns):]
		errs := make([]error, len(turns))
		var wg sync.WaitGroup
		for i, t := range turns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if errs[i] = botpool.SleepUntil(ctx, t.At); errs[i] != nil {
					return
				}
				run.sem <- struct{}{}
				defer func() { <-run.sem }()
				s, err := run.w.reply(ctx, t.BotID, batch[i])
				if err == nil {
					run.sent <- s
				}
				errs[i] = floodCheck(ctx, d, t.BotID, chat, "sendMessage", err)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			switch {
			case err == nil:
			case isRetryAfter(err):
				queue = append(queue, batch[i]) // its bot is blocked now: another turn
			case errors.Is(err, bot.ErrorForbidden) && (len(senders) > 1 || !slices.Contains(senders, turns[i].BotID)):
				// The bot was removed from the chat: the others that see it
				// answer instead, for the rest of the run (a second 403 of
				// the same bot in this batch finds it dropped already).
				if slices.Contains(senders, turns[i].BotID) {
					senders = slices.DeleteFunc(senders, func(id int64) bool { return id == turns[i].BotID })
					logOf(ctx, d).Warn("index reply refused with 403; another bot that sees the chat answers",
						"bot_id", turns[i].BotID, "chat_id", chat, "err", err)
				}
				queue = append(queue, batch[i])
			case botapi.Permanent(err) || errors.Is(err, errBotGone):
				logOf(ctx, d).Warn("index reply refused; not retried", "err", err)
			default:
				fail(err)
			}
		}
		if ctx.Err() != nil {
			fail(ctx.Err())
			return
		}
	}
}

func isRetryAfter(err error) bool {
	_, ok := botapi.RetryAfter(err)
	return ok
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
	ids := job.Args.UniqueIDs
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
		logOf(ctx, w.d).Info("r2 sweep", "synced", n, "err", err)
	}
	return err
}
