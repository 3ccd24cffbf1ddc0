package dbsqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// hourMicros is an hour in the microseconds of the stored times.
const hourMicros = int64(3600 * 1000 * 1000)

// hour is date_trunc('hour', now()) in microseconds (hours of UTC).
func hour(us int64) int64 { return us - ((us%hourMicros)+hourMicros)%hourMicros }

// UpdateAcceptMany records a commit of the intake in one transaction:
// the new updates and their count, then the sightings as one batch, their
// count, and whether a drain job is queued. Postgres takes the sightings
// lock shared around the batch; here the transaction's write lock already
// keeps a drain's SightingBatchLockEmpty from running meanwhile.
func (e executor) UpdateAcceptMany(ctx context.Context, p *db.UpdateAcceptManyParams) (*db.UpdateAcceptManyResult, error) {
	res := &db.UpdateAcceptManyResult{}
	if len(p.Updates) == 0 && len(p.Sightings) == 0 {
		return res, nil
	}
	err := e.atomic(ctx, func(e executor) error {
		var err error
		if len(p.Updates) > 0 {
			if res.New, err = e.recordUpdates(ctx, p.Counter, p.Updates); err != nil {
				return err
			}
		}
		if len(p.Sightings) > 0 {
			if err := e.acceptSightings(ctx, p.Counter, p.Sightings); err != nil {
				return err
			}
			// Read from River's table in the same transaction, as dbpg does
			// in its round trip.
			err := e.queryRow(ctx, []any{&res.DrainQueued}, `
SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = ?
               AND state IN ('available', 'pending', 'running', 'retryable', 'scheduled'))`, p.DrainKind)
			if err != nil {
				return fmt.Errorf("look for a drain job: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("accept %d updates and %d sightings: %w", len(p.Updates), len(p.Sightings), err)
	}
	return res, nil
}

// recordUpdates inserts the updates not seen before (in one statement) and
// counts them in the flusher's hourly row. They come back in the order
// given, each once.
func (e executor) recordUpdates(ctx context.Context, counter int32, updates []db.UpdateKey) ([]db.UpdateKey, error) {
	arg := jsonArray(len(updates), func(i int) []any { return []any{updates[i].BotID, updates[i].UpdateID} })
	accepted := map[db.UpdateKey]bool{}
	err := e.query(ctx, func(rows *sql.Rows) error {
		var k db.UpdateKey
		if err := rows.Scan(&k.BotID, &k.UpdateID); err != nil {
			return err
		}
		accepted[k] = true
		return nil
	}, `
INSERT INTO received_updates (bot_id, update_id, received_at)
SELECT value ->> 0, value ->> 1, ? FROM json_each(?) WHERE true ORDER BY key
ON CONFLICT DO NOTHING
RETURNING bot_id, update_id`, e.clock(), arg)
	if err != nil {
		return nil, fmt.Errorf("record updates: %w", err)
	}
	if len(accepted) == 0 {
		return nil, nil
	}
	if err := e.count(ctx, counter, int64(len(accepted))); err != nil {
		return nil, err
	}
	out := make([]db.UpdateKey, 0, len(accepted))
	for _, u := range updates {
		if accepted[u] {
			out = append(out, u)
			delete(accepted, u)
		}
	}
	return out, nil
}

// count adds n to the flusher's row of the current hour.
func (e executor) count(ctx context.Context, counter int32, n int64) error {
	_, err := e.exec(ctx, `
INSERT INTO update_counts (hour, counter, n) VALUES (?, ?, ?)
ON CONFLICT (hour, counter) DO UPDATE SET n = update_counts.n + excluded.n`, hour(e.clock()), counter, n)
	if err != nil {
		return fmt.Errorf("count updates: %w", err)
	}
	return nil
}

// sighting is a stored sighting: an element of sighting_batches.sightings,
// keyed by sighting_failures' columns. The int32 fields are Postgres's
// integer columns (dbpg converts them so too).
type sighting struct {
	ChatID    int64  `json:"chat_id"`
	MessageID int64  `json:"message_id"`
	BotID     int64  `json:"bot_id"`
	UniqueID  string `json:"file_unique_id"`
	FileID    string `json:"file_id"`
	Type      string `json:"file_type"`
	Name      string `json:"file_name"`
	Size      int64  `json:"file_size"`
	MimeType  string `json:"mime_type"`
	DC        int32  `json:"dc_id"`
	Caption   string `json:"caption"`
	Duration  int32  `json:"duration"`
	Width     int32  `json:"width"`
	Height    int32  `json:"height"`
}

func sightingOf(p db.Post) sighting {
	return sighting{ChatID: p.ChatID, MessageID: p.MessageID, BotID: p.BotID, UniqueID: p.UniqueID, FileID: p.FileID,
		Type: p.Type, Name: p.Name, Size: p.Size, MimeType: p.MimeType, DC: int32(p.DC), Caption: p.Caption,
		Duration: int32(p.Duration), Width: int32(p.Width), Height: int32(p.Height)}
}

func (s sighting) post() db.Post {
	return db.Post{ChatID: s.ChatID, MessageID: s.MessageID, BotID: s.BotID, UniqueID: s.UniqueID, FileID: s.FileID,
		Type: s.Type, Name: s.Name, Size: s.Size, MimeType: s.MimeType, DC: int(s.DC), Caption: s.Caption,
		Duration: int(s.Duration), Width: int(s.Width), Height: int(s.Height)}
}

// texts are the sighting's text columns, checked as parameters are.
func (s sighting) texts() []any {
	return []any{s.UniqueID, s.FileID, s.Type, s.Name, s.MimeType, s.Caption}
}

// acceptSightings stores the commit's sightings as one batch and counts
// them.
func (e executor) acceptSightings(ctx context.Context, counter int32, posts []db.Post) error {
	ss := make([]sighting, len(posts))
	var arg any
	for i, p := range posts {
		ss[i] = sightingOf(p)
		if err := checkArgs(ss[i].texts()); err != nil && arg == nil {
			arg = badArg{err}
		}
	}
	if arg == nil {
		arg = jsonArg(ss)
	}
	if _, err := e.exec(ctx, `INSERT INTO sighting_batches (received_at, n, sightings) VALUES (?, ?, ?)`,
		e.clock(), len(ss), arg); err != nil {
		return fmt.Errorf("store sightings: %w", err)
	}
	return e.count(ctx, counter, int64(len(ss)))
}

// SightingBatchTake deletes and returns the oldest batches, as many as hold
// fewer than maxSightings sightings before the last one taken (at most 64),
// in one statement. No other drain can hold one: the plain select stands
// for Postgres's FOR UPDATE SKIP LOCKED.
func (e executor) SightingBatchTake(ctx context.Context, maxSightings int) ([]db.Post, error) {
	type batch struct {
		id        int64
		sightings []sighting
	}
	var batches []batch
	err := e.query(ctx, func(rows *sql.Rows) error {
		var b batch
		var js string
		if err := rows.Scan(&b.id, &js); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(js), &b.sightings); err != nil {
			return fmt.Errorf("decode sighting batch %d: %w", b.id, err)
		}
		batches = append(batches, b)
		return nil
	}, `
DELETE FROM sighting_batches WHERE id IN (
    SELECT id FROM (SELECT id, sum(n) OVER (ORDER BY id) - n AS before
                    FROM (SELECT id, n FROM sighting_batches ORDER BY id LIMIT 64))
    WHERE before < ?)
RETURNING id, sightings`, maxSightings)
	if err != nil {
		return nil, fmt.Errorf("take sighting batches: %w", err)
	}
	// RETURNING's order is SQLite's to choose: put them in arrival order.
	slices.SortFunc(batches, func(a, b batch) int { return cmp.Compare(a.id, b.id) })
	var out []db.Post
	for _, b := range batches {
		for _, s := range b.sightings {
			out = append(out, s.post())
		}
	}
	return out, nil
}

// SightingBatchLockEmpty reports whether no batch is left. The exclusive
// sightings lock of Postgres is the transaction itself here: it holds the
// database's write lock, so no intake commit adds a batch before it ends.
func (e executor) SightingBatchLockEmpty(ctx context.Context) (bool, error) {
	var left bool
	if err := e.queryRow(ctx, []any{&left}, `SELECT EXISTS (SELECT 1 FROM sighting_batches)`); err != nil {
		return false, fmt.Errorf("look for sighting batches: %w", err)
	}
	return !left, nil
}

// SightingFailureInsert keeps refused sightings, one row each, in one
// statement, in the order given.
func (e executor) SightingFailureInsert(ctx context.Context, fs []db.SightingFailure) error {
	arg := jsonArray(len(fs), func(i int) []any {
		s := sightingOf(fs[i].Post)
		return []any{s.ChatID, s.MessageID, s.BotID, s.UniqueID, s.FileID, s.Type, s.Name,
			s.Size, s.MimeType, s.DC, s.Caption, s.Duration, s.Width, s.Height, fs[i].Error}
	})
	_, err := e.exec(ctx, `
INSERT INTO sighting_failures (failed_at, chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
                               file_size, mime_type, dc_id, caption, duration, width, height, error)
SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
       value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13, value ->> 14
FROM json_each(?) ORDER BY key`, e.clock(), arg)
	if err != nil {
		return fmt.Errorf("keep %d failed sightings: %w", len(fs), err)
	}
	return nil
}

// SightingFailureList lists kept sightings, oldest first.
func (e executor) SightingFailureList(ctx context.Context, limit int) ([]db.SightingFailure, error) {
	var out []db.SightingFailure
	err := e.query(ctx, func(rows *sql.Rows) error {
		var f db.SightingFailure
		var failedAt int64
		p := &f.Post
		if err := rows.Scan(&p.ChatID, &p.MessageID, &p.BotID, &p.UniqueID, &p.FileID, &p.Type, &p.Name,
			&p.Size, &p.MimeType, &p.DC, &p.Caption, &p.Duration, &p.Width, &p.Height, &f.Error, &failedAt); err != nil {
			return err
		}
		f.FailedAt = timeOf(failedAt)
		out = append(out, f)
		return nil
	}, `
SELECT chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
       file_size, mime_type, dc_id, caption, duration, width, height, error, failed_at
FROM sighting_failures ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list failed sightings: %w", err)
	}
	return out, nil
}

// SightingFailureRequeue moves kept sightings into one batch (built by
// SQLite in id order), then deletes them, in one transaction.
func (e executor) SightingFailureRequeue(ctx context.Context) (int, error) {
	var n int
	err := e.atomic(ctx, func(e executor) error {
		err := e.queryRow(ctx, []any{&n}, `
INSERT INTO sighting_batches (received_at, n, sightings)
SELECT ?, count(*), json_group_array(json_object(
           'chat_id', chat_id, 'message_id', message_id, 'bot_id', bot_id, 'file_unique_id', file_unique_id,
           'file_id', file_id, 'file_type', file_type, 'file_name', file_name, 'file_size', file_size,
           'mime_type', mime_type, 'dc_id', dc_id, 'caption', caption, 'duration', duration,
           'width', width, 'height', height) ORDER BY id)
FROM sighting_failures HAVING count(*) > 0
RETURNING n`, e.clock())
		if errors.Is(err, sql.ErrNoRows) {
			n = 0
			return nil
		}
		if err != nil {
			return err
		}
		_, err = e.exec(ctx, `DELETE FROM sighting_failures`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("requeue failed sightings: %w", err)
	}
	return n, nil
}

// CommandCountAdd counts a command: two statements in one transaction or
// savepoint.
func (e executor) CommandCountAdd(ctx context.Context, userID int64, window time.Duration) (int, error) {
	var n int
	err := e.atomic(ctx, func(e executor) error {
		w := window.Microseconds()
		start := e.clock() / w * w
		if _, err := e.exec(ctx, `DELETE FROM command_counts WHERE user_id = ? AND window_start < ?`, userID, start); err != nil {
			return err
		}
		return e.queryRow(ctx, []any{&n}, `
INSERT INTO command_counts (user_id, window_start, n) VALUES (?, ?, 1)
ON CONFLICT (user_id, window_start) DO UPDATE SET n = command_counts.n + 1
RETURNING n`, userID, start)
	})
	if err != nil {
		return 0, fmt.Errorf("count a command of user %d: %w", userID, err)
	}
	return n, nil
}

// StatsCount counts updates, files and sightings in one query. "Last 24 h"
// is the current hour and the 23 before it, as on Postgres.
func (e executor) StatsCount(ctx context.Context) (db.Stats, error) {
	var s db.Stats
	err := e.queryRow(ctx, []any{&s.Updates, &s.UpdatesDay, &s.Files, &s.PostsReplied, &s.R2Pending,
		&s.SightingsWaiting, &s.SightingsFailed}, `SELECT
    (SELECT coalesce(sum(n), 0) FROM update_counts),
    (SELECT coalesce(sum(n), 0) FROM update_counts WHERE hour > ?),
    (SELECT count(*) FROM files),
    (SELECT count(*) FROM channel_posts WHERE replied_at IS NOT NULL),
    (SELECT count(*) FROM r2_pending),
    (SELECT coalesce(sum(n), 0) FROM sighting_batches),
    (SELECT count(*) FROM sighting_failures)`, e.clock()-24*hourMicros)
	if err != nil {
		return db.Stats{}, fmt.Errorf("count stats: %w", err)
	}
	return s, nil
}
