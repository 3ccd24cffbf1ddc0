package dbsqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// HolderList ranks the bots holding a file.
func (e executor) HolderList(ctx context.Context, uniqueID string, lease time.Duration) ([]db.Holder, error) {
	now := e.clock()
	var hs []db.Holder
	err := e.query(ctx, func(rows *sql.Rows) error {
		var h db.Holder
		var fw sql.NullInt64
		if err := rows.Scan(&h.Slot, &h.BotID, &h.FileID, &h.InFlight, &fw, &h.ChatID, &h.MessageID); err != nil {
			return err
		}
		if t := nullTime(fw); !t.IsZero() && t.After(time.Now()) {
			h.FloodWaitUntil = t
		}
		hs = append(hs, h)
		return nil
	}, `
SELECT b.slot, b.bot_id, b.file_id,
       (SELECT count(*) FROM bot_sends s WHERE s.bot_id = b.bot_id AND s.started_at > ?) AS n,
       l.flood_wait_until, b.chat_id, b.message_id
FROM file_bot_ids b LEFT JOIN bot_load l ON l.bot_id = b.bot_id
WHERE b.file_unique_id = ?
ORDER BY coalesce(l.flood_wait_until > ?, 0), n, l.last_used_at NULLS FIRST, b.slot`,
		now-lease.Microseconds(), uniqueID, now)
	if err != nil {
		return nil, fmt.Errorf("holders of %s: %w", uniqueID, err)
	}
	return hs, nil
}

// BotSendLease starts a send: three statements in one transaction or
// savepoint.
func (e executor) BotSendLease(ctx context.Context, botID int64, lease time.Duration) (int64, error) {
	var id int64
	err := e.atomic(ctx, func(e executor) error {
		now := e.clock()
		if _, err := e.exec(ctx, `DELETE FROM bot_sends WHERE bot_id = ? AND started_at < ?`, botID, now-lease.Microseconds()); err != nil {
			return err
		}
		if _, err := e.exec(ctx, `
INSERT INTO bot_load (bot_id, last_used_at, updated_at) VALUES (?, ?, ?)
ON CONFLICT (bot_id) DO UPDATE SET last_used_at = excluded.last_used_at, updated_at = excluded.updated_at`,
			botID, now, now); err != nil {
			return err
		}
		return e.queryRow(ctx, []any{&id}, `INSERT INTO bot_sends (bot_id, started_at) VALUES (?, ?) RETURNING id`, botID, now)
	})
	if err != nil {
		return 0, fmt.Errorf("lease a send of bot %d: %w", botID, err)
	}
	return id, nil
}

