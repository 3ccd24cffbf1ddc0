package dbsqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// fileColumns are a files row (alias f) in the order fileRow reads them.
const fileColumns = `f.file_unique_id, f.file_name, f.file_size, f.mime_type, f.file_type, f.dc_id, f.caption,
       coalesce(f.duration, 0), coalesce(f.width, 0), coalesce(f.height, 0),
       f.first_chat_id, f.first_message_id, f.origin, f.created_at`

// fileRow scans fileColumns.
type fileRow struct {
	f       db.File
	created int64
}

// dests are the scan destinations of fileColumns, followed by more.
func (r *fileRow) dests(more ...any) []any {
	f := &r.f
	return append([]any{&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
		&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &r.created}, more...)
}

func (r *fileRow) file() db.File {
	f := r.f
	f.CreatedAt = timeOf(r.created)
	return f
}

// errColumns: the columns of a many-rows call differ in length.
var errColumns = errors.New("columns of different lengths")

func sameLen(n int, lens ...int) error {
	for _, l := range lens {
		if l != n {
			return errColumns
		}
	}
	return nil
}

type postKey struct{ c, m int64 }

func comparePosts(a, b postKey) int { return cmp.Or(cmp.Compare(a.c, b.c), cmp.Compare(a.m, b.m)) }

// FileLockNew does nothing: Postgres's new-files lock is held here by every
// transaction, which holds the database's write lock from BEGIN IMMEDIATE
// until it ends, so no two batches create R2 objects at once.
func (e executor) FileLockNew(ctx context.Context) error { return nil }

// FileUnknownMany returns the unknown ones of uniqueIDs.
func (e executor) FileUnknownMany(ctx context.Context, uniqueIDs []string) ([]string, error) {
	arg := jsonStrings(uniqueIDs)
	unknown, err := e.strings(ctx, `
SELECT DISTINCT t.value FROM json_each(?) t
WHERE NOT EXISTS (SELECT 1 FROM files WHERE file_unique_id = t.value)`, arg)
	if err != nil {
		return nil, fmt.Errorf("look up %d files: %w", len(uniqueIDs), err)
	}
	return unknown, nil
}

// PostClaimMany claims posts in one statement: one row per post, from the
// lowest slot among its sightings (the first of them on a tie), chosen
// here as DISTINCT ON chooses it. A post already claimed is left alone (no
// open claim of another transaction can exist to wait for).
func (e executor) PostClaimMany(ctx context.Context, p *db.PostClaimManyParams) ([]db.PostClaim, error) {
	n := len(p.ChatID)
	if err := sameLen(n, len(p.MessageID), len(p.UniqueID), len(p.Slot), len(p.BotID)); err != nil {
		return nil, fmt.Errorf("claim %d posts: %w", n, err)
	}
	lowest := map[postKey]int{}
	for i := range n {
		k := postKey{p.ChatID[i], p.MessageID[i]}
		if j, ok := lowest[k]; !ok || p.Slot[i] < p.Slot[j] {
			lowest[k] = i
		}
	}
	rows := make([]int, 0, len(lowest))
	for _, i := range lowest {
		rows = append(rows, i)
	}
	slices.SortFunc(rows, func(a, b int) int {
		return comparePosts(postKey{p.ChatID[a], p.MessageID[a]}, postKey{p.ChatID[b], p.MessageID[b]})
	})
	arg := jsonArray(len(rows), func(i int) []any {
		r := rows[i]
		return []any{p.ChatID[r], p.MessageID[r], p.UniqueID[r], p.Slot[r], p.BotID[r]}
	})
	var out []db.PostClaim
	err := e.query(ctx, func(rows *sql.Rows) error {
		var c db.PostClaim
		if err := rows.Scan(&c.ChatID, &c.MessageID, &c.Slot, &c.Existing); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	}, `
INSERT INTO channel_posts (chat_id, message_id, file_unique_id, claimed_by_slot, claimed_by_bot, existing, created_at)
SELECT t.value ->> 0, t.value ->> 1, t.value ->> 2, t.value ->> 3, t.value ->> 4,
       EXISTS (SELECT 1 FROM files WHERE file_unique_id = t.value ->> 2), ?
FROM json_each(?) t WHERE true ORDER BY t.key
ON CONFLICT (chat_id, message_id) DO NOTHING
RETURNING chat_id, message_id, claimed_by_slot, existing`, e.clock(), arg)
	if err != nil {
		return nil, fmt.Errorf("claim %d posts: %w", n, err)
	}
	slices.SortFunc(out, func(a, b db.PostClaim) int {
		return comparePosts(postKey{a.ChatID, a.MessageID}, postKey{b.ChatID, b.MessageID})
	})
	return out, nil
}

