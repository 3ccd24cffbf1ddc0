package dbpg

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/db"
)

// planned runs a statement unnamed, so Postgres plans it for the arrays it
// gets each time: a plan cached while the tables were small (a new
// deployment) scans them whole once they have grown, until autovacuum's
// next ANALYZE. (plan_cache_mode=force_custom_plan would do the same, but it
// also re-plans every foreign-key check the statements fire, one per row:
// half of Postgres's planning time in the end-to-end bench.)
const planned = pgx.QueryExecModeExec

// fileColumns are a files row (alias f) in the order scanFile reads them.
const fileColumns = `f.file_unique_id, f.file_name, f.file_size, f.mime_type, f.file_type, f.dc_id, f.caption,
       coalesce(f.duration, 0), coalesce(f.width, 0), coalesce(f.height, 0),
       f.first_chat_id, f.first_message_id, f.origin, f.created_at`

// fileDests are the scan destinations of fileColumns, followed by more.
func fileDests(f *db.File, more ...any) []any {
	return append([]any{&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
		&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &f.CreatedAt}, more...)
}

// indexLockKey is the advisory lock key ("ferryidx") a batch holds while it
// creates R2 objects for files the database does not know yet.
const indexLockKey int64 = 0x6665727279696478

// FileLockNew takes the new-files lock until the transaction ends.
func (e executor) FileLockNew(ctx context.Context) error {
	if _, err := e.q.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, indexLockKey); err != nil {
		return fmt.Errorf("lock new files: %w", err)
	}
	return nil
}

// sqlUnknownFiles lists the files the database does not have (a LATERAL
// key lookup each: an anti-join was planned as a scan of all files).
const sqlUnknownFiles = `
SELECT t.u FROM (SELECT DISTINCT u FROM unnest($1::text[]) AS u) t
LEFT JOIN LATERAL (SELECT true AS known FROM files WHERE file_unique_id = t.u LIMIT 1) f ON true
WHERE f.known IS NULL`

// FileUnknownMany returns the unknown ones of uniqueIDs.
func (e executor) FileUnknownMany(ctx context.Context, uniqueIDs []string) ([]string, error) {
	rows, err := e.q.Query(ctx, sqlUnknownFiles, planned, uniqueIDs)
	if err != nil {
		return nil, fmt.Errorf("look up %d files: %w", len(uniqueIDs), err)
	}
	unknown, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up %d files: %w", len(uniqueIDs), err)
	}
	return unknown, nil
}

// sqlClaimMany: one row per post, from the lowest slot among the sightings
// of it. (The LATERAL lookups probe the files key for each row; an EXISTS
// here was planned as a scan of the whole files table.) A post already
// claimed, by an earlier batch or one still open (which this waits for),
// is left alone.
const sqlClaimMany = `
INSERT INTO channel_posts (chat_id, message_id, file_unique_id, claimed_by_slot, claimed_by_bot, existing)
SELECT DISTINCT ON (c, m) c, m, u, s, b, f.known IS NOT NULL
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::bigint[]) AS t(c, m, u, s, b)
LEFT JOIN LATERAL (SELECT true AS known FROM files WHERE file_unique_id = t.u LIMIT 1) f ON true
ORDER BY c, m, s
ON CONFLICT (chat_id, message_id) DO NOTHING
RETURNING chat_id, message_id, claimed_by_slot, existing`

