package dbpg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/db"
)

// sightingsLockKey is the advisory lock key ("ferrysig") that the intake
// holds shared while it adds sighting batches, and a drain exclusively while
// it checks that none is left before completing its job.
const sightingsLockKey int64 = 0x6665727279736967

// sqlRecordUpdates records updates that become jobs, adds them to the
// flusher's hourly count ($3), and returns the keys of those not seen
// before.
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

// sqlAcceptSightings records a commit's sightings as one sighting_batches
// row and adds them to the flusher's hourly count ($15).
const sqlAcceptSightings = `
WITH accepted AS (
    INSERT INTO sighting_batches (n, chat_ids, message_ids, bot_ids, file_unique_ids, file_ids, file_types, file_names,
                                  file_sizes, mime_types, dc_ids, captions, durations, widths, heights)
    VALUES (cardinality($1::bigint[]), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    RETURNING n)
INSERT INTO update_counts (hour, counter, n)
SELECT date_trunc('hour', now()), $15::int, n FROM accepted
ON CONFLICT (hour, counter) DO UPDATE SET n = update_counts.n + EXCLUDED.n`

// sqlDrainQueued tells whether a drain job is waiting or running. It reads
// River's table in the intake's own round trip: River's JobList would be
// another round trip per commit, and a unique job would make every commit
// lock the same job row and wait on the one before.
const sqlDrainQueued = `
SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = $1
               AND state IN ('available', 'pending', 'running', 'retryable', 'scheduled'))`

// UpdateAcceptMany sends the commit's statements in one batch: one round
// trip whatever it holds.
func (e executor) UpdateAcceptMany(ctx context.Context, p *db.UpdateAcceptManyParams) (*db.UpdateAcceptManyResult, error) {
	res := &db.UpdateAcceptManyResult{}
	b := &pgx.Batch{}
	if len(p.Updates) > 0 {
		bots, ids := make([]int64, len(p.Updates)), make([]int64, len(p.Updates))
		for i, u := range p.Updates {
			bots[i], ids[i] = u.BotID, u.UpdateID
		}
		b.Queue(sqlRecordUpdates, bots, ids, p.Counter).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k db.UpdateKey
				if err := rows.Scan(&k.BotID, &k.UpdateID); err != nil {
					return fmt.Errorf("scan update key: %w", err)
				}
				res.New = append(res.New, k)
			}
			return rows.Err()
		})
	}
	if len(p.Sightings) > 0 {
		var c sightingColumns
		for _, s := range p.Sightings {
			c.add(s)
		}
		b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, sightingsLockKey)
		b.Queue(sqlAcceptSightings, append(c.args(), p.Counter)...)
		b.Queue(sqlDrainQueued, p.DrainKind).QueryRow(func(row pgx.Row) error { return row.Scan(&res.DrainQueued) })
	}
	if b.Len() == 0 {
		return res, nil
	}
	if err := e.q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("accept %d updates and %d sightings: %w", len(p.Updates), len(p.Sightings), err)
	}
	return res, nil
}

// sightingColumns gathers sightings as one array per column, in the order
// of sighting_batches.
type sightingColumns struct {
	chats, msgs, bots, sizes        []int64
	uids, fids, types, names        []string
	mimes, captions                 []string
	dcs, durations, widths, heights []int32
}

func (c *sightingColumns) add(p db.Post) {
	c.chats, c.msgs, c.bots, c.sizes = append(c.chats, p.ChatID), append(c.msgs, p.MessageID), append(c.bots, p.BotID), append(c.sizes, p.Size)
	c.uids, c.fids, c.types, c.names = append(c.uids, p.UniqueID), append(c.fids, p.FileID), append(c.types, p.Type), append(c.names, p.Name)
	c.mimes, c.captions = append(c.mimes, p.MimeType), append(c.captions, p.Caption)
	c.dcs, c.durations = append(c.dcs, int32(p.DC)), append(c.durations, int32(p.Duration))
	c.widths, c.heights = append(c.widths, int32(p.Width)), append(c.heights, int32(p.Height))
}

func (c *sightingColumns) args() []any {
	return []any{c.chats, c.msgs, c.bots, c.uids, c.fids, c.types, c.names,
		c.sizes, c.mimes, c.dcs, c.captions, c.durations, c.widths, c.heights}
}

