package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/index"
)

// Update is one Bot API update as it arrived: the raw JSON is kept byte for
// byte so no field Telegram adds later is lost before the worker reads it.
type Update struct {
	BotID    int64
	UpdateID int64
	Raw      []byte
	// Sighting is set for a file posted in a channel or group: the intake
	// records it in sighting_batches instead of making an update job.
	Sighting *Sighting
}

// Sighting is the file post a channel-file update carries, as the index
// will record it. Its Slot and BotID are not used: the drain takes them
// from the bot that received the update, as configured when it runs.
type Sighting struct{ Post index.Post }

// SightingOf returns the file post of a channel-file update, or nil.
func SightingOf(u *models.Update) *Sighting {
	if u == nil || Classify(u) != KindChannelFile {
		return nil
	}
	m := u.ChannelPost
	if m == nil {
		m = u.Message
	}
	p, ok := index.PostFromMessage(1, 0, m)
	if !ok {
		return nil // an update job: its worker finds nothing to index
	}
	return &Sighting{Post: p}
}

// Intake makes updates durable: Submit returns only after the update's River
// job is committed. Concurrent submissions share one transaction (group
// commit), so a burst of deliveries costs a few commits, not one each.
type Intake struct {
	pool     *pgxpool.Pool
	client   *river.Client[pgx.Tx]
	logger   *slog.Logger
	reqs     chan *pending
	maxBatch int
	window   time.Duration
	flushers int
	observe  func(batch int, took time.Duration, err error)
	// sightings routes channel files to post_sightings (the index is on).
	sightings bool
}

type pending struct {
	u    Update
	done chan error
}

// IntakeOption tunes an Intake.
type IntakeOption func(*Intake)

// WithBatch sets the largest batch and how long a flusher waits for more
// updates after the first (the group-commit window).
func WithBatch(max int, window time.Duration) IntakeOption {
	return func(in *Intake) { in.maxBatch, in.window = max, window }
}

// WithFlushers sets how many transactions may be in flight at once.
func WithFlushers(n int) IntakeOption { return func(in *Intake) { in.flushers = n } }

// WithSightings records channel-file updates in sighting_batches, indexed
// in large batches by an index_drain job, instead of one update job per
// update: eleven bots seeing a post then cost a share of a row per commit,
// not eleven jobs.
func WithSightings(on bool) IntakeOption { return func(in *Intake) { in.sightings = on } }

// WithObserver is called after every commit attempt (metrics).
func WithObserver(f func(batch int, took time.Duration, err error)) IntakeOption {
	return func(in *Intake) { in.observe = f }
}

// NewIntake prepares an Intake; call Run to start its flushers. By default
// two transactions are in flight with a 1 ms window: with four, commits
// were half the size and the index bench ran at 265–308 posts/s against
// 322–402 with two (four runs each, alternated); with one, at 279–308.
func NewIntake(pool *pgxpool.Pool, client *river.Client[pgx.Tx], logger *slog.Logger, opts ...IntakeOption) *Intake {
	in := &Intake{
		pool: pool, client: client, logger: logger,
		maxBatch: 512, window: time.Millisecond, flushers: 2,
		observe: func(int, time.Duration, error) {},
	}
	for _, o := range opts {
		o(in)
	}
	in.reqs = make(chan *pending, in.maxBatch*in.flushers)
	return in
}

// ErrStopped is returned by Submit once the intake has shut down.
var ErrStopped = errors.New("intake stopped")

// Run works until ctx is done. Updates already submitted are committed or
// answered with an error before Run returns, so no caller waits forever.
func (in *Intake) Run(ctx context.Context) {
	done := make(chan struct{})
	for i := 0; i < in.flushers; i++ {
		counter := rand.Int32()
		go func() {
			defer func() { done <- struct{}{} }()
			in.flushLoop(ctx, counter)
		}()
	}
	for i := 0; i < in.flushers; i++ {
		<-done
	}
	// Drain: anything still queued is refused so the sender gets a 503 and
	// Telegram delivers it again.
	for {
		select {
		case p := <-in.reqs:
			p.done <- ErrStopped
		default:
			return
		}
	}
}

// Submit commits u as a job (or finds it already committed) and returns nil
// only when it is durable.
func (in *Intake) Submit(ctx context.Context, u Update) error {
	p := &pending{u: u, done: make(chan error, 1)}
	select {
	case in.reqs <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The batch may still commit; a re-delivery is then deduplicated.
		return ctx.Err()
	}
}