// FileInsertMany inserts the file rows (each from its first post given, as
// DISTINCT ON (u) ORDER BY u, c, m picks it), then settles the decision of
// each post claimed as new: "stored" only for the file's first post when
// this call created the row from this deployment's own sighting (origin
// 'local'). Two statements, in one transaction or savepoint.
func (e executor) FileInsertMany(ctx context.Context, p *db.FileInsertManyParams) error {
	n := len(p.UniqueID)
	err := sameLen(n, len(p.Name), len(p.MimeType), len(p.Type), len(p.Caption), len(p.Origin), len(p.Size),
		len(p.ChatID), len(p.MessageID), len(p.DC), len(p.Duration), len(p.Width), len(p.Height))
	if err == nil {
		err = sameLen(len(p.NewChatID), len(p.NewMessageID))
	}
	if err != nil {
		return fmt.Errorf("write %d files: %w", n, err)
	}
	first := map[string]int{}
	for i, u := range p.UniqueID {
		j, ok := first[u]
		if !ok || comparePosts(postKey{p.ChatID[i], p.MessageID[i]}, postKey{p.ChatID[j], p.MessageID[j]}) < 0 {
			first[u] = i
		}
	}
	rows := make([]int, 0, len(first))
	for _, i := range first {
		rows = append(rows, i)
	}
	slices.SortFunc(rows, func(a, b int) int { return strings.Compare(p.UniqueID[a], p.UniqueID[b]) })
	files := jsonArray(len(rows), func(i int) []any {
		r := rows[i]
		return []any{p.UniqueID[r], p.Name[r], p.Size[r], p.MimeType[r], p.Type[r], p.DC[r], p.Caption[r],
			p.Duration[r], p.Width[r], p.Height[r], p.ChatID[r], p.MessageID[r], p.Origin[r]}
	})
	posts := jsonArray(len(p.NewChatID), func(i int) []any { return []any{p.NewChatID[i], p.NewMessageID[i]} })
	err = e.atomic(ctx, func(e executor) error {
		created, err := e.strings(ctx, `
INSERT INTO files (file_unique_id, file_name, file_size, mime_type, file_type, dc_id, caption,
                   duration, width, height, first_chat_id, first_message_id, origin, created_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
       nullif(value ->> 7, 0), nullif(value ->> 8, 0), nullif(value ->> 9, 0), value ->> 10, value ->> 11, value ->> 12, ?
FROM json_each(?) WHERE true ORDER BY key
ON CONFLICT (file_unique_id) DO NOTHING
RETURNING file_unique_id`, e.clock(), files)
		if err != nil {
			return err
		}
		if len(p.NewChatID) == 0 {
			return nil
		}
		createdArg := jsonStrings(created)
		// The files this call created are, just after, the rows it
		// inserted: their origin and first post are those written.
		_, err = e.exec(ctx, `
UPDATE channel_posts SET existing = coalesce((
    SELECT f.origin = 'r2' OR f.first_chat_id <> channel_posts.chat_id OR f.first_message_id <> channel_posts.message_id
    FROM files f
    WHERE f.file_unique_id = channel_posts.file_unique_id
      AND f.file_unique_id IN (SELECT value FROM json_each(?))), 1)
WHERE (chat_id, message_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))`, createdArg, posts)
		return err
	})
	if err != nil {
		return fmt.Errorf("write %d files: %w", n, err)
	}
	return nil
}

type fileSlot struct {
	u string
	s int32
}

