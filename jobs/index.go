package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/index"
)

// IndexReplyArgs answers one indexed post ("File Stored Successfully" or
// "File Already Exists"). It is inserted in the transaction that claimed the
// post, so exactly one exists per post however many bots saw it.
type IndexReplyArgs struct {
	BotID     int64 `json:"bot_id"`
	ChatID    int64 `json:"chat_id" river:"unique"`
	MessageID int64 `json:"message_id" river:"unique"`
}

// Kind names the job.
func (IndexReplyArgs) Kind() string { return "index_reply" }

// InsertOpts: unique per post, on the index queue.
func (IndexReplyArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueIndex, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// R2SyncArgs writes one file's record to R2 (create, or merge new file_ids
// with compare-and-swap). Unique while not finished, so eleven bots seeing one
// post queue one write. River cannot leave "running" out of the unique
// states, so a sighting committed while the write runs queues nothing: the
// write loops while rows are still unsynced (index.SyncR2), and the periodic
// sweep catches the last moment's.
type R2SyncArgs struct {
	UniqueID string `json:"unique_id" river:"unique"`
}

// Kind names the job.
func (R2SyncArgs) Kind() string { return "r2_sync" }

// InsertOpts: unique until finished.
func (R2SyncArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueR2, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: unfinished}}
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
// update job (the intake normally routes them to index_post jobs); the reply
// and the R2 write are committed with the rows, as their own jobs.
func (w *UpdateWorker) indexPost(ctx context.Context, b *botapi.Bot, msg *models.Message) error {
	ix := w.d.Index
	if ix == nil {
		return nil
	}
	post, ok := index.PostFromMessage(b.Slot, b.ID, msg)
	if !ok {
		return nil
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	return pgx.BeginFunc(ctx, w.d.Pool, func(tx pgx.Tx) error {
		out, err := ix.Index(ctx, tx, post)
		if err != nil {
			return err
		}
		return queueIndexJobs(ctx, tx, client, w.d.R2Enabled, []index.Post{post}, []index.Outcome{out})
	})
}

// queueIndexJobs inserts, in the transaction that recorded the sightings,
// the reply job of the sighting that claimed its post and one R2 job per file
// that has file_ids not yet in R2.
func queueIndexJobs(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], r2Enabled bool, posts []index.Post, outs []index.Outcome) error {
	var jobs []river.InsertManyParams
	r2 := map[string]bool{}
	for i, out := range outs {
		p := posts[i]
		if out.Reply {
			jobs = append(jobs, river.InsertManyParams{Args: IndexReplyArgs{BotID: p.BotID, ChatID: p.ChatID, MessageID: p.MessageID}})
		}
		if out.NeedR2Write && r2Enabled && !r2[p.UniqueID] {
			r2[p.UniqueID] = true
			// A short delay lets the other bots' sightings of the post land
			// first: one create instead of a create and ten merges.
			jobs = append(jobs, river.InsertManyParams{Args: R2SyncArgs{UniqueID: p.UniqueID},
				InsertOpts: &river.InsertOpts{ScheduledAt: time.Now().Add(r2Debounce)}})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	if _, err := client.InsertManyTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("queue index jobs for %s: %w", posts[0].UniqueID, err)
	}
	return nil
}

// IndexPostArgs indexes every sighting of one channel post recorded by the
// intake. Unique until finished: eleven bots' sightings make one job.
type IndexPostArgs struct {
	ChatID    int64 `json:"chat_id" river:"unique"`
	MessageID int64 `json:"message_id" river:"unique"`
}

// Kind names the job.
func (IndexPostArgs) Kind() string { return "index_post" }

// InsertOpts: unique per post until finished, on the index queue.
func (IndexPostArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueIndex, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: unfinished}}
}

// IndexPostWorker indexes a post's sightings in one transaction.
type IndexPostWorker struct {
	river.WorkerDefaults[IndexPostArgs]
	d *Deps
}

// Work takes the post's sightings, indexes them together and queues the
// reply and R2 jobs with them. It completes in a transaction holding the
// post's advisory lock exclusively after seeing no sighting left; the intake
// holds it shared while adding sightings, so a sighting either is seen here
// or finds this job finished and queues a new one.
func (w *IndexPostWorker) Work(ctx context.Context, job *river.Job[IndexPostArgs]) error {
	a := job.Args
	client := river.ClientFromContext[pgx.Tx](ctx)
	for round := 0; round < 10; round++ {
		err := pgx.BeginFunc(ctx, w.d.Pool, func(tx pgx.Tx) error {
			return w.indexSightings(ctx, tx, client, a)
		})
		if err != nil {
			return err
		}
		var done bool
		err = pgx.BeginFunc(ctx, w.d.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(post_lock_key($1, $2))`, a.ChatID, a.MessageID); err != nil {
				return fmt.Errorf("lock post %d/%d: %w", a.ChatID, a.MessageID, err)
			}
			var left bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM post_sightings WHERE chat_id = $1 AND message_id = $2)`,
				a.ChatID, a.MessageID).Scan(&left)
			if err != nil || left {
				return err
			}
			if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
				return fmt.Errorf("complete index job for post %d/%d: %w", a.ChatID, a.MessageID, err)
			}
			done = true
			return nil
		})
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("post %d/%d: sightings still arriving after 10 rounds", a.ChatID, a.MessageID)
}

