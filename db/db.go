// Package db is the layer that remembers: one interface for every statement
// ferry runs, with its parameter and result types and its error classes. It
// holds no SQL. A driver (package dbpg for Postgres) implements it, and a
// conformance suite (package drivertest) checks that every driver does the
// same thing, the shape River gives its own drivers (riverdriver,
// riverpgxv5, riverdrivertest).
//
// Methods are named after the table they act on and what they do to it
// (PostClaimMany claims channel_posts rows). Methods that take many rows take
// them as columns, one slice per field: the index and the intake build them
// so, and a Postgres driver sends each as one array.
package db

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
)

// Driver is a database: an Executor outside any transaction (each call is
// its own), transactions, the schema, and the River client that keeps its
// jobs in the same database.
type Driver interface {
	Executor
	// Begin starts a transaction; Commit or Rollback ends it.
	Begin(ctx context.Context) (Tx, error)
	// NewRiver builds the River client on this database.
	NewRiver(cfg *river.Config) (River, error)
	// Migrate brings River's schema and ferry's up to date.
	Migrate(ctx context.Context, logger *slog.Logger) error
	// Current fails when a migration of either schema is pending.
	Current(ctx context.Context) error
	// Ping checks the database answers.
	Ping(ctx context.Context) error
	// Name is the dialect ("postgres").
	Name() string
	Close()
}

// Tx is a transaction. It runs the same operations as the Driver, and
// carries the driver's own transaction so River can insert and complete
// jobs in it (River.InsertManyTx, River.JobCompleteTx).
type Tx interface {
	Executor
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
	// Savepoint runs f in a nested transaction, rolled back when f fails
	// (the outer one goes on).
	Savepoint(ctx context.Context, f func(Tx) error) error
	// RiverTx is the driver's transaction as its River driver takes it
	// (pgx.Tx for Postgres).
	RiverTx() any
}

