// Package index is ferry's channel file index and dedupe engine: every file
// posted where one of the bots is admin is recorded once per file (keyed by
// Telegram's file_unique_id) with each bot's own file_id, decided "new" or
// "already exists" against Postgres and the shared R2 bucket, answered
// exactly once per post however many bots see it, and mirrored to R2 in the
// seed's JSON format by a separate, retryable step (SyncR2).
//
// Postgres is the source of truth. The engine does no Bot API calls and
// inserts no jobs: Index runs inside the caller's transaction so the caller
// can commit its reply job and R2 job atomically with the rows.
package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/r2"
)

// Checker looks a file up in the shared bucket; *r2.Store is one. A missing
// object must be r2.ErrNotFound; any other error means "R2 unreachable" and
// the file is treated as new.
type Checker interface {
	Get(ctx context.Context, uniqueID string) (r2.Record, string, error)
}

// Writer writes records to the shared bucket; *r2.Store is one.
type Writer interface {
	Create(ctx context.Context, rec r2.Record) error
	Merge(ctx context.Context, rec r2.Record) (r2.Record, error)
}

// Options configures an Indexer. Only Pool is required: without Checker the
// dedupe uses the database alone, and without Writer SyncR2 fails (so a job
// that calls it retries until R2 is configured).
type Options struct {
	Pool   *pgxpool.Pool
	Check  Checker // usually the *r2.Store; nil when R2 is not configured
	Write  Writer  // usually the same *r2.Store
	Logger *slog.Logger
	// CheckTimeout bounds the R2 lookup of a file not yet in the database
	// (default 3 s). Past it the file is treated as new, as when R2 is down.
	CheckTimeout time.Duration
	// PublicURL is ferry's public base URL (PUBLIC_URL); View buttons link to
	// PublicURL + "/f/" + unique_id.
	PublicURL string
	// R2PublicURL, when set, is used for View buttons instead (the object's
	// address under R2_PUBLIC_URL). It is a function so the *r2.Store's
	// PublicURL method can be passed as is.
	R2PublicURL func(uniqueID string) string
}

// Indexer is the engine. It is safe for concurrent use.
type Indexer struct {
	pool         *pgxpool.Pool
	check        Checker
	write        Writer
	log          *slog.Logger
	checkTimeout time.Duration
	publicURL    string
	r2PublicURL  func(string) string
}