// BotSendRelease ends a send: two statements in one transaction or
// savepoint.
func (e executor) BotSendRelease(ctx context.Context, p *db.BotSendReleaseParams) error {
	var wait sql.NullInt64
	if !p.FloodWaitUntil.IsZero() {
		wait = sql.NullInt64{Int64: micros(p.FloodWaitUntil), Valid: true}
	}
	sends, failures := 0, 1
	if p.OK {
		sends, failures = 1, 0
	}
	err := e.atomic(ctx, func(e executor) error {
		now := e.clock()
		if _, err := e.exec(ctx, `DELETE FROM bot_sends WHERE id = ?`, p.Lease); err != nil {
			return err
		}
		_, err := e.exec(ctx, `
INSERT INTO bot_load (bot_id, sends, failures, flood_wait_until, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (bot_id) DO UPDATE SET sends = bot_load.sends + excluded.sends,
       failures = bot_load.failures + excluded.failures,
       flood_wait_until = coalesce(excluded.flood_wait_until,
                                   CASE WHEN bot_load.flood_wait_until > ? THEN bot_load.flood_wait_until END),
       updated_at = excluded.updated_at`, p.BotID, sends, failures, wait, now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("end a send of bot %d: %w", p.BotID, err)
	}
	return nil
}

// BotLoadList reads every bot's counters.
func (e executor) BotLoadList(ctx context.Context) ([]db.BotLoad, error) {
	var out []db.BotLoad
	err := e.query(ctx, func(rows *sql.Rows) error {
		var l db.BotLoad
		var fw, used sql.NullInt64
		if err := rows.Scan(&l.BotID, &l.Sends, &l.Failures, &fw, &used); err != nil {
			return err
		}
		l.FloodWaitUntil, l.LastUsedAt = nullTime(fw), nullTime(used)
		out = append(out, l)
		return nil
	}, `SELECT bot_id, sends, failures, flood_wait_until, last_used_at FROM bot_load ORDER BY bot_id`)
	if err != nil {
		return nil, fmt.Errorf("list bot load: %w", err)
	}
	return out, nil
}

// BotSendsInFlight counts the young leases by bot.
func (e executor) BotSendsInFlight(ctx context.Context, lease time.Duration) (map[int64]int, error) {
	out := map[int64]int{}
	err := e.query(ctx, func(rows *sql.Rows) error {
		var bot int64
		var n int
		if err := rows.Scan(&bot, &n); err != nil {
			return err
		}
		out[bot] = n
		return nil
	}, `SELECT bot_id, count(*) FROM bot_sends WHERE started_at >= ? GROUP BY bot_id`, e.clock()-lease.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("count sends in flight: %w", err)
	}
	return out, nil
}

// int4 refuses what a Postgres integer column cannot hold (pgx refuses it
// before sending).
func int4(what string, v int) error {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return fmt.Errorf("%s %d is out of range for an integer column", what, v)
	}
	return nil
}

// blob is a NOT NULL bytea as pgx reads it: empty, not nil.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// UploadStateGet reads an upload's state.
func (e executor) UploadStateGet(ctx context.Context, key string) (db.UploadState, error) {
	st := db.UploadState{Key: key}
	var randomID, msgID sql.NullInt64
	var created int64
	err := e.queryRow(ctx, []any{&st.BotID, &st.FileID, &st.Size, &st.PartSize, &st.TotalParts, &st.Big, &st.Acked, &randomID, &msgID, &created}, `
SELECT bot_id, file_id, size, part_size, total_parts, big, acked, random_id, message_id, created_at
FROM mtproto_uploads WHERE key = ?`, key)
	if err != nil {
		return db.UploadState{}, fmt.Errorf("load upload state %q: %w", key, notFound(err))
	}
	st.Acked = blob(st.Acked)
	st.RandomID, st.MessageID = randomID.Int64, int(msgID.Int64)
	st.CreatedAt = timeOf(created)
	return st, nil
}

// UploadStateBegin upserts a fresh attempt.
func (e executor) UploadStateBegin(ctx context.Context, st *db.UploadState) (time.Time, int64, error) {
	if err := int4("part size", st.PartSize); err != nil {
		return time.Time{}, 0, fmt.Errorf("begin upload state %q: %w", st.Key, err)
	}
	if err := int4("total parts", st.TotalParts); err != nil {
		return time.Time{}, 0, fmt.Errorf("begin upload state %q: %w", st.Key, err)
	}
	var created, randomID int64
	now := e.clock()
	err := e.queryRow(ctx, []any{&created, &randomID}, `
INSERT INTO mtproto_uploads (key, bot_id, file_id, size, part_size, total_parts, big, acked, acked_count, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)
ON CONFLICT (key) DO UPDATE SET bot_id = excluded.bot_id, file_id = excluded.file_id, size = excluded.size,
  part_size = excluded.part_size, total_parts = excluded.total_parts, big = excluded.big,
  acked = excluded.acked, acked_count = 0, created_at = excluded.created_at, updated_at = excluded.updated_at
RETURNING created_at, coalesce(random_id, 0)`,
		st.Key, st.BotID, st.FileID, st.Size, st.PartSize, st.TotalParts, st.Big, blob(st.Acked), now, now)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("begin upload state %q: %w", st.Key, err)
	}
	return timeOf(created), randomID, nil
}