func (c *sightingColumns) dests() []any {
	return []any{&c.chats, &c.msgs, &c.bots, &c.uids, &c.fids, &c.types, &c.names,
		&c.sizes, &c.mimes, &c.dcs, &c.captions, &c.durations, &c.widths, &c.heights}
}

func (c *sightingColumns) post(i int) db.Post {
	return db.Post{ChatID: c.chats[i], MessageID: c.msgs[i], BotID: c.bots[i],
		UniqueID: c.uids[i], FileID: c.fids[i], Type: c.types[i], Name: c.names[i], Size: c.sizes[i],
		MimeType: c.mimes[i], DC: int(c.dcs[i]), Caption: c.captions[i],
		Duration: int(c.durations[i]), Width: int(c.widths[i]), Height: int(c.heights[i])}
}

// sqlTakeBatches deletes and returns the oldest sighting_batches rows not
// locked by another drain, as many as hold fewer than $1 sightings before
// the last one taken (at least one row, at most 64). RETURNING comes in the
// join's order, which is heap order when the planner hashes taken (it does
// for a small table), and a vacuumed table reuses freed slots: the outer
// ORDER BY keeps arrival order.
const sqlTakeBatches = `
WITH locked AS (
    SELECT id, n FROM sighting_batches ORDER BY id LIMIT 64 FOR UPDATE SKIP LOCKED
), taken AS (
    SELECT id FROM (SELECT id, sum(n) OVER (ORDER BY id) - n AS before FROM locked) l WHERE before < $1
), gone AS (
    DELETE FROM sighting_batches b USING taken WHERE b.id = taken.id
    RETURNING b.id, b.chat_ids, b.message_ids, b.bot_ids, b.file_unique_ids, b.file_ids, b.file_types, b.file_names,
              b.file_sizes, b.mime_types, b.dc_ids, b.captions, b.durations, b.widths, b.heights
)
SELECT chat_ids, message_ids, bot_ids, file_unique_ids, file_ids, file_types, file_names,
       file_sizes, mime_types, dc_ids, captions, durations, widths, heights
FROM gone ORDER BY id`

// SightingBatchTake takes a round's batches.
func (e executor) SightingBatchTake(ctx context.Context, maxSightings int) ([]db.Post, error) {
	rows, err := e.q.Query(ctx, sqlTakeBatches, maxSightings)
	if err != nil {
		return nil, fmt.Errorf("take sighting batches: %w", err)
	}
	defer rows.Close()
	var out []db.Post
	for rows.Next() {
		var c sightingColumns
		if err := rows.Scan(c.dests()...); err != nil {
			return nil, fmt.Errorf("read sighting batch: %w", err)
		}
		for i := range c.chats {
			out = append(out, c.post(i))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("take sighting batches: %w", err)
	}
	return out, nil
}

// SightingBatchLockEmpty locks out the intake's additions and looks.
func (e executor) SightingBatchLockEmpty(ctx context.Context) (bool, error) {
	if _, err := e.q.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, sightingsLockKey); err != nil {
		return false, fmt.Errorf("lock sightings: %w", err)
	}
	var left bool
	if err := e.q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM sighting_batches LIMIT 1 FOR UPDATE SKIP LOCKED)`).Scan(&left); err != nil {
		return false, fmt.Errorf("look for sighting batches: %w", err)
	}
	return !left, nil
}

// SightingFailureInsert keeps refused sightings, one row each.
func (e executor) SightingFailureInsert(ctx context.Context, fs []db.SightingFailure) error {
	var c sightingColumns
	errs := make([]string, len(fs))
	for i, f := range fs {
		c.add(f.Post)
		errs[i] = f.Error
	}
	_, err := e.q.Exec(ctx, `
INSERT INTO sighting_failures (chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
                               file_size, mime_type, dc_id, caption, duration, width, height, error)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::bigint[], $9::text[], $10::int[], $11::text[], $12::int[], $13::int[], $14::int[], $15::text[])`,
		append(c.args(), errs)...)
	if err != nil {
		return fmt.Errorf("keep %d failed sightings: %w", len(fs), err)
	}
	return nil
}

// SightingFailureList lists kept sightings, oldest first.
func (e executor) SightingFailureList(ctx context.Context, limit int) ([]db.SightingFailure, error) {
	rows, err := e.q.Query(ctx, `