func (w *IndexPostWorker) indexSightings(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], a IndexPostArgs) error {
	rows, err := tx.Query(ctx, `
		DELETE FROM post_sightings WHERE chat_id = $1 AND message_id = $2
		RETURNING bot_id, update_json`, a.ChatID, a.MessageID)
	if err != nil {
		return fmt.Errorf("take sightings of post %d/%d: %w", a.ChatID, a.MessageID, err)
	}
	var posts []index.Post
	for rows.Next() {
		var botID int64
		var raw []byte
		if err := rows.Scan(&botID, &raw); err != nil {
			rows.Close()
			return fmt.Errorf("read sighting: %w", err)
		}
		b, ok := w.d.Bots.ByID(botID)
		var u models.Update
		if !ok || json.Unmarshal(raw, &u) != nil {
			continue // a bot removed from the config, or not an update: nothing to index
		}
		msg := u.ChannelPost
		if msg == nil {
			msg = u.Message
		}
		if p, ok := index.PostFromMessage(b.Slot, b.ID, msg); ok {
			posts = append(posts, p)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read sightings: %w", err)
	}
	if len(posts) == 0 {
		return nil
	}
	outs, err := w.d.Index.IndexMany(ctx, tx, posts)
	if err != nil {
		return err
	}
	return queueIndexJobs(ctx, tx, client, w.d.R2Enabled, posts, outs)
}

// IndexReplyWorker sends the one reply of an indexed post.
type IndexReplyWorker struct {
	river.WorkerDefaults[IndexReplyArgs]
	d *Deps
}

// Work sends the reply unless it was already recorded as sent.
func (w *IndexReplyWorker) Work(ctx context.Context, job *river.Job[IndexReplyArgs]) error {
	a := job.Args
	ix := w.d.Index
	pending, err := ix.ReplyPending(ctx, a.ChatID, a.MessageID)
	if err != nil || !pending {
		return err
	}
	out, err := ix.Outcome(ctx, a.ChatID, a.MessageID)
	if err != nil {
		return err
	}
	b, ok := w.d.Bots.ByID(a.BotID)
	if !ok {
		return river.JobCancel(fmt.Errorf("bot %d is no longer configured", a.BotID))
	}
	text, button := index.FormatReply(out, ix.ViewURL(out.File.UniqueID))
	msg, err := b.Client.SendMessage(ctx, &bot.SendMessageParams{
		ChatID:             a.ChatID,
		Text:               text,
		ParseMode:          models.ParseModeHTML,
		ReplyParameters:    &models.ReplyParameters{MessageID: int(a.MessageID), AllowSendingWithoutReply: true},
		ReplyMarkup:        LinkButton(button.Text, button.URL),
		LinkPreviewOptions: &models.LinkPreviewOptions{IsDisabled: bot.True()},
	})
	if err != nil {
		return outcome(fmt.Errorf("reply to post %d/%d: %w", a.ChatID, a.MessageID, botapi.Redact(err, b.Token)))
	}
	// A crash between the send and this mark repeats the reply once; the
	// window is one round trip.
	_, err = ix.MarkReplied(context.WithoutCancel(ctx), a.ChatID, a.MessageID, int64(msg.ID))
	return err
}

// R2SyncWorker writes a file's record to R2; errors retry with backoff, so a
// bucket that is down catches up by itself when it returns.
type R2SyncWorker struct {
	river.WorkerDefaults[R2SyncArgs]
	d *Deps
}

// Work syncs one file. The job completes in the transaction that saw nothing
// left to write: that transaction first locks the file's row, which waits for
// every sighting still in flight (each holds a key-share lock on it through
// its foreign key), so a sighting either lands before the last check or
// commits after the job is complete and queues a job of its own. None is left
// waiting for the sweep.
func (w *R2SyncWorker) Work(ctx context.Context, job *river.Job[R2SyncArgs]) error {
	id := job.Args.UniqueID
	for round := 0; round < 10; round++ {
		if err := w.d.Index.SyncR2(ctx, id); errors.Is(err, index.ErrUnknownFile) {
			return river.JobCancel(err)
		} else if err != nil {
			return err
		}
		var done bool
		err := pgx.BeginFunc(ctx, w.d.Pool, func(tx pgx.Tx) error {
			pending, err := w.d.Index.LockPending(ctx, tx, id)
			if err != nil || pending {
				return err
			}
			if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
				return fmt.Errorf("complete r2 job for %s: %w", id, err)
			}
			done = true
			return nil
		})
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("r2 sync %s: file_ids still arriving after 10 rounds", id)
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