// PostClaimMany claims posts.
func (e executor) PostClaimMany(ctx context.Context, p *db.PostClaimManyParams) ([]db.PostClaim, error) {
	rows, err := e.q.Query(ctx, sqlClaimMany, planned, p.ChatID, p.MessageID, p.UniqueID, p.Slot, p.BotID)
	if err != nil {
		return nil, fmt.Errorf("claim %d posts: %w", len(p.ChatID), err)
	}
	defer rows.Close()
	var out []db.PostClaim
	for rows.Next() {
		var c db.PostClaim
		if err := rows.Scan(&c.ChatID, &c.MessageID, &c.Slot, &c.Existing); err != nil {
			return nil, fmt.Errorf("read claims: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim %d posts: %w", len(p.ChatID), err)
	}
	return out, nil
}

// sqlFilesMany inserts the file rows, then the decision of each post
// claimed as new: "stored" only for the file's first post when this
// statement created the row from this deployment's own sighting (origin
// 'local'); a row created from an R2 hit, or by a concurrent batch, means
// the file already existed.
const sqlFilesMany = `
WITH t AS (
    SELECT DISTINCT ON (u) *
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[],
                $8::int[], $9::int[], $10::int[], $11::bigint[], $12::bigint[], $13::text[])
         AS t(u, name, size, mime, typ, dc, caption, dur, w, h, c, m, origin)
    ORDER BY u, c, m
), ins AS (
    INSERT INTO files (file_unique_id, file_name, file_size, mime_type, file_type, dc_id, caption,
                       duration, width, height, first_chat_id, first_message_id, origin)
    SELECT u, name, size, mime, typ, dc, caption, nullif(dur, 0), nullif(w, 0), nullif(h, 0), c, m, origin
    FROM t ORDER BY u
    ON CONFLICT (file_unique_id) DO NOTHING
    RETURNING file_unique_id, origin, first_chat_id, first_message_id
)
UPDATE channel_posts cp
SET existing = coalesce((
    SELECT ins.origin = 'r2' OR ins.first_chat_id <> cp.chat_id OR ins.first_message_id <> cp.message_id
    FROM ins WHERE ins.file_unique_id = cp.file_unique_id), true)
FROM unnest($14::bigint[], $15::bigint[]) AS n(c, m)
WHERE cp.chat_id = n.c AND cp.message_id = n.m`

// FileInsertMany writes files and settles new posts' decisions.
func (e executor) FileInsertMany(ctx context.Context, p *db.FileInsertManyParams) error {
	_, err := e.q.Exec(ctx, sqlFilesMany, planned, p.UniqueID, p.Name, p.Size, p.MimeType, p.Type, p.DC, p.Caption,
		p.Duration, p.Width, p.Height, p.ChatID, p.MessageID, p.Origin, p.NewChatID, p.NewMessageID)
	if err != nil {
		return fmt.Errorf("write %d files: %w", len(p.UniqueID), err)
	}
	return nil
}

// sqlBotIDsMany writes each bot's file_id, one row per (file, slot); when
// one bot saw a file in two posts, the later post's file_id is kept. A
// repeat of the same file_id changes nothing; a new one replaces it and
// marks its file in r2_pending with a fresh gen, unless it is one of the
// file_ids ($7..$9) the caller put in the object it created. Both tables
// are written in key order, as every batch and R2 write takes them.
const sqlBotIDsMany = `
WITH up AS (
    INSERT INTO file_bot_ids (file_unique_id, slot, bot_id, file_id, chat_id, message_id)
    SELECT DISTINCT ON (u, s) u, s, b, f, c, m
    FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[]) AS t(u, s, b, f, c, m)
    ORDER BY u, s, c DESC, m DESC
    ON CONFLICT (file_unique_id, slot) DO UPDATE
    SET bot_id = EXCLUDED.bot_id, file_id = EXCLUDED.file_id, chat_id = EXCLUDED.chat_id,
        message_id = EXCLUDED.message_id, updated_at = now()
    WHERE file_bot_ids.file_id <> EXCLUDED.file_id OR file_bot_ids.bot_id <> EXCLUDED.bot_id
    RETURNING file_unique_id, slot, file_id
)
INSERT INTO r2_pending (file_unique_id)
SELECT DISTINCT up.file_unique_id FROM up
WHERE NOT EXISTS (SELECT FROM unnest($7::text[], $8::int[], $9::text[]) AS c(u, s, f)
                  WHERE c.u = up.file_unique_id AND c.s = up.slot AND c.f = up.file_id)
ORDER BY 1
ON CONFLICT (file_unique_id) DO UPDATE SET gen = EXCLUDED.gen, changed_at = now()
RETURNING file_unique_id`

// FileBotIDUpsertMany writes file_ids and marks files for R2.
func (e executor) FileBotIDUpsertMany(ctx context.Context, p *db.FileBotIDUpsertManyParams) ([]string, error) {
	rows, err := e.q.Query(ctx, sqlBotIDsMany, planned, p.UniqueID, p.Slot, p.BotID, p.FileID, p.ChatID, p.MessageID,
		p.CreatedUniqueID, p.CreatedSlot, p.CreatedFileID)
	if err != nil {
		return nil, fmt.Errorf("write %d file_ids: %w", len(p.UniqueID), err)
	}
	marked, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("write %d file_ids: %w", len(p.UniqueID), err)
	}
	return marked, nil
}