// FileBotIDUpsertMany writes each bot's file_id, one row per (file, slot),
// the latest post's when one bot saw a file in two (chosen here as
// DISTINCT ON ... ORDER BY c DESC, m DESC picks it). A repeat of the same
// file_id changes nothing; a new one replaces it and marks its file in
// r2_pending with a fresh gen, unless it is one of the Created file_ids.
// Two statements and the gen counter, in one transaction or savepoint.
func (e executor) FileBotIDUpsertMany(ctx context.Context, p *db.FileBotIDUpsertManyParams) ([]string, error) {
	n := len(p.UniqueID)
	err := sameLen(n, len(p.FileID), len(p.Slot), len(p.BotID), len(p.ChatID), len(p.MessageID))
	if err == nil {
		err = sameLen(len(p.CreatedUniqueID), len(p.CreatedSlot), len(p.CreatedFileID))
	}
	if err != nil {
		return nil, fmt.Errorf("write %d file_ids: %w", n, err)
	}
	latest := map[fileSlot]int{}
	for i := range n {
		k := fileSlot{p.UniqueID[i], p.Slot[i]}
		j, ok := latest[k]
		if !ok || comparePosts(postKey{p.ChatID[i], p.MessageID[i]}, postKey{p.ChatID[j], p.MessageID[j]}) > 0 {
			latest[k] = i
		}
	}
	rows := make([]int, 0, len(latest))
	for _, i := range latest {
		rows = append(rows, i)
	}
	slices.SortFunc(rows, func(a, b int) int {
		return cmp.Or(strings.Compare(p.UniqueID[a], p.UniqueID[b]), cmp.Compare(p.Slot[a], p.Slot[b]))
	})
	arg := jsonArray(len(rows), func(i int) []any {
		r := rows[i]
		return []any{p.UniqueID[r], p.Slot[r], p.BotID[r], p.FileID[r], p.ChatID[r], p.MessageID[r]}
	})
	type written struct {
		fileSlot
		f string
	}
	created := map[written]bool{}
	for i, u := range p.CreatedUniqueID {
		created[written{fileSlot{u, p.CreatedSlot[i]}, p.CreatedFileID[i]}] = true
	}
	var marked []string
	err = e.atomic(ctx, func(e executor) error {
		now := e.clock()
		changed := map[string]bool{}
		err := e.query(ctx, func(rows *sql.Rows) error {
			var w written
			if err := rows.Scan(&w.u, &w.s, &w.f); err != nil {
				return err
			}
			if !created[w] {
				changed[w.u] = true
			}
			return nil
		}, `
INSERT INTO file_bot_ids (file_unique_id, slot, bot_id, file_id, chat_id, message_id, updated_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?
FROM json_each(?) WHERE true ORDER BY key
ON CONFLICT (file_unique_id, slot) DO UPDATE
SET bot_id = excluded.bot_id, file_id = excluded.file_id, chat_id = excluded.chat_id,
    message_id = excluded.message_id, updated_at = excluded.updated_at
WHERE file_bot_ids.file_id <> excluded.file_id OR file_bot_ids.bot_id <> excluded.bot_id
RETURNING file_unique_id, slot, file_id`, now, arg)
		if err != nil {
			return err
		}
		if len(changed) == 0 {
			return nil
		}
		marked = make([]string, 0, len(changed))
		for u := range changed {
			marked = append(marked, u)
		}
		slices.Sort(marked)
		return e.markPending(ctx, now, marked)
	})
	if err != nil {
		return nil, fmt.Errorf("write %d file_ids: %w", n, err)
	}
	return marked, nil
}

// markPending marks files (sorted) in r2_pending, each with a fresh gen
// from the counter, ascending in key order.
func (e executor) markPending(ctx context.Context, now int64, files []string) error {
	var last int64
	if err := e.queryRow(ctx, []any{&last}, `UPDATE r2_pending_gen SET last = last + ? RETURNING last`, len(files)); err != nil {
		return fmt.Errorf("draw %d gens: %w", len(files), err)
	}
	first := last - int64(len(files)) + 1
	arg := jsonArray(len(files), func(i int) []any { return []any{files[i], first + int64(i)} })
	_, err := e.exec(ctx, `
INSERT INTO r2_pending (file_unique_id, gen, changed_at)
SELECT value ->> 0, value ->> 1, ? FROM json_each(?) WHERE true ORDER BY key
ON CONFLICT (file_unique_id) DO UPDATE SET gen = excluded.gen, changed_at = excluded.changed_at`, now, arg)
	if err != nil {
		return fmt.Errorf("mark %d files for R2: %w", len(files), err)
	}
	return nil
}

// PostOutcomeMany reads every (post, file)'s outcome after the writes.
func (e executor) PostOutcomeMany(ctx context.Context, p *db.PostOutcomeManyParams) ([]db.PostOutcome, error) {
	n := len(p.ChatID)
	if err := sameLen(n, len(p.MessageID), len(p.UniqueID)); err != nil {
		return nil, fmt.Errorf("read %d outcomes: %w", n, err)
	}
	arg := jsonArray(n, func(i int) []any { return []any{p.ChatID[i], p.MessageID[i], p.UniqueID[i]} })
	out, err := e.outcomes(ctx, `
SELECT t.c, t.m, `+fileColumns+`, cp.existing, cp.claimed_by_slot, coalesce(cp.reply_message_id, 0)
FROM (SELECT DISTINCT value ->> 0 AS c, value ->> 1 AS m, value ->> 2 AS u FROM json_each(?)) t
JOIN files f ON f.file_unique_id = t.u
JOIN channel_posts cp ON cp.chat_id = t.c AND cp.message_id = t.m`, arg)
	if err != nil {
		return nil, fmt.Errorf("read %d outcomes: %w", n, err)
	}
	return out, nil
}