// New builds an Indexer.
func New(opts Options) (*Indexer, error) {
	if opts.Pool == nil {
		return nil, errors.New("index: a database pool is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ct := opts.CheckTimeout
	if ct <= 0 {
		ct = 3 * time.Second
	}
	return &Indexer{
		pool:         opts.Pool,
		check:        opts.Check,
		write:        opts.Write,
		log:          log,
		checkTimeout: ct,
		publicURL:    trimSlash(opts.PublicURL),
		r2PublicURL:  opts.R2PublicURL,
	}, nil
}

// File is a row of the files table: the file's metadata as first seen.
type File struct {
	UniqueID  string
	Name      string
	Size      int64
	MimeType  string
	Type      string
	DC        int
	Caption   string
	Duration  int
	Width     int
	Height    int
	ChatID    int64 // first post's chat
	MessageID int64 // first post's message
	Origin    string
	CreatedAt time.Time
}

// Outcome is what Index decided for one bot's sighting of a post.
type Outcome struct {
	// Existing: the file was already known (in this database before this
	// post, or in R2 from another deployment): reply "File Already Exists".
	// It is the decision of the bot that claimed the post, so every bot
	// reports the same value for the same post.
	Existing bool
	// Reply is true for exactly one call per post: the one whose transaction
	// claimed it. Insert the reply job in that same transaction; a retry of
	// a committed call returns false (its reply job is already committed).
	Reply bool
	// ClaimedBySlot is the slot of the bot that owns the reply.
	ClaimedBySlot int
	// File is the file's row (first sighting's metadata).
	File File
	// NeedR2Write is true when this bot's file_id is not yet in R2: insert
	// the R2 job (unique per file while pending) in the same transaction.
	NeedR2Write bool
	// R2Checked tells whether R2 was consulted, and R2Error why the check
	// failed (the file was then treated as new). For logs and metrics.
	R2Checked bool
	R2Error   error
}

// ErrInvalidPost is returned for a Post missing what the index needs.
var ErrInvalidPost = errors.New("index: invalid post")

func validPost(p Post) error {
	switch {
	case p.Slot < 1:
		return fmt.Errorf("%w: slot %d", ErrInvalidPost, p.Slot)
	case p.UniqueID == "" || p.FileID == "":
		return fmt.Errorf("%w: empty file_unique_id or file_id", ErrInvalidPost)
	}
	switch p.Type {
	case TypeVideo, TypeAudio, TypeDocument, TypeAnimation:
	default:
		return fmt.Errorf("%w: type %q", ErrInvalidPost, p.Type)
	}
	return nil
}

const sqlClaim = `
INSERT INTO channel_posts (chat_id, message_id, file_unique_id, claimed_by_slot, claimed_by_bot, existing)
VALUES ($1, $2, $3, $4, $5, EXISTS (SELECT 1 FROM files WHERE file_unique_id = $3))
ON CONFLICT (chat_id, message_id) DO NOTHING
RETURNING existing`

const sqlInsertFile = `
INSERT INTO files (file_unique_id, file_name, file_size, mime_type, file_type, dc_id, caption,
                   duration, width, height, first_chat_id, first_message_id, origin)
VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, 0), nullif($9, 0), nullif($10, 0), $11, $12, $13)
ON CONFLICT (file_unique_id) DO NOTHING`

// The claimer writes the file row and records its decision in one
// statement: the file existed unless this insert created its row, and a
// row created from an R2 hit (origin 'r2') counts as existing. When the
// insert did nothing the row was already there (or a concurrent post's
// transaction created it and committed while this one waited on it).
const sqlClaimerFile = `
WITH ins AS (` + sqlInsertFile + `
    RETURNING origin
)
UPDATE channel_posts
SET existing = coalesce((SELECT origin = 'r2' FROM ins), true)
WHERE chat_id = $11 AND message_id = $12`

const fileColumns = `f.file_unique_id, f.file_name, f.file_size, f.mime_type, f.file_type, f.dc_id, f.caption,
       coalesce(f.duration, 0), coalesce(f.width, 0), coalesce(f.height, 0),
       f.first_chat_id, f.first_message_id, f.origin, f.created_at`

// This bot's file_id row, and the outcome read back, in one statement. A
// repeat with the same file_id changes nothing; a new file_id for the slot
// (a re-sent file, or the slot now holds another bot) replaces it and marks
// it for R2 again. The insert is guarded on the file row existing, so an
// odd post whose claim names another file (an edited message) yields no
// row instead of a foreign-key error that would abort the transaction.
const sqlBotIDAndResult = `
WITH up AS (
    INSERT INTO file_bot_ids (file_unique_id, slot, bot_id, file_id, chat_id, message_id)
    SELECT $4, $3, $5, $6, $1, $2 WHERE EXISTS (SELECT 1 FROM files WHERE file_unique_id = $4)
    ON CONFLICT (file_unique_id, slot) DO UPDATE
    SET bot_id = EXCLUDED.bot_id, file_id = EXCLUDED.file_id, chat_id = EXCLUDED.chat_id,
        message_id = EXCLUDED.message_id, updated_at = now(), r2_synced_at = NULL
    WHERE file_bot_ids.file_id <> EXCLUDED.file_id OR file_bot_ids.bot_id <> EXCLUDED.bot_id
    RETURNING 1
)
SELECT ` + fileColumns + `,
       cp.existing, cp.claimed_by_slot,
       EXISTS (SELECT 1 FROM up) OR coalesce(
           (SELECT b.r2_synced_at IS NULL FROM file_bot_ids b WHERE b.file_unique_id = f.file_unique_id AND b.slot = $3),
           false)
FROM channel_posts cp
JOIN files f ON f.file_unique_id = $4
WHERE cp.chat_id = $1 AND cp.message_id = $2`

// Index records one bot's sighting of a post inside tx and decides the
// reply. The caller commits tx (with its reply and R2 jobs) or rolls it back
// on error; a rolled-back call leaves nothing behind and can simply be
// retried, which is how a database failure is survived.
//
// Concurrency: the first transaction to insert the post's claim row owns
// the reply and makes the dedupe decision (asking R2 only when the file is
// not in the database); the other bots' transactions wait on that row and
// then only add their own file_id row. Eleven bots seeing one post thus
// cost one R2 lookup and produce one reply.
//
// Cost: one pipelined round trip (claim + file_id row + read back) for the
// other bots and for a claimer of a file already known; a claimer of a
// file new to the database adds the R2 lookup and a second round trip.
func (ix *Indexer) Index(ctx context.Context, tx pgx.Tx, p Post) (Outcome, error) {
	if err := validPost(p); err != nil {
		return Outcome{}, err
	}
	var out Outcome

	// Optimistic first round: claim and record together.
	b := &pgx.Batch{}
	b.Queue(sqlClaim, p.ChatID, p.MessageID, p.UniqueID, p.Slot, p.BotID)
	b.Queue(sqlBotIDAndResult, p.ChatID, p.MessageID, p.Slot, p.UniqueID, p.BotID, p.FileID)
	br := tx.SendBatch(ctx, b)
	var localExisting bool
	err := br.QueryRow().Scan(&localExisting)
	switch {
	case err == nil:
		out.Reply = true
	case errors.Is(err, pgx.ErrNoRows):
	default:
		br.Close()
		return Outcome{}, fmt.Errorf("index: claim post %d/%d: %w", p.ChatID, p.MessageID, err)
	}
	found, err := scanResult(br.QueryRow(), &out)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("index: record slot %d for %s, post %d/%d: %w", p.Slot, p.UniqueID, p.ChatID, p.MessageID, err)
	}
	newFile := out.Reply && !localExisting
	if found && !newFile {
		return out, nil
	}

	// Slow round: this bot claimed a post whose file the database did not
	// have (ask R2, then write the file row and the decision), or the
	// post's claim names another file (an edited message).
	origin := "local"
	if newFile && ix.check != nil {
		out.R2Checked = true
		inR2, err := ix.checkR2(ctx, p.UniqueID)
		switch {
		case err != nil:
			out.R2Error = err
			ix.log.WarnContext(ctx, "R2 check failed; treating file as new",
				slog.String("unique_id", p.UniqueID), slog.Any("err", err))
		case inR2:
			origin = "r2"
		}
	}
	fileArgs := []any{p.UniqueID, p.Name, p.Size, p.MimeType, p.Type, p.DC, p.Caption,
		p.Duration, p.Width, p.Height, p.ChatID, p.MessageID, origin}
	b = &pgx.Batch{}
	if newFile {
		b.Queue(sqlClaimerFile, fileArgs...)
	} else {
		b.Queue(sqlInsertFile, fileArgs...)
	}
	b.Queue(sqlBotIDAndResult, p.ChatID, p.MessageID, p.Slot, p.UniqueID, p.BotID, p.FileID)
	br = tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return Outcome{}, fmt.Errorf("index: write file %s for post %d/%d: %w", p.UniqueID, p.ChatID, p.MessageID, err)
	}
	found, err = scanResult(br.QueryRow(), &out)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil && !found {
		err = errors.New("no row after writing the file")
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("index: record slot %d for %s, post %d/%d: %w", p.Slot, p.UniqueID, p.ChatID, p.MessageID, err)
	}
	return out, nil
}