// sqlOutcomesMany reads every (post, file)'s outcome after the writes.
const sqlOutcomesMany = `
SELECT t.c, t.m, ` + fileColumns + `, cp.existing, cp.claimed_by_slot, coalesce(cp.reply_message_id, 0)
FROM (SELECT DISTINCT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(c, m, u)) t
JOIN files f ON f.file_unique_id = t.u
JOIN channel_posts cp ON cp.chat_id = t.c AND cp.message_id = t.m`

// PostOutcomeMany reads outcomes.
func (e executor) PostOutcomeMany(ctx context.Context, p *db.PostOutcomeManyParams) ([]db.PostOutcome, error) {
	out, err := e.outcomes(ctx, sqlOutcomesMany, p.ChatID, p.MessageID, p.UniqueID)
	if err != nil {
		return nil, fmt.Errorf("read %d outcomes: %w", len(p.ChatID), err)
	}
	return out, nil
}

// PostPendingReplyMany reads unanswered claims.
func (e executor) PostPendingReplyMany(ctx context.Context, posts []db.PostRef) ([]db.PostOutcome, error) {
	chats, msgs := make([]int64, len(posts)), make([]int64, len(posts))
	for i, p := range posts {
		chats[i], msgs[i] = p.ChatID, p.MessageID
	}
	out, err := e.outcomes(ctx, `
SELECT cp.chat_id, cp.message_id, `+fileColumns+`, cp.existing, cp.claimed_by_slot, 0
FROM unnest($1::bigint[], $2::bigint[]) AS t(c, m)
JOIN channel_posts cp ON cp.chat_id = t.c AND cp.message_id = t.m
JOIN files f ON f.file_unique_id = cp.file_unique_id
WHERE cp.replied_at IS NULL
ORDER BY cp.chat_id, cp.message_id`, chats, msgs)
	if err != nil {
		return nil, fmt.Errorf("load %d posts to answer: %w", len(posts), err)
	}
	return out, nil
}