// PostPendingReplyMany reads unanswered claims (a post given twice comes
// twice, as from Postgres's join).
func (e executor) PostPendingReplyMany(ctx context.Context, posts []db.PostRef) ([]db.PostOutcome, error) {
	arg := jsonArray(len(posts), func(i int) []any { return []any{posts[i].ChatID, posts[i].MessageID} })
	out, err := e.outcomes(ctx, `
SELECT cp.chat_id, cp.message_id, `+fileColumns+`, cp.existing, cp.claimed_by_slot, 0
FROM json_each(?) t
JOIN channel_posts cp ON cp.chat_id = t.value ->> 0 AND cp.message_id = t.value ->> 1
JOIN files f ON f.file_unique_id = cp.file_unique_id
WHERE cp.replied_at IS NULL
ORDER BY cp.chat_id, cp.message_id`, arg)
	if err != nil {
		return nil, fmt.Errorf("load %d posts to answer: %w", len(posts), err)
	}
	return out, nil
}

func (e executor) outcomes(ctx context.Context, query string, args ...any) ([]db.PostOutcome, error) {
	var out []db.PostOutcome
	err := e.query(ctx, func(rows *sql.Rows) error {
		var o db.PostOutcome
		var r fileRow
		if err := rows.Scan(append([]any{&o.ChatID, &o.MessageID}, r.dests(&o.Existing, &o.ClaimedBySlot, &o.ReplyMessageID)...)...); err != nil {
			return err
		}
		o.File = r.file()
		out = append(out, o)
		return nil
	}, query, args...)
	return out, err
}

// PostMarkRepliedMany marks posts replied in one statement (a post given
// twice with its first reply), and returns them in key order. Outside a
// transaction the commit waits for the WAL write, not its fsync
// (synchronous NORMAL), as Postgres's asynchronous commit does not either.
func (e executor) PostMarkRepliedMany(ctx context.Context, sent []db.PostReplied) ([]db.PostRef, error) {
	seen := map[postKey]bool{}
	var rows []db.PostReplied
	for _, r := range sent {
		if k := (postKey{r.ChatID, r.MessageID}); !seen[k] {
			seen[k] = true
			rows = append(rows, r)
		}
	}
	arg := jsonArray(len(rows), func(i int) []any { return []any{rows[i].ChatID, rows[i].MessageID, rows[i].ReplyMessageID} })
	var marked []db.PostRef
	err := e.query(ctx, func(rows *sql.Rows) error {
		var p db.PostRef
		if err := rows.Scan(&p.ChatID, &p.MessageID); err != nil {
			return err
		}
		marked = append(marked, p)
		return nil
	}, `
UPDATE channel_posts SET replied_at = ?, reply_message_id = t.value ->> 2
FROM json_each(?) t
WHERE channel_posts.chat_id = t.value ->> 0 AND channel_posts.message_id = t.value ->> 1
  AND channel_posts.replied_at IS NULL
RETURNING chat_id, message_id`, e.clock(), arg)
	if err != nil {
		return nil, fmt.Errorf("mark %d posts replied: %w", len(sent), err)
	}
	slices.SortFunc(marked, func(a, b db.PostRef) int {
		return comparePosts(postKey{a.ChatID, a.MessageID}, postKey{b.ChatID, b.MessageID})
	})
	return marked, nil
}

// FileGet reads one file.
func (e executor) FileGet(ctx context.Context, uniqueID string) (db.File, error) {
	var r fileRow
	if err := e.queryRow(ctx, r.dests(), `SELECT `+fileColumns+` FROM files f WHERE f.file_unique_id = ?`, uniqueID); err != nil {
		return db.File{}, fmt.Errorf("file %s: %w", uniqueID, notFound(err))
	}
	return r.file(), nil
}