// scanResult reads sqlBotIDAndResult's row into out; found is false when
// there was none (the file row does not exist yet).
func scanResult(row pgx.Row, out *Outcome) (found bool, err error) {
	f := &out.File
	var pending bool
	err = row.Scan(&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
		&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &f.CreatedAt,
		&out.Existing, &out.ClaimedBySlot, &pending)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// A later round may find the row already written by the first: keep
	// "needs R2" from either.
	out.NeedR2Write = out.NeedR2Write || pending
	return true, nil
}

// IndexCommit is Index in a transaction of its own, for callers with no
// jobs to commit alongside (tools, tests, benchmarks).
func (ix *Indexer) IndexCommit(ctx context.Context, p Post) (Outcome, error) {
	var out Outcome
	err := pgx.BeginFunc(ctx, ix.pool, func(tx pgx.Tx) error {
		var err error
		out, err = ix.Index(ctx, tx, p)
		return err
	})
	if err != nil {
		return Outcome{}, err
	}
	return out, nil
}

// checkR2 reports whether the bucket has the file. Any failure other than
// "not found" is returned so the caller treats the file as new.
func (ix *Indexer) checkR2(ctx context.Context, uniqueID string) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, ix.checkTimeout)
	defer cancel()
	_, _, err := ix.check.Get(cctx, uniqueID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, r2.ErrNotFound):
		return false, nil
	default:
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("index: check R2 for %s: %w", uniqueID, err)
	}
}