// UploadStateSaveAcked overwrites the bitmap. Outside a transaction the
// commit waits for the WAL write, not its fsync (synchronous NORMAL).
func (e executor) UploadStateSaveAcked(ctx context.Context, key string, fileID int64, acked []byte, count int) error {
	if err := int4("acked count", count); err != nil {
		return fmt.Errorf("save acked parts of %q: %w", key, err)
	}
	_, err := e.exec(ctx, `UPDATE mtproto_uploads SET acked = ?, acked_count = ?, updated_at = ?
WHERE key = ? AND file_id = ? AND acked_count <= ?`, acked, count, e.clock(), key, fileID, count)
	if err != nil {
		return fmt.Errorf("save acked parts of %q: %w", key, err)
	}
	return nil
}

// UploadStateEnsureRandomID keeps the first random_id stored.
func (e executor) UploadStateEnsureRandomID(ctx context.Context, key string, randomID int64) (int64, error) {
	var got int64
	now := e.clock()
	err := e.queryRow(ctx, []any{&got}, `
INSERT INTO mtproto_uploads (key, bot_id, file_id, size, part_size, total_parts, big, acked, random_id, created_at, updated_at)
VALUES (?, 0, 0, 0, 0, 0, 0, x'', ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET random_id = coalesce(mtproto_uploads.random_id, excluded.random_id),
  updated_at = excluded.updated_at
RETURNING random_id`, key, randomID, now, now)
	if err != nil {
		return 0, fmt.Errorf("store random_id for %q: %w", key, err)
	}
	return got, nil
}

// UploadStateMarkSent records the post's message id.
func (e executor) UploadStateMarkSent(ctx context.Context, key string, messageID int) error {
	err := int4("message id", messageID)
	if err == nil {
		_, err = e.exec(ctx, `UPDATE mtproto_uploads SET message_id = ?, updated_at = ? WHERE key = ?`, messageID, e.clock(), key)
	}
	if err != nil {
		return fmt.Errorf("mark %q sent as message %d: %w", key, messageID, err)
	}
	return nil
}

// UploadStateInvalidate clears the attempt's file id (the random_id stays).
func (e executor) UploadStateInvalidate(ctx context.Context, key string) error {
	if _, err := e.exec(ctx, `UPDATE mtproto_uploads SET file_id = 0, updated_at = ? WHERE key = ?`, e.clock(), key); err != nil {
		return fmt.Errorf("invalidate upload state %q: %w", key, err)
	}
	return nil
}

// UploadStateDelete forgets an upload.
func (e executor) UploadStateDelete(ctx context.Context, key string) error {
	if _, err := e.exec(ctx, `DELETE FROM mtproto_uploads WHERE key = ?`, key); err != nil {
		return fmt.Errorf("delete upload state %q: %w", key, err)
	}
	return nil
}

// SessionGet reads a sealed session.
func (e executor) SessionGet(ctx context.Context, botID int64) (db.Session, error) {
	s := db.Session{BotID: botID}
	if err := e.queryRow(ctx, []any{&s.Nonce, &s.Data}, `SELECT nonce, data FROM mtproto_sessions WHERE bot_id = ?`, botID); err != nil {
		return db.Session{}, fmt.Errorf("load session of bot %d: %w", botID, notFound(err))
	}
	s.Nonce, s.Data = blob(s.Nonce), blob(s.Data)
	return s, nil
}

// SessionSave upserts a sealed session.
func (e executor) SessionSave(ctx context.Context, s db.Session) error {
	_, err := e.exec(ctx, `
INSERT INTO mtproto_sessions (bot_id, nonce, data, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (bot_id) DO UPDATE SET nonce = excluded.nonce, data = excluded.data, updated_at = excluded.updated_at`,
		s.BotID, s.Nonce, s.Data, e.clock())
	if err != nil {
		return fmt.Errorf("store session of bot %d: %w", s.BotID, err)
	}
	return nil
}
