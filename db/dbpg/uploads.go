package dbpg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/db"
)

// notFound turns pgx's "no rows" into db.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return db.ErrNotFound
	}
	return err
}

// HolderList ranks the bots holding a file.
func (e executor) HolderList(ctx context.Context, uniqueID string, lease time.Duration) ([]db.Holder, error) {
	rows, err := e.q.Query(ctx, `
SELECT b.slot, b.bot_id, b.file_id, s.n, l.flood_wait_until, b.chat_id, b.message_id
FROM file_bot_ids b LEFT JOIN bot_load l ON l.bot_id = b.bot_id
CROSS JOIN LATERAL (
    SELECT count(*)::int AS n FROM bot_sends
    WHERE bot_id = b.bot_id AND started_at > now() - make_interval(secs => $2)) s
WHERE b.file_unique_id = $1
ORDER BY coalesce(l.flood_wait_until > now(), false), s.n,
         l.last_used_at NULLS FIRST, b.slot`, uniqueID, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("holders of %s: %w", uniqueID, err)
	}
	defer rows.Close()
	var hs []db.Holder
	for rows.Next() {
		var h db.Holder
		var fw *time.Time
		if err := rows.Scan(&h.Slot, &h.BotID, &h.FileID, &h.InFlight, &fw, &h.ChatID, &h.MessageID); err != nil {
			return nil, fmt.Errorf("holders of %s: %w", uniqueID, err)
		}
		if fw != nil && fw.After(time.Now()) {
			h.FloodWaitUntil = *fw
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("holders of %s: %w", uniqueID, err)
	}
	return hs, nil
}

// BotSendLease starts a send in one statement.
func (e executor) BotSendLease(ctx context.Context, botID int64, lease time.Duration) (int64, error) {
	var id int64
	err := e.q.QueryRow(ctx, `
WITH stale AS (
    DELETE FROM bot_sends WHERE bot_id = $1 AND started_at < now() - make_interval(secs => $2)
), used AS (
    INSERT INTO bot_load (bot_id, last_used_at) VALUES ($1, now())
    ON CONFLICT (bot_id) DO UPDATE SET last_used_at = now(), updated_at = now()
)
INSERT INTO bot_sends (bot_id) VALUES ($1) RETURNING id`, botID, lease.Seconds()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("lease a send of bot %d: %w", botID, err)
	}
	return id, nil
}

// BotSendRelease ends a send in one statement.
func (e executor) BotSendRelease(ctx context.Context, p *db.BotSendReleaseParams) error {
	var wait *time.Time
	if !p.FloodWaitUntil.IsZero() {
		wait = &p.FloodWaitUntil
	}
	_, err := e.q.Exec(ctx, `
WITH ended AS (DELETE FROM bot_sends WHERE id = $4)
INSERT INTO bot_load (bot_id, sends, failures, flood_wait_until)
VALUES ($1, CASE WHEN $2 THEN 1 ELSE 0 END, CASE WHEN $2 THEN 0 ELSE 1 END, $3)
ON CONFLICT (bot_id) DO UPDATE SET sends = bot_load.sends + EXCLUDED.sends,
       failures = bot_load.failures + EXCLUDED.failures,
       flood_wait_until = coalesce($3, CASE WHEN bot_load.flood_wait_until > now() THEN bot_load.flood_wait_until END),
       updated_at = now()`, p.BotID, p.OK, wait, p.Lease)
	if err != nil {
		return fmt.Errorf("end a send of bot %d: %w", p.BotID, err)
	}
	return nil
}

// BotSendsInFlight counts the young leases by bot.
func (e executor) BotSendsInFlight(ctx context.Context, lease time.Duration) (map[int64]int, error) {
	rows, err := e.q.Query(ctx, `
SELECT bot_id, count(*)::int FROM bot_sends
WHERE started_at >= now() - make_interval(secs => $1) GROUP BY bot_id`, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("count sends in flight: %w", err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var bot int64
		var n int
		if err := rows.Scan(&bot, &n); err != nil {
			return nil, fmt.Errorf("count sends in flight: %w", err)
		}
		out[bot] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count sends in flight: %w", err)
	}
	return out, nil
}

// BotLoadList reads every bot's counters.
func (e executor) BotLoadList(ctx context.Context) ([]db.BotLoad, error) {
	rows, err := e.q.Query(ctx, `
SELECT bot_id, sends, failures, flood_wait_until, last_used_at
FROM bot_load ORDER BY bot_id`)
	if err != nil {
		return nil, fmt.Errorf("list bot load: %w", err)
	}
	defer rows.Close()
	var out []db.BotLoad
	for rows.Next() {
		var l db.BotLoad
		var fw, used *time.Time
		if err := rows.Scan(&l.BotID, &l.Sends, &l.Failures, &fw, &used); err != nil {
			return nil, fmt.Errorf("list bot load: %w", err)
		}
		if fw != nil {
			l.FloodWaitUntil = *fw
		}
		if used != nil {
			l.LastUsedAt = *used
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bot load: %w", err)
	}
	return out, nil
}

// UploadStateGet reads an upload's state.
func (e executor) UploadStateGet(ctx context.Context, key string) (db.UploadState, error) {
	st := db.UploadState{Key: key}
	var randomID *int64
	var msgID *int32
	err := e.q.QueryRow(ctx, `
SELECT bot_id, file_id, size, part_size, total_parts, big, acked, random_id, message_id, created_at
FROM mtproto_uploads WHERE key = $1`, key).Scan(
		&st.BotID, &st.FileID, &st.Size, &st.PartSize, &st.TotalParts, &st.Big, &st.Acked, &randomID, &msgID, &st.CreatedAt)
	if err != nil {
		return db.UploadState{}, fmt.Errorf("load upload state %q: %w", key, notFound(err))
	}
	if randomID != nil {
		st.RandomID = *randomID
	}
	if msgID != nil {
		st.MessageID = int(*msgID)
	}
	return st, nil
}

// UploadStateBegin upserts a fresh attempt.
func (e executor) UploadStateBegin(ctx context.Context, st *db.UploadState) (time.Time, int64, error) {
	var created time.Time
	var randomID int64
	acked := st.Acked
	if acked == nil {
		acked = []byte{}
	}
	err := e.q.QueryRow(ctx, `
INSERT INTO mtproto_uploads (key, bot_id, file_id, size, part_size, total_parts, big, acked, acked_count, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, now(), now())
ON CONFLICT (key) DO UPDATE SET bot_id = EXCLUDED.bot_id, file_id = EXCLUDED.file_id, size = EXCLUDED.size,
  part_size = EXCLUDED.part_size, total_parts = EXCLUDED.total_parts, big = EXCLUDED.big,
  acked = EXCLUDED.acked, acked_count = 0, created_at = now(), updated_at = now()
RETURNING created_at, coalesce(random_id, 0)`,
		st.Key, st.BotID, st.FileID, st.Size, st.PartSize, st.TotalParts, st.Big, acked).Scan(&created, &randomID)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("begin upload state %q: %w", st.Key, err)
	}
	return created, randomID, nil
}

// UploadStateSaveAcked overwrites the bitmap in one round trip (a batch)
// with an asynchronous commit: a save is a progress hint that a database
// crash may lose (its parts are then sent again), and two may be in flight
// per upload, so it should not wait for the WAL flush.
func (e executor) UploadStateSaveAcked(ctx context.Context, key string, fileID int64, acked []byte, count int) error {
	const update = `UPDATE mtproto_uploads SET acked = $3, acked_count = $4, updated_at = now()
WHERE key = $1 AND file_id = $2 AND acked_count <= $4`
	b := &pgx.Batch{}
	if e.pool != nil {
		b.Queue(`BEGIN`)
		b.Queue(`SET LOCAL synchronous_commit = off`)
		b.Queue(update, key, fileID, acked, count)
		b.Queue(`COMMIT`)
	} else {
		b.Queue(update, key, fileID, acked, count)
	}
	if err := e.q.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save acked parts of %q: %w", key, err)
	}
	return nil
}

// UploadStateEnsureRandomID keeps the first random_id stored.
func (e executor) UploadStateEnsureRandomID(ctx context.Context, key string, randomID int64) (int64, error) {
	var got int64
	err := e.q.QueryRow(ctx, `
INSERT INTO mtproto_uploads (key, bot_id, file_id, size, part_size, total_parts, big, acked, random_id)
VALUES ($1, 0, 0, 0, 0, 0, false, ''::bytea, $2)
ON CONFLICT (key) DO UPDATE SET random_id = coalesce(mtproto_uploads.random_id, EXCLUDED.random_id), updated_at = now()
RETURNING random_id`, key, randomID).Scan(&got)
	if err != nil {
		return 0, fmt.Errorf("store random_id for %q: %w", key, err)
	}
	return got, nil
}

// UploadStateMarkSent records the post's message id.
func (e executor) UploadStateMarkSent(ctx context.Context, key string, messageID int) error {
	if _, err := e.q.Exec(ctx, `UPDATE mtproto_uploads SET message_id = $2, updated_at = now() WHERE key = $1`, key, messageID); err != nil {
		return fmt.Errorf("mark %q sent as message %d: %w", key, messageID, err)
	}
	return nil
}

// UploadStateInvalidate clears the attempt's file id (the random_id stays).
func (e executor) UploadStateInvalidate(ctx context.Context, key string) error {
	if _, err := e.q.Exec(ctx, `UPDATE mtproto_uploads SET file_id = 0, updated_at = now() WHERE key = $1`, key); err != nil {
		return fmt.Errorf("invalidate upload state %q: %w", key, err)
	}
	return nil
}

// UploadStateDelete forgets an upload.
func (e executor) UploadStateDelete(ctx context.Context, key string) error {
	if _, err := e.q.Exec(ctx, `DELETE FROM mtproto_uploads WHERE key = $1`, key); err != nil {
		return fmt.Errorf("delete upload state %q: %w", key, err)
	}
	return nil
}

// SessionGet reads a sealed session.
func (e executor) SessionGet(ctx context.Context, botID int64) (db.Session, error) {
	s := db.Session{BotID: botID}
	err := e.q.QueryRow(ctx, `SELECT nonce, data FROM mtproto_sessions WHERE bot_id = $1`, botID).Scan(&s.Nonce, &s.Data)
	if err != nil {
		return db.Session{}, fmt.Errorf("load session of bot %d: %w", botID, notFound(err))
	}
	return s, nil
}

// SessionSave upserts a sealed session.
func (e executor) SessionSave(ctx context.Context, s db.Session) error {
	_, err := e.q.Exec(ctx, `
INSERT INTO mtproto_sessions (bot_id, nonce, data, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (bot_id) DO UPDATE SET nonce = EXCLUDED.nonce, data = EXCLUDED.data, updated_at = now()`,
		s.BotID, s.Nonce, s.Data)
	if err != nil {
		return fmt.Errorf("store session of bot %d: %w", s.BotID, err)
	}
	return nil
}