// Executor is every operation ferry asks of its database.
type Executor interface {
	// UpdateAcceptMany makes a commit of the intake durable: the updates
	// that become jobs in received_updates (their re-delivery guard), the
	// channel-file sightings as one sighting_batches row (under the
	// sightings lock, shared), and the count of both in update_counts.
	UpdateAcceptMany(ctx context.Context, p *UpdateAcceptManyParams) (*UpdateAcceptManyResult, error)

	// SightingBatchTake deletes and returns the oldest sighting batches no
	// other drain has locked, as many as hold fewer than maxSightings
	// sightings before the last one taken (at least one batch). The
	// sightings come in arrival order, with ChatID, MessageID and BotID
	// set and Slot 0.
	SightingBatchTake(ctx context.Context, maxSightings int) ([]Post, error)
	// SightingBatchLockEmpty takes the sightings lock exclusively until the
	// transaction ends (the intake holds it shared while it adds batches)
	// and reports whether no batch is left that another drain has not
	// locked.
	SightingBatchLockEmpty(ctx context.Context) (bool, error)
	// SightingFailureInsert keeps sightings the index refused, with why.
	SightingFailureInsert(ctx context.Context, fs []SightingFailure) error
	// SightingFailureList lists kept sightings, oldest first.
	SightingFailureList(ctx context.Context, limit int) ([]SightingFailure, error)
	// SightingFailureRequeue moves every kept sighting back into one
	// sighting batch for the drain to try again; it returns how many.
	SightingFailureRequeue(ctx context.Context) (int, error)

	// FileLockNew takes, until the transaction ends, the lock that a batch
	// holds while it creates R2 objects for files the database lacks.
	FileLockNew(ctx context.Context) error
	// FileUnknownMany returns those of uniqueIDs with no files row.
	FileUnknownMany(ctx context.Context, uniqueIDs []string) ([]string, error)
	// PostClaimMany inserts one channel_posts claim per post, from the
	// lowest slot given for it; a post already claimed is left alone (and
	// waited for while its claim is not committed). Existing is set for
	// a file the database already has. It returns the claims it made.
	PostClaimMany(ctx context.Context, p *PostClaimManyParams) ([]PostClaim, error)
	// FileInsertMany inserts the files rows the database lacks, then
	// settles Existing for the posts claimed as new (NewChatID/NewMessageID):
	// false only for a file's first post when this call created its row
	// from a local sighting (origin "local").
	FileInsertMany(ctx context.Context, p *FileInsertManyParams) error
	// FileBotIDUpsertMany writes each (file, slot)'s file_id, the latest
	// post's when a slot appears twice. A changed file_id marks its file in
	// r2_pending with a new generation, unless it is one of the Created
	// file_ids (already in the object the caller created). It returns the
	// files marked.
	FileBotIDUpsertMany(ctx context.Context, p *FileBotIDUpsertManyParams) ([]string, error)
	// PostOutcomeMany reads each (post, file)'s file row and claim (with
	// its reply, once sent), in no particular order; pairs with no claim or
	// file are left out.
	PostOutcomeMany(ctx context.Context, p *PostOutcomeManyParams) ([]PostOutcome, error)
	// PostPendingReplyMany reads the claims of posts whose reply is not yet
	// recorded, in (chat, message) order; others are left out.
	PostPendingReplyMany(ctx context.Context, posts []PostRef) ([]PostOutcome, error)
	// PostMarkRepliedMany records replies sent and returns the posts it
	// marked (a post marked before is left out). Outside a transaction the
	// commit need not wait for the disk: a lost mark repeats one reply.
	PostMarkRepliedMany(ctx context.Context, sent []PostReplied) ([]PostRef, error)

	// FileGet reads one file; ErrNotFound when there is none.
	FileGet(ctx context.Context, uniqueID string) (File, error)
	// FileFind pages through files whose lower-cased name contains every
	// one of p.Words (already lower-cased), newest first, with the total.
	FileFind(ctx context.Context, p *FileFindParams) ([]File, int, error)
	// FileHeldByAll returns those of uniqueIDs that have a file_id in each
	// of slots 1 to slots.
	FileHeldByAll(ctx context.Context, uniqueIDs []string, slots int) ([]string, error)
	// FileSyncGetMany reads, in one snapshot, each file with its file_ids
	// by slot and its r2_pending generation (0 when none); files without
	// file_ids are left out.
	FileSyncGetMany(ctx context.Context, uniqueIDs []string) ([]FileSync, error)
	// FileListAfter lists file ids after after, in order.
	FileListAfter(ctx context.Context, after string, limit int) ([]string, error)
	// R2PendingListAfter lists files marked for R2 longer than olderThan
	// ago, after after, in order.
	R2PendingListAfter(ctx context.Context, olderThan time.Duration, after string, limit int) ([]string, error)
	// R2PendingDeleteMany clears the marks of files written to R2 whose
	// generation is still the one read before the write. Outside a
	// transaction the commit need not wait for the disk.
	R2PendingDeleteMany(ctx context.Context, written []R2Written) error

	// HolderList lists the bots holding a file_id for a file, best first:
	// not in flood wait, then fewest send leases younger than lease, then
	// least recently used, then slot.
	HolderList(ctx context.Context, uniqueID string, lease time.Duration) ([]Holder, error)
	// BotSendLease records a send starting (bot_sends, bot_load.last_used_at),
	// drops the bot's leases older than lease, and returns the new lease.
	BotSendLease(ctx context.Context, botID int64, lease time.Duration) (int64, error)
	// BotSendRelease ends a lease and counts the send's result.
	BotSendRelease(ctx context.Context, p *BotSendReleaseParams) error
	// BotLoadList reads every bot's send counters, in bot id order.
	BotLoadList(ctx context.Context) ([]BotLoad, error)
	// BotSendsInFlight counts each bot's send leases younger than lease
	// (BotSendLease: sends by file_id under way, from every process), by
	// bot id; bots with none are left out.
	BotSendsInFlight(ctx context.Context, lease time.Duration) (map[int64]int, error)

	// SendBudgetLock creates the missing send_budget rows of each bot for
	// chatID and for the bot itself (chat 0), locks them until the
	// transaction ends and returns them in (bot, chat) order. Run it in a
	// transaction: another one locking the same rows waits for it.
	SendBudgetLock(ctx context.Context, chatID int64, botIDs []int64) ([]SendBudget, error)
	// SendBudgetSave writes NextAt, Sends and Queued of rows that exist.
	SendBudgetSave(ctx context.Context, rows []SendBudget) error
	// SendBudgetBlock records a 429: (bot, chatID)'s BlockedUntil becomes
	// until unless it is later already (chatID 0 blocks the bot in every
	// chat), and the bot's Refused grows by one.
	SendBudgetBlock(ctx context.Context, botID, chatID int64, until time.Time) error
	// SendBudgetList reads every bot's row and the chat rows still busy at
	// now (NextAt or BlockedUntil after it), in (bot, chat) order.
	SendBudgetList(ctx context.Context, now time.Time) ([]SendBudget, error)
	// SendBudgetPrune deletes the chat rows (chat_id ≠ 0) whose NextAt and
	// BlockedUntil are both unset or before before, and returns how many:
	// such a row paces nothing a fresh one would not. The bots' rows (chat
	// 0), which keep the counters, stay.
	SendBudgetPrune(ctx context.Context, before time.Time) (int64, error)
	// FileBotIDBotsInChat returns the bots that hold a file_id of one of
	// uniqueIDs from a post in chatID (so they see that chat), in id order.
	FileBotIDBotsInChat(ctx context.Context, chatID int64, uniqueIDs []string) ([]int64, error)

	// CommandCountAdd counts one chat command of userID in the current
	// window (the database's clock, truncated to window) and returns the
	// window's count so far; the user's earlier windows are dropped.
	CommandCountAdd(ctx context.Context, userID int64, window time.Duration) (int, error)

	// StatsCount counts what /stats shows of ferry's own tables.
	StatsCount(ctx context.Context) (Stats, error)

	// UploadStateGet reads an upload's resume state; ErrNotFound when none.
	UploadStateGet(ctx context.Context, key string) (UploadState, error)
	// UploadStateBegin records a fresh attempt (st's file id, no parts
	// acked), keeping a random_id chosen before; it returns the attempt's
	// start and that random_id (0 when none).
	UploadStateBegin(ctx context.Context, st *UploadState) (time.Time, int64, error)
	// UploadStateSaveAcked overwrites the acked parts of the attempt with
	// fileID, unless fewer than the count stored: an uploader's saves may
	// land out of order, and the bitmap only grows. Outside a transaction
	// the commit need not wait for the disk.
	UploadStateSaveAcked(ctx context.Context, key string, fileID int64, acked []byte, count int) error
	// UploadStateEnsureRandomID stores randomID for key unless one is
	// stored (creating a row that only carries the post when key has none),
	// and returns the one stored.
	UploadStateEnsureRandomID(ctx context.Context, key string, randomID int64) (int64, error)
	// UploadStateMarkSent records the channel message of key's post.
	UploadStateMarkSent(ctx context.Context, key string, messageID int) error
	// UploadStateInvalidate makes key's next attempt start over.
	UploadStateInvalidate(ctx context.Context, key string) error
	// UploadStateDelete forgets key.
	UploadStateDelete(ctx context.Context, key string) error
	// UploadTotalAdd counts one finished upload of bytes (upload_totals).
	UploadTotalAdd(ctx context.Context, bytes int64) error
	// UploadTotalGet reads the uploads counted so far; zero when none.
	UploadTotalGet(ctx context.Context) (UploadTotal, error)

	// SessionGet reads a bot's sealed MTProto session; ErrNotFound when none.
	SessionGet(ctx context.Context, botID int64) (Session, error)
	// SessionSave upserts a bot's sealed MTProto session.
	SessionSave(ctx context.Context, s Session) error

	// LeaseAcquire records (or revives) process id's lease, live until ttl
	// from the database's now.
	LeaseAcquire(ctx context.Context, id string, ttl time.Duration) error
	// LeaseRenew moves id's lease to ttl from now, unless it has lapsed or
	// is gone; it reports whether it did.
	LeaseRenew(ctx context.Context, id string, ttl time.Duration) (bool, error)
	// LeaseRelease deletes id's lease.
	LeaseRelease(ctx context.Context, id string) error
	// LeaseList lists every lease, live or lapsed, by id.
	LeaseList(ctx context.Context) ([]Lease, error)
	// LeaseRescueJobs hands back the running River jobs whose runner (the
	// last of attempted_by) is not self and holds no live lease: available
	// at once, cancelled when a cancel was asked, discarded when out of
	// attempts, each with an error recorded. Leases lapsed over an hour ago
	// are deleted. It returns the jobs handed back.
	LeaseRescueJobs(ctx context.Context, self string) ([]LeaseRescuedJob, error)
}