func (e executor) outcomes(ctx context.Context, sql string, args ...any) ([]db.PostOutcome, error) {
	rows, err := e.q.Query(ctx, sql, append([]any{planned}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []db.PostOutcome
	for rows.Next() {
		var o db.PostOutcome
		if err := rows.Scan(append([]any{&o.ChatID, &o.MessageID}, fileDests(&o.File, &o.Existing, &o.ClaimedBySlot, &o.ReplyMessageID)...)...); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// PostMarkRepliedMany marks posts replied in one statement, in key order so
// two jobs marking the same posts cannot deadlock.
func (e executor) PostMarkRepliedMany(ctx context.Context, sent []db.PostReplied) ([]db.PostRef, error) {
	sent = slices.Clone(sent)
	slices.SortFunc(sent, func(a, b db.PostReplied) int {
		return cmp.Or(cmp.Compare(a.ChatID, b.ChatID), cmp.Compare(a.MessageID, b.MessageID))
	})
	chats, msgs, replies := make([]int64, len(sent)), make([]int64, len(sent)), make([]int64, len(sent))
	for i, r := range sent {
		chats[i], msgs[i], replies[i] = r.ChatID, r.MessageID, r.ReplyMessageID
	}
	var marked []db.PostRef
	err := e.asyncCommit(ctx, func(b *pgx.Batch) {
		b.Queue(`
UPDATE channel_posts cp SET replied_at = now(), reply_message_id = t.r
FROM (SELECT DISTINCT ON (c, m) * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(c, m, r) ORDER BY c, m) t
WHERE cp.chat_id = t.c AND cp.message_id = t.m AND cp.replied_at IS NULL
RETURNING cp.chat_id, cp.message_id`, chats, msgs, replies).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var p db.PostRef
				if err := rows.Scan(&p.ChatID, &p.MessageID); err != nil {
					return err
				}
				marked = append(marked, p)
			}
			return rows.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mark %d posts replied: %w", len(sent), err)
	}
	return marked, nil
}

// asyncCommit runs the statements queued by queue in one round trip. On
// the pool they are one implicit transaction whose commit does not wait
// for the WAL flush (synchronous_commit off for it alone): for bookkeeping
// that is cheap to redo, where a lost write only repeats work. In a
// transaction they are part of it.
func (e executor) asyncCommit(ctx context.Context, queue func(*pgx.Batch)) error {
	b := &pgx.Batch{}
	if e.pool != nil {
		// Planned for its arguments too (see planned); the GUC is safe
		// here because these statements fire no foreign-key checks.
		b.Queue(`SELECT set_config('synchronous_commit', 'off', true), set_config('plan_cache_mode', 'force_custom_plan', true)`)
	}
	queue(b)
	return e.q.SendBatch(ctx, b).Close()
}

// FileGet reads one file.
func (e executor) FileGet(ctx context.Context, uniqueID string) (db.File, error) {
	var f db.File
	err := e.q.QueryRow(ctx, `SELECT `+fileColumns+` FROM files f WHERE f.file_unique_id = $1`, uniqueID).Scan(fileDests(&f)...)
	if err != nil {
		return db.File{}, fmt.Errorf("file %s: %w", uniqueID, notFound(err))
	}
	return f, nil
}

// FileFind searches names: each word a LIKE, served by the trigram index
// where pg_trgm is installed.
func (e executor) FileFind(ctx context.Context, p *db.FileFindParams) ([]db.File, int, error) {
	var where []string
	var args []any
	for _, w := range p.Words {
		args = append(args, "%"+likeEscape(w)+"%")
		where = append(where, fmt.Sprintf(`lower(f.file_name) LIKE $%d ESCAPE '\'`, len(args)))
	}
	if len(where) == 0 {
		where = []string{"true"}
	}
	cond := strings.Join(where, " AND ")
	n := len(args)
	rows, err := e.q.Query(ctx, fmt.Sprintf(`
SELECT `+fileColumns+`, count(*) OVER ()
FROM files f
WHERE %s
ORDER BY f.created_at DESC, f.file_unique_id
LIMIT $%d OFFSET $%d`, cond, n+1, n+2), append(args, p.Limit, p.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("find %q: %w", p.Words, err)
	}
	defer rows.Close()
	var files []db.File
	total := 0
	for rows.Next() {
		var f db.File
		if err := rows.Scan(fileDests(&f, &total)...); err != nil {
			return nil, 0, fmt.Errorf("find %q: %w", p.Words, err)
		}
		files = append(files, f)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("find %q: %w", p.Words, err)
	}
	if len(files) == 0 && p.Offset > 0 {
		// Past the last page count(*) OVER () saw no rows: count alone.
		if err := e.q.QueryRow(ctx, `SELECT count(*) FROM files f WHERE `+cond, args...).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("count %q: %w", p.Words, err)
		}
	}
	return files, total, nil
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// FileHeldByAll counts file_ids per file.
func (e executor) FileHeldByAll(ctx context.Context, uniqueIDs []string, slots int) ([]string, error) {
	rows, err := e.q.Query(ctx, `
SELECT file_unique_id FROM file_bot_ids WHERE file_unique_id = ANY($1) AND slot BETWEEN 1 AND $2
GROUP BY 1 HAVING count(*) = $2`, planned, uniqueIDs, slots)
	if err != nil {
		return nil, fmt.Errorf("count file_ids of %d files: %w", len(uniqueIDs), err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("count file_ids of %d files: %w", len(uniqueIDs), err)
	}
	return held, nil
}

// FileSyncGetMany reads files, their file_ids and pending gens in one
// query (one snapshot, so a gen always matches the file_ids read with it).
// The file_ids are gathered per file by key (LATERAL), whatever the planner
// thinks of the table's size: a hash join here scanned all of file_bot_ids.
func (e executor) FileSyncGetMany(ctx context.Context, uniqueIDs []string) ([]db.FileSync, error) {
	rows, err := e.q.Query(ctx, `
SELECT `+fileColumns+`, coalesce(p.gen, 0), b.slots, b.fids
FROM files f
LEFT JOIN r2_pending p ON p.file_unique_id = f.file_unique_id
CROSS JOIN LATERAL (
    SELECT array_agg(slot ORDER BY slot) AS slots, array_agg(file_id ORDER BY slot) AS fids
    FROM file_bot_ids WHERE file_unique_id = f.file_unique_id
) b
WHERE f.file_unique_id = ANY($1) AND b.slots IS NOT NULL`, planned, uniqueIDs)
	if err != nil {
		return nil, fmt.Errorf("load %d files for R2: %w", len(uniqueIDs), err)
	}
	defer rows.Close()
	var out []db.FileSync
	for rows.Next() {
		var fs db.FileSync
		var slots []int32
		var fids []string
		if err := rows.Scan(fileDests(&fs.File, &fs.Gen, &slots, &fids)...); err != nil {
			return nil, fmt.Errorf("load files for R2: %w", err)
		}
		fs.FileIDs = make(map[int]string, len(slots))
		for i, slot := range slots {
			fs.FileIDs[int(slot)] = fids[i]
		}
		out = append(out, fs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load %d files for R2: %w", len(uniqueIDs), err)
	}
	return out, nil
}

// FileListAfter pages through files by key.
func (e executor) FileListAfter(ctx context.Context, after string, limit int) ([]string, error) {
	return e.strings(ctx, "list files", `
SELECT file_unique_id FROM files WHERE file_unique_id > $1 ORDER BY file_unique_id LIMIT $2`, after, limit)
}

// R2PendingListAfter pages through files marked for R2.
func (e executor) R2PendingListAfter(ctx context.Context, olderThan time.Duration, after string, limit int) ([]string, error) {
	return e.strings(ctx, "list files pending for R2", `
SELECT file_unique_id FROM r2_pending
WHERE changed_at < now() - make_interval(secs => $2) AND file_unique_id > $1
ORDER BY file_unique_id LIMIT $3`, after, olderThan.Seconds(), limit)
}

func (e executor) strings(ctx context.Context, what, sql string, args ...any) ([]string, error) {
	rows, err := e.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// R2PendingDeleteMany clears exactly the marks read with the file_ids
// written: a file changed meanwhile has a new gen and stays pending. Rows
// are locked in key order, as the index marks them, so the two cannot
// deadlock. Off the pool it commits without waiting for the WAL flush: a
// mark lost to a Postgres crash only makes the sweep write the file again.
func (e executor) R2PendingDeleteMany(ctx context.Context, written []db.R2Written) error {
	us, gens := make([]string, len(written)), make([]int64, len(written))
	for i, w := range written {
		us[i], gens[i] = w.UniqueID, w.Gen
	}
	err := e.asyncCommit(ctx, func(b *pgx.Batch) {
		b.Queue(`
WITH lk AS (
    SELECT p.ctid AS t
    FROM unnest($1::text[], $2::bigint[]) AS w(u, g)
    JOIN r2_pending p ON p.file_unique_id = w.u AND p.gen = w.g
    ORDER BY p.file_unique_id
    FOR UPDATE OF p
)
DELETE FROM r2_pending WHERE ctid = ANY (ARRAY(SELECT t FROM lk))`, us, gens)
	})
	if err != nil {
		return fmt.Errorf("mark %d files synced: %w", len(us), err)
	}
	return nil
}