// MarkReplied records that the reply to a post was sent (replyMessageID is
// the bot's reply message). It returns false when the post was already
// marked, so a reply job that is retried after a crash can tell.
func (ix *Indexer) MarkReplied(ctx context.Context, chatID, messageID, replyMessageID int64) (bool, error) {
	tag, err := ix.pool.Exec(ctx, `
UPDATE channel_posts SET replied_at = now(), reply_message_id = $3
WHERE chat_id = $1 AND message_id = $2 AND replied_at IS NULL`, chatID, messageID, replyMessageID)
	if err != nil {
		return false, fmt.Errorf("index: mark post %d/%d replied: %w", chatID, messageID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReplyPending reports whether a claimed post still has no recorded reply;
// a reply job checks it before sending so a retry after a recorded send
// does not answer twice.
func (ix *Indexer) ReplyPending(ctx context.Context, chatID, messageID int64) (bool, error) {
	var pending bool
	err := ix.pool.QueryRow(ctx, `SELECT replied_at IS NULL FROM channel_posts WHERE chat_id = $1 AND message_id = $2`,
		chatID, messageID).Scan(&pending)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("index: reply state of post %d/%d: %w", chatID, messageID, err)
	}
	return pending, nil
}

// Outcome reloads the decision for a post from the database, for a reply
// job that carries only the post's ids.
func (ix *Indexer) Outcome(ctx context.Context, chatID, messageID int64) (Outcome, error) {
	var out Outcome
	f := &out.File
	err := ix.pool.QueryRow(ctx, `
SELECT `+fileColumns+`, cp.existing, cp.claimed_by_slot
FROM channel_posts cp JOIN files f ON f.file_unique_id = cp.file_unique_id
WHERE cp.chat_id = $1 AND cp.message_id = $2`, chatID, messageID).Scan(
		&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
		&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &f.CreatedAt,
		&out.Existing, &out.ClaimedBySlot)
	if err != nil {
		return Outcome{}, fmt.Errorf("index: load post %d/%d: %w", chatID, messageID, err)
	}
	return out, nil
}

// GetFile loads one file's row; pgx.ErrNoRows (wrapped) when unknown.
func (ix *Indexer) GetFile(ctx context.Context, uniqueID string) (File, error) {
	var f File
	err := ix.pool.QueryRow(ctx, `SELECT `+fileColumns+` FROM files f WHERE f.file_unique_id = $1`, uniqueID).Scan(
		&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
		&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &f.CreatedAt)
	if err != nil {
		return File{}, fmt.Errorf("index: file %s: %w", uniqueID, err)
	}
	return f, nil
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// IndexMany is Index for many sightings in one transaction: the claims and
// file_id rows of all of them go to Postgres in one pipelined round trip,
// the R2 lookups for claimed new files run in parallel, and one more round
// trip records those files. It exists for throughput (one commit and two
// round trips for a whole batch instead of three round trips per
// sighting); the outcomes are the same as calling Index for each post in
// order of (chat, message, slot), and are returned in the order of posts.
//
// Several sightings of the same post may be in one batch (the first claims
// it). Concurrent batches that hold the same bot's file in different posts
// can deadlock in rare interleavings; Postgres then aborts one with
// SQLSTATE 40P01 and the caller retries it, as with any database error.
func (ix *Indexer) IndexMany(ctx context.Context, tx pgx.Tx, posts []Post) ([]Outcome, error) {
	for i, p := range posts {
		if err := validPost(p); err != nil {
			return nil, fmt.Errorf("post %d: %w", i, err)
		}
	}
	order := make([]int, len(posts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		pa, pb := posts[order[a]], posts[order[b]]
		if pa.ChatID != pb.ChatID {
			return pa.ChatID < pb.ChatID
		}
		if pa.MessageID != pb.MessageID {
			return pa.MessageID < pb.MessageID
		}
		return pa.Slot < pb.Slot
	})
	outs := make([]Outcome, len(posts))
	localExisting := make([]bool, len(posts))
	found := make([]bool, len(posts))

	b := &pgx.Batch{}
	for _, i := range order {
		p := posts[i]
		b.Queue(sqlClaim, p.ChatID, p.MessageID, p.UniqueID, p.Slot, p.BotID)
		b.Queue(sqlBotIDAndResult, p.ChatID, p.MessageID, p.Slot, p.UniqueID, p.BotID, p.FileID)
	}
	br := tx.SendBatch(ctx, b)
	for _, i := range order {
		p := posts[i]
		err := br.QueryRow().Scan(&localExisting[i])
		switch {
		case err == nil:
			outs[i].Reply = true
		case errors.Is(err, pgx.ErrNoRows):
		default:
			br.Close()
			return nil, fmt.Errorf("index: claim post %d/%d: %w", p.ChatID, p.MessageID, err)
		}
		ok, err := scanResult(br.QueryRow(), &outs[i])
		if err != nil {
			br.Close()
			return nil, fmt.Errorf("index: record slot %d for %s, post %d/%d: %w", p.Slot, p.UniqueID, p.ChatID, p.MessageID, err)
		}
		found[i] = ok
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("index: batch of %d sightings: %w", len(posts), err)
	}

	// Second round: claimers of files new to the database (after asking
	// R2), then every sighting whose file row did not exist yet. Claimers
	// go first so their decision is recorded before another sighting of
	// the same post could create the file row as "local".
	var claimers, others []int
	for _, i := range order {
		switch {
		case outs[i].Reply && !localExisting[i]:
			claimers = append(claimers, i)
		case !found[i]:
			others = append(others, i)
		}
	}
	if len(claimers) == 0 && len(others) == 0 {
		return outs, nil
	}
	origins := make([]string, len(posts))
	if ix.check != nil && len(claimers) > 0 {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, i := range claimers {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				outs[i].R2Checked = true
				inR2, err := ix.checkR2(ctx, posts[i].UniqueID)
				switch {
				case err != nil:
					outs[i].R2Error = err
				case inR2:
					origins[i] = "r2"
				}
			}()
		}
		wg.Wait()
		for _, i := range claimers {
			if outs[i].R2Error != nil {
				ix.log.WarnContext(ctx, "R2 check failed; treating file as new",
					slog.String("unique_id", posts[i].UniqueID), slog.Any("err", outs[i].R2Error))
			}
		}
	}
	b = &pgx.Batch{}
	second := append(claimers, others...)
	for k, i := range second {
		p := posts[i]
		origin := origins[i]
		if origin == "" {
			origin = "local"
		}
		args := []any{p.UniqueID, p.Name, p.Size, p.MimeType, p.Type, p.DC, p.Caption,
			p.Duration, p.Width, p.Height, p.ChatID, p.MessageID, origin}
		if k < len(claimers) {
			b.Queue(sqlClaimerFile, args...)
		} else {
			b.Queue(sqlInsertFile, args...)
		}
	}
	// Read back after all file rows are written, so a non-claimer sighting
	// of a post whose claimer is in this batch sees the claimer's decision.
	for _, i := range second {
		p := posts[i]
		b.Queue(sqlBotIDAndResult, p.ChatID, p.MessageID, p.Slot, p.UniqueID, p.BotID, p.FileID)
	}
	br = tx.SendBatch(ctx, b)
	for _, i := range second {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("index: write file %s: %w", posts[i].UniqueID, err)
		}
	}
	for _, i := range second {
		ok, err := scanResult(br.QueryRow(), &outs[i])
		if err == nil && !ok {
			err = errors.New("no row after writing the file")
		}
		if err != nil {
			br.Close()
			return nil, fmt.Errorf("index: record slot %d for %s: %w", posts[i].Slot, posts[i].UniqueID, err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("index: batch of %d sightings: %w", len(posts), err)
	}
	// Sightings found in the first round but of a post whose claimer was
	// in the second round saw the decision before it was recorded: reload.
	claimed := map[[2]int64]bool{}
	for _, i := range claimers {
		claimed[[2]int64{posts[i].ChatID, posts[i].MessageID}] = true
	}
	for _, i := range order {
		p := posts[i]
		if found[i] && !(outs[i].Reply && !localExisting[i]) && claimed[[2]int64{p.ChatID, p.MessageID}] {
			var existing bool
			if err := tx.QueryRow(ctx, `SELECT existing FROM channel_posts WHERE chat_id = $1 AND message_id = $2`,
				p.ChatID, p.MessageID).Scan(&existing); err != nil {
				return nil, fmt.Errorf("index: reload post %d/%d: %w", p.ChatID, p.MessageID, err)
			}
			outs[i].Existing = existing
		}
	}
	return outs, nil
}