SELECT chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
       file_size, mime_type, dc_id, caption, duration, width, height, error, failed_at
FROM sighting_failures ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list failed sightings: %w", err)
	}
	defer rows.Close()
	var out []db.SightingFailure
	for rows.Next() {
		var f db.SightingFailure
		p := &f.Post
		if err := rows.Scan(&p.ChatID, &p.MessageID, &p.BotID, &p.UniqueID, &p.FileID, &p.Type, &p.Name,
			&p.Size, &p.MimeType, &p.DC, &p.Caption, &p.Duration, &p.Width, &p.Height, &f.Error, &f.FailedAt); err != nil {
			return nil, fmt.Errorf("list failed sightings: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list failed sightings: %w", err)
	}
	return out, nil
}

// SightingFailureRequeue moves kept sightings into one batch, in one
// statement.
func (e executor) SightingFailureRequeue(ctx context.Context) (int, error) {
	var n int
	err := e.q.QueryRow(ctx, `
WITH moved AS (DELETE FROM sighting_failures RETURNING *),
ins AS (
    INSERT INTO sighting_batches (n, chat_ids, message_ids, bot_ids, file_unique_ids, file_ids, file_types, file_names,
                                  file_sizes, mime_types, dc_ids, captions, durations, widths, heights)
    SELECT count(*), array_agg(chat_id ORDER BY id), array_agg(message_id ORDER BY id), array_agg(bot_id ORDER BY id),
           array_agg(file_unique_id ORDER BY id), array_agg(file_id ORDER BY id), array_agg(file_type ORDER BY id),
           array_agg(file_name ORDER BY id), array_agg(file_size ORDER BY id), array_agg(mime_type ORDER BY id),
           array_agg(dc_id ORDER BY id), array_agg(caption ORDER BY id), array_agg(duration ORDER BY id),
           array_agg(width ORDER BY id), array_agg(height ORDER BY id)
    FROM moved HAVING count(*) > 0
    RETURNING n)
SELECT coalesce((SELECT n FROM ins), 0)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("requeue failed sightings: %w", err)
	}
	return n, nil
}

// CommandCountAdd counts a command in one statement; the window is taken
// from the database's clock so every process agrees on it.
func (e executor) CommandCountAdd(ctx context.Context, userID int64, window time.Duration) (int, error) {
	var n int
	err := e.q.QueryRow(ctx, `
WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / $2) * $2) AS start),
old AS (DELETE FROM command_counts WHERE user_id = $1 AND window_start < (SELECT start FROM w))
INSERT INTO command_counts (user_id, window_start, n) SELECT $1, start, 1 FROM w
ON CONFLICT (user_id, window_start) DO UPDATE SET n = command_counts.n + 1
RETURNING n`, userID, window.Seconds()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count a command of user %d: %w", userID, err)
	}
	return n, nil
}

// StatsCount counts updates, files and sightings in one query.
func (e executor) StatsCount(ctx context.Context) (db.Stats, error) {
	var s db.Stats
	// Counted per hour: "last 24 h" is the current hour and the 23 before it.
	err := e.q.QueryRow(ctx, `SELECT
    (SELECT coalesce(sum(n), 0) FROM update_counts),
    (SELECT coalesce(sum(n), 0) FROM update_counts WHERE hour > now() - interval '24 hours'),
    (SELECT count(*) FROM files),
    (SELECT count(*) FROM channel_posts WHERE replied_at IS NOT NULL),
    (SELECT count(*) FROM r2_pending),
    (SELECT coalesce(sum(n), 0) FROM sighting_batches),
    (SELECT count(*) FROM sighting_failures)`).Scan(&s.Updates, &s.UpdatesDay, &s.Files, &s.PostsReplied, &s.R2Pending,
		&s.SightingsWaiting, &s.SightingsFailed)
	if err != nil {
		return db.Stats{}, fmt.Errorf("count stats: %w", err)
	}
	return s, nil
}
