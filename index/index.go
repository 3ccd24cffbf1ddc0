// Package index is ferry's channel file index and dedupe engine: every file
// posted where one of the bots is admin is recorded once per file (keyed by
// Telegram's file_unique_id) with each bot's own file_id, decided "new" or
// "already exists" against the database and the shared R2 bucket, answered
// exactly once per post however many bots see it, and mirrored to R2 in the
// seed's JSON format by a separate, retryable step (SyncR2).
//
// The database is the source of truth. The engine does no Bot API calls and
// inserts no jobs: Index runs inside the caller's transaction so the caller
// can commit its reply job and R2 job atomically with the rows.
package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferry-dev/ferry/db"
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

// Options configures an Indexer. Only DB is required: without Checker the
// dedupe uses the database alone, and without Writer SyncR2 fails (so a job
// that calls it retries until R2 is configured).
type Options struct {
	DB     db.Driver
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
	// PageURL, when set, gives the View button a freshly signed file page
	// link (links.Signer.PageURL); it wins over R2PublicURL.
	PageURL func(uniqueID string) string
	// Metrics counts committed outcomes (Committed); nil counts nothing.
	Metrics *Metrics
}

// Indexer is the engine. It is safe for concurrent use.
type Indexer struct {
	db           db.Driver
	check        Checker
	write        Writer
	log          *slog.Logger
	checkTimeout time.Duration
	publicURL    string
	r2PublicURL  func(string) string
	pageURL      func(string) string
	metrics      *Metrics
}

// New builds an Indexer.
func New(opts Options) (*Indexer, error) {
	if opts.DB == nil {
		return nil, errors.New("index: a database is required")
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
		db:           opts.DB,
		check:        opts.Check,
		write:        opts.Write,
		log:          log,
		checkTimeout: ct,
		publicURL:    trimSlash(opts.PublicURL),
		r2PublicURL:  opts.R2PublicURL,
		pageURL:      opts.PageURL,
		metrics:      opts.Metrics,
	}, nil
}

// File is a file's row: its metadata as first seen.
type File = db.File

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
	// NeedR2Write is true when this call changed the file's file_ids (the
	// file is marked in r2_pending): insert one R2 job for such files in the
	// same transaction. A sighting that changed nothing needs none; the
	// transaction that made the change queued one.
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

// Index records one bot's sighting of a post inside tx and decides the
// reply: IndexMany for one post. The caller commits tx (with its reply and
// R2 jobs) or rolls it back on error; a rolled-back call leaves nothing
// behind and can simply be retried, which is how a database failure is
// survived.
func (ix *Indexer) Index(ctx context.Context, tx db.Tx, p Post) (Outcome, error) {
	outs, err := ix.IndexMany(ctx, tx, []Post{p})
	if err != nil {
		return Outcome{}, err
	}
	return outs[0], nil
}

// IndexCommit is Index in a transaction of its own, for callers with no
// jobs to commit alongside (tools, tests, benchmarks).
func (ix *Indexer) IndexCommit(ctx context.Context, p Post) (Outcome, error) {
	var out Outcome
	err := db.WithTx(ctx, ix.db, func(tx db.Tx) error {
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

// SentReply is a post whose reply was sent, and the bot's reply message.
type SentReply = db.PostReplied

// MarkReplied records that the replies to posts were sent, in one
// statement. It returns the posts it marked: a post already marked is left
// out, so a reply job retried after a crash can tell. The marks need not
// wait for the disk (see db.Executor.PostMarkRepliedMany): a reply job
// marks posts as their sends return, and the job's own completion is
// written after them.
func (ix *Indexer) MarkReplied(ctx context.Context, sent []SentReply) ([]PostRef, error) {
	marked, err := ix.db.PostMarkRepliedMany(ctx, sent)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return marked, nil
}

// PostRef names a channel post.
type PostRef = db.PostRef

// PendingReply is a claimed post whose reply is not yet recorded as sent,
// with the decision to report.
type PendingReply struct {
	PostRef
	Outcome Outcome
}

// PendingReplies loads, in one query, the decision of each of posts that
// still has no recorded reply; posts already answered (a retried job) or
// unknown are left out, so a reply is never sent twice by a retry.
func (ix *Indexer) PendingReplies(ctx context.Context, posts []PostRef) ([]PendingReply, error) {
	rows, err := ix.db.PostPendingReplyMany(ctx, posts)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	out := make([]PendingReply, len(rows))
	for i, r := range rows {
		out[i] = PendingReply{PostRef: r.PostRef, Outcome: Outcome{File: r.File, Existing: r.Existing, ClaimedBySlot: r.ClaimedBySlot}}
	}
	return out, nil
}

// GetFile loads one file's row; db.ErrNotFound (wrapped) when unknown.
func (ix *Indexer) GetFile(ctx context.Context, uniqueID string) (File, error) {
	f, err := ix.db.FileGet(ctx, uniqueID)
	if err != nil {
		return File{}, fmt.Errorf("index: %w", err)
	}
	return f, nil
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