// flushLoop commits batches one after another; counter is its own row key
// in update_counts.
func (in *Intake) flushLoop(ctx context.Context, counter int32) {
	batch := make([]*pending, 0, in.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case p := <-in.reqs:
			batch = append(batch, p)
		case <-ctx.Done():
			return
		}
		timer.Reset(in.window)
	collect:
		for len(batch) < in.maxBatch {
			select {
			case p := <-in.reqs:
				batch = append(batch, p)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		start := time.Now()
		// A batch already taken is committed even while shutting down.
		err := in.commit(context.WithoutCancel(ctx), batch, counter)
		in.observe(len(batch), time.Since(start), err)
		if err != nil {
			in.logger.Error("commit updates", "batch", len(batch), "err", err)
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

// commit makes the batch durable in one transaction: each update not seen
// before becomes a job (received_updates is its re-delivery guard), the
// channel files one row of sightings (a re-delivery is indexed again, which
// changes nothing), and the updates accepted are added to update_counts.
func (in *Intake) commit(ctx context.Context, batch []*pending, counter int32) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// Rows are written in key order so that two batches holding the same
	// keys lock them in the same order and cannot deadlock.
	slices.SortFunc(batch, func(a, b *pending) int {
		return cmp.Or(cmp.Compare(a.u.BotID, b.u.BotID), cmp.Compare(a.u.UpdateID, b.u.UpdateID))
	})
	var botIDs, updateIDs []int64
	byKey := make(map[[2]int64]*pending, len(batch))
	var sg sightingColumns
	for _, p := range batch {
		if s := p.u.Sighting; s != nil && in.sightings {
			sg.add(p.u.BotID, s.Post)
			continue
		}
		botIDs, updateIDs = append(botIDs, p.u.BotID), append(updateIDs, p.u.UpdateID)
		byKey[[2]int64{p.u.BotID, p.u.UpdateID}] = p
	}
	tx, err := in.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	var params []river.InsertManyParams
	b := &pgx.Batch{}
	if len(botIDs) > 0 {
		b.Queue(sqlRecordUpdates, botIDs, updateIDs, counter).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k [2]int64
				if err := rows.Scan(&k[0], &k[1]); err != nil {
					return fmt.Errorf("scan update key: %w", err)
				}
				params = append(params, river.InsertManyParams{Args: UpdateArgs{BotID: k[0], UpdateID: k[1], Update: byKey[k].u.Raw}})
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("record %d updates: %w", len(botIDs), err)
			}
			return nil
		})
	}
	queued := true
	if len(sg.chats) > 0 {
		// The shared lock keeps an index_drain job from completing until
		// these rows are committed (see IndexDrainWorker); a drain job that
		// is not finished will take them, so a new one is queued only when
		// there is none.
		b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, SightingsLockKey)
		b.Queue(sqlAcceptSightings, append(sg.args(), counter)...)
		b.Queue(sqlDrainQueued).QueryRow(func(row pgx.Row) error { return row.Scan(&queued) })
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record %d updates and %d sightings: %w", len(botIDs), len(sg.chats), err)
	}
	if !queued {
		params = append(params, river.InsertManyParams{Args: IndexDrainArgs{}})
	}
	if len(params) > 0 {
		if _, err := in.client.InsertManyTx(ctx, tx, params); err != nil {
			return fmt.Errorf("insert %d jobs: %w", len(params), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// sqlRecordUpdates records updates that become jobs, adds them to the
// flusher's hourly count ($3 is its key; see migration 00009), and returns
// the keys of those not seen before.
const sqlRecordUpdates = `
WITH accepted AS (
    INSERT INTO received_updates (bot_id, update_id)
    SELECT * FROM unnest($1::bigint[], $2::bigint[])
    ON CONFLICT DO NOTHING
    RETURNING bot_id, update_id),
counted AS (
    INSERT INTO update_counts (hour, counter, n)
    SELECT date_trunc('hour', now()), $3::int, count(*) FROM accepted HAVING count(*) > 0
    ON CONFLICT (hour, counter) DO UPDATE SET n = update_counts.n + EXCLUDED.n)
SELECT bot_id, update_id FROM accepted`

// sqlInsertSightings writes sightings one row each in post_sightings (see
// sightingColumns.args), each with its error ($15): what the drain does
// with a sighting it keeps aside.
const sqlInsertSightings = `
INSERT INTO post_sightings (chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
                            file_size, mime_type, dc_id, caption, duration, width, height, error)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::bigint[], $9::text[], $10::int[], $11::text[], $12::int[], $13::int[], $14::int[], $15::text[])
ON CONFLICT DO NOTHING`

// sqlAcceptSightings records the intake's sightings as one row of
// sighting_batches (migration 00010) and adds them to the flusher's hourly
// count ($15, as in sqlRecordUpdates).
const sqlAcceptSightings = `
WITH accepted AS (
    INSERT INTO sighting_batches (n, chat_ids, message_ids, bot_ids, file_unique_ids, file_ids, file_types, file_names,
                                  file_sizes, mime_types, dc_ids, captions, durations, widths, heights)
    VALUES (cardinality($1::bigint[]), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    RETURNING n)
INSERT INTO update_counts (hour, counter, n)
SELECT date_trunc('hour', now()), $15::int, n FROM accepted
ON CONFLICT (hour, counter) DO UPDATE SET n = update_counts.n + EXCLUDED.n`

// sightingColumns gathers sightings as one array per column, in the order
// of sighting_batches and post_sightings.
type sightingColumns struct {
	chats, msgs, bots, sizes        []int64
	uids, fids, types, names        []string
	mimes, captions                 []string
	dcs, durations, widths, heights []int32
}

func (c *sightingColumns) add(botID int64, p index.Post) {
	c.chats, c.msgs, c.bots, c.sizes = append(c.chats, p.ChatID), append(c.msgs, p.MessageID), append(c.bots, botID), append(c.sizes, p.Size)
	c.uids, c.fids, c.types, c.names = append(c.uids, p.UniqueID), append(c.fids, p.FileID), append(c.types, p.Type), append(c.names, p.Name)
	c.mimes, c.captions = append(c.mimes, p.MimeType), append(c.captions, p.Caption)
	c.dcs, c.durations = append(c.dcs, int32(p.DC)), append(c.durations, int32(p.Duration))
	c.widths, c.heights = append(c.widths, int32(p.Width)), append(c.heights, int32(p.Height))
}

func (c *sightingColumns) args() []any {
	return []any{c.chats, c.msgs, c.bots, c.uids, c.fids, c.types, c.names,
		c.sizes, c.mimes, c.dcs, c.captions, c.durations, c.widths, c.heights}
}