// FileFind searches names by scanning files: each word must be a substring
// of the lower-cased name (instr, Postgres's LIKE '%word%' without its
// escaping). The name is lower-cased by ferry_lower, Go's Unicode
// lower-casing, as Postgres's lower() is in a UTF-8 locale. There is no
// trigram index: a scan of every name per search.
func (e executor) FileFind(ctx context.Context, p *db.FileFindParams) ([]db.File, int, error) {
	var where []string
	var args []any
	for _, w := range p.Words {
		args = append(args, w)
		where = append(where, `instr(ferry_lower(f.file_name), ?) > 0`)
	}
	if len(where) == 0 {
		where = []string{"true"}
	}
	cond := strings.Join(where, " AND ")
	var files []db.File
	total := 0
	err := e.query(ctx, func(rows *sql.Rows) error {
		var r fileRow
		if err := rows.Scan(r.dests(&total)...); err != nil {
			return err
		}
		files = append(files, r.file())
		return nil
	}, `
SELECT `+fileColumns+`, count(*) OVER ()
FROM files f
WHERE `+cond+`
ORDER BY f.created_at DESC, f.file_unique_id
LIMIT ? OFFSET ?`, append(args, p.Limit, p.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("find %q: %w", p.Words, err)
	}
	if len(files) == 0 && p.Offset > 0 {
		// Past the last page count(*) OVER () saw no rows: count alone.
		if err := e.queryRow(ctx, []any{&total}, `SELECT count(*) FROM files f WHERE `+cond, args...); err != nil {
			return nil, 0, fmt.Errorf("count %q: %w", p.Words, err)
		}
	}
	return files, total, nil
}

// FileHeldByAll counts file_ids per file.
func (e executor) FileHeldByAll(ctx context.Context, uniqueIDs []string, slots int) ([]string, error) {
	arg := jsonStrings(uniqueIDs)
	held, err := e.strings(ctx, `
SELECT file_unique_id FROM file_bot_ids
WHERE file_unique_id IN (SELECT value FROM json_each(?)) AND slot BETWEEN 1 AND ?
GROUP BY 1 HAVING count(*) = ?`, arg, slots, slots)
	if err != nil {
		return nil, fmt.Errorf("count file_ids of %d files: %w", len(uniqueIDs), err)
	}
	return held, nil
}

// FileSyncGetMany reads files, their file_ids and pending gens in one
// query, so a gen always matches the file_ids read with it: one row per
// file_id, gathered by file here.
func (e executor) FileSyncGetMany(ctx context.Context, uniqueIDs []string) ([]db.FileSync, error) {
	arg := jsonStrings(uniqueIDs)
	var out []db.FileSync
	err := e.query(ctx, func(rows *sql.Rows) error {
		var r fileRow
		var gen int64
		var slot int
		var fid string
		if err := rows.Scan(r.dests(&gen, &slot, &fid)...); err != nil {
			return err
		}
		if len(out) == 0 || out[len(out)-1].File.UniqueID != r.f.UniqueID {
			out = append(out, db.FileSync{File: r.file(), Gen: gen, FileIDs: map[int]string{}})
		}
		out[len(out)-1].FileIDs[slot] = fid
		return nil
	}, `
SELECT `+fileColumns+`, coalesce(p.gen, 0), b.slot, b.file_id
FROM files f
LEFT JOIN r2_pending p ON p.file_unique_id = f.file_unique_id
JOIN file_bot_ids b ON b.file_unique_id = f.file_unique_id
WHERE f.file_unique_id IN (SELECT value FROM json_each(?))
ORDER BY f.file_unique_id, b.slot`, arg)
	if err != nil {
		return nil, fmt.Errorf("load %d files for R2: %w", len(uniqueIDs), err)
	}
	return out, nil
}

// FileListAfter pages through files by key.
func (e executor) FileListAfter(ctx context.Context, after string, limit int) ([]string, error) {
	ids, err := e.strings(ctx, `
SELECT file_unique_id FROM files WHERE file_unique_id > ? ORDER BY file_unique_id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list files: %w", err)
	}
	return ids, nil
}

// R2PendingListAfter pages through files marked for R2.
func (e executor) R2PendingListAfter(ctx context.Context, olderThan time.Duration, after string, limit int) ([]string, error) {
	ids, err := e.strings(ctx, `
SELECT file_unique_id FROM r2_pending
WHERE changed_at < ? AND file_unique_id > ?
ORDER BY file_unique_id LIMIT ?`, e.clock()-olderThan.Microseconds(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list files pending for R2: %w", err)
	}
	return ids, nil
}

// R2PendingDeleteMany clears exactly the marks read with the file_ids
// written, in one statement: a file changed meanwhile has a new gen and
// stays pending. (No row locks to order: the statement holds the write
// lock.) Outside a transaction the commit waits for the WAL write, not its
// fsync.
func (e executor) R2PendingDeleteMany(ctx context.Context, written []db.R2Written) error {
	arg := jsonArray(len(written), func(i int) []any { return []any{written[i].UniqueID, written[i].Gen} })
	_, err := e.exec(ctx, `
DELETE FROM r2_pending
WHERE (file_unique_id, gen) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))`, arg)
	if err != nil {
		return fmt.Errorf("mark %d files synced: %w", len(written), err)
	}
	return nil
}