// ErrNotFound is returned (wrapped) for a row that does not exist.
var ErrNotFound = errors.New("db: not found")

// sqlStater is the SQLSTATE of a database error (pgconn.PgError has it; the
// SQLite driver gives its errors one).
type sqlStater interface{ SQLState() string }

func sqlState(err error) string {
	var s sqlStater
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// IsRetryable tells an error that running the same transaction again is
// expected to cure: a deadlock or serialization failure (SQLSTATE 40P01,
// 40001).
func IsRetryable(err error) bool {
	s := sqlState(err)
	return s == "40001" || s == "40P01"
}

// IsDataError tells an error caused by the data given: a value or a row the
// database refuses (SQLSTATE classes 22 and 23). The same data fails the
// same way on every retry.
func IsDataError(err error) bool {
	s := sqlState(err)
	return len(s) == 5 && (s[:2] == "22" || s[:2] == "23")
}

// WithTx runs f in a transaction and commits it, and runs it again (up to
// five times in all) when the database aborts it for a deadlock or a
// serialization conflict.
func WithTx(ctx context.Context, d Driver, f func(Tx) error) error {
	var err error
	for range 5 {
		if err = withTx(ctx, d, f); !IsRetryable(err) {
			return err
		}
	}
	return err
}

func withTx(ctx context.Context, d Driver, f func(Tx) error) error {
	tx, err := d.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
