package index

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
)

// The claims: one row per post, from the lowest slot among the batch's
// sightings of it. (The LATERAL lookups probe the files key for each row;
// an EXISTS here was planned as a scan of the whole files table.) A post already claimed (by an earlier batch, or one still
// open, which this waits for) is left alone. existing is the decision for a
// file the database already has; for a new file it is settled by
// sqlFilesMany.
const sqlClaimMany = `
INSERT INTO channel_posts (chat_id, message_id, file_unique_id, claimed_by_slot, claimed_by_bot, existing)
SELECT DISTINCT ON (c, m) c, m, u, s, b, f.known IS NOT NULL
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::bigint[]) AS t(c, m, u, s, b)
LEFT JOIN LATERAL (SELECT true AS known FROM files WHERE file_unique_id = t.u LIMIT 1) f ON true
ORDER BY c, m, s
ON CONFLICT (chat_id, message_id) DO NOTHING
RETURNING chat_id, message_id, claimed_by_slot, existing`

// The file rows: one per distinct file, its metadata from the first post
// this batch claimed as new (pri 0), else from any sighting (pri 1, a row
// that is normally there already). Then the decision of each post claimed
// as new: "stored" only for the file's first post when this statement
// created the row from this deployment's own sighting (origin 'local');
// a row created from an R2 hit, or by a concurrent batch, means the file
// already existed.
const sqlFilesMany = `
WITH t AS (
    SELECT DISTINCT ON (u) *
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[],
                $8::int[], $9::int[], $10::int[], $11::bigint[], $12::bigint[], $13::text[], $14::int[])
         AS t(u, name, size, mime, typ, dc, caption, dur, w, h, c, m, origin, pri)
    ORDER BY u, pri, c, m
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
FROM unnest($15::bigint[], $16::bigint[]) AS n(c, m)
WHERE cp.chat_id = n.c AND cp.message_id = n.m`

// Each bot's file_id, one row per (file, slot); when one bot saw a file in
// two posts of the batch, the later post's file_id is kept. A repeat of the
// same file_id changes nothing; a new one replaces it and marks its file
// for R2 with a fresh gen (see migration 00007). It returns the files
// marked, whose R2 write the caller queues in the same transaction. Both
// tables are written in key order, as every batch and R2 write takes them.
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
    RETURNING file_unique_id
)
INSERT INTO r2_pending (file_unique_id)
SELECT DISTINCT file_unique_id FROM up ORDER BY file_unique_id
ON CONFLICT (file_unique_id) DO UPDATE SET gen = EXCLUDED.gen, changed_at = now()
RETURNING file_unique_id`

// The outcome of every distinct sighting, read back after the writes.
const sqlOutcomesMany = `
SELECT t.c, t.m, t.s, t.u, ` + fileColumns + `, cp.existing, cp.claimed_by_slot
FROM (SELECT DISTINCT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[]) AS t(c, m, s, u)) t
JOIN files f ON f.file_unique_id = t.u
JOIN channel_posts cp ON cp.chat_id = t.c AND cp.message_id = t.m`

// IndexMany records many bots' sightings of many posts inside tx and decides
// each post's reply. Outcomes are returned in the order of posts. The caller
// commits tx (with the reply and R2 jobs) or rolls it back on error; a
// rolled-back call leaves nothing behind and can simply be retried.
//
// The work is four set-based statements whatever the batch size: claim the
// posts, write the file rows and the decisions, write the file_ids, read the
// outcomes back. The first runs alone (the rest depend on which posts it
// claimed); the other three share one round trip.
//
// Concurrency: the first transaction to insert a post's claim owns its
// reply and decides "new" or "already exists"; other batches holding the same
// post wait on that row, then only add their file_ids. Files the database
// does not have are looked up in R2 before the claim, so a claim is held for
// a few round trips to Postgres, never for an R2 request; two batches may
// both ask R2 about one new file, which costs a GET. Rows are taken in
// (chat, message) then (file, slot) order by every batch, so batches wait on
// each other instead of deadlocking; should Postgres still abort one
// (SQLSTATE 40P01), the caller retries it.
func (ix *Indexer) IndexMany(ctx context.Context, tx pgx.Tx, posts []Post) ([]Outcome, error) {
	for i, p := range posts {
		if err := validPost(p); err != nil {
			return nil, fmt.Errorf("post %d: %w", i, err)
		}
	}
	outs := make([]Outcome, len(posts))
	if len(posts) == 0 {
		return outs, nil
	}
	order := make([]int, len(posts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		pa, pb := posts[a], posts[b]
		return cmp.Or(cmp.Compare(pa.ChatID, pb.ChatID), cmp.Compare(pa.MessageID, pb.MessageID), cmp.Compare(pa.Slot, pb.Slot))
	})
	n := len(order)
	chats, msgs, botIDs := make([]int64, n), make([]int64, n), make([]int64, n)
	slots := make([]int32, n)
	uids, fids := make([]string, n), make([]string, n)
	for k, i := range order {
		p := posts[i]
		chats[k], msgs[k], botIDs[k], slots[k], uids[k], fids[k] = p.ChatID, p.MessageID, p.BotID, int32(p.Slot), p.UniqueID, p.FileID
	}

	// Plan these statements for the arrays they get: a plan cached while
	// the tables were small (a new deployment) scans them whole once they
	// have grown, until autovacuum's next ANALYZE.
	if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_custom_plan`); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	r2s, err := ix.checkNewInR2(ctx, tx, uids)
	if err != nil {
		return nil, err
	}

	type postKey struct{ chat, msg int64 }
	type claim struct {
		slot     int
		existing bool
	}
	claims := map[postKey]claim{}
	rows, err := tx.Query(ctx, sqlClaimMany, chats, msgs, uids, slots, botIDs)
	if err != nil {
		return nil, fmt.Errorf("index: claim %d sightings' posts: %w", n, err)
	}
	for rows.Next() {
		var k postKey
		var c claim
		if err := rows.Scan(&k.chat, &k.msg, &c.slot, &c.existing); err != nil {
			rows.Close()
			return nil, fmt.Errorf("index: read claims: %w", err)
		}
		claims[k] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: claim %d sightings' posts: %w", n, err)
	}

	// The claimed post's reply belongs to its first sighting from the
	// claiming slot; that sighting also carries the R2 lookup of a new file.
	var (
		fName, fMime, fType, fCaption, fOrigin []string
		fSize, fChat, fMsg                     []int64
		fDC, fDur, fW, fH, fPri                []int32
		newChats, newMsgs                      []int64
	)
	owned := map[postKey]bool{}
	for _, i := range order {
		p := posts[i]
		k := postKey{p.ChatID, p.MessageID}
		pri, origin := int32(1), "local"
		if c, ok := claims[k]; ok && c.slot == p.Slot && !owned[k] {
			owned[k] = true
			outs[i].Reply = true
			if !c.existing {
				pri = 0
				newChats, newMsgs = append(newChats, p.ChatID), append(newMsgs, p.MessageID)
				r, looked := r2s[p.UniqueID]
				if !looked && ix.check != nil {
					// Known when looked up, gone by the claim: ask now.
					r.inR2, r.err = ix.checkR2(ctx, p.UniqueID)
					looked = true
				}
				outs[i].R2Checked, outs[i].R2Error = looked, r.err
				if r.inR2 {
					origin = "r2"
				}
				if r.err != nil {
					ix.log.WarnContext(ctx, "R2 check failed; treating file as new",
						slog.String("unique_id", p.UniqueID), slog.Any("err", r.err))
				}
			}
		}
		fName, fMime, fType, fCaption, fOrigin = append(fName, p.Name), append(fMime, p.MimeType), append(fType, p.Type), append(fCaption, p.Caption), append(fOrigin, origin)
		fSize, fChat, fMsg = append(fSize, p.Size), append(fChat, p.ChatID), append(fMsg, p.MessageID)
		fDC, fDur, fW, fH, fPri = append(fDC, int32(p.DC)), append(fDur, int32(p.Duration)), append(fW, int32(p.Width)), append(fH, int32(p.Height)), append(fPri, pri)
	}

	b := &pgx.Batch{}
	b.Queue(sqlFilesMany, uids, fName, fSize, fMime, fType, fDC, fCaption, fDur, fW, fH, fChat, fMsg, fOrigin, fPri, newChats, newMsgs)
	b.Queue(sqlBotIDsMany, uids, slots, botIDs, fids, chats, msgs)
	b.Queue(sqlOutcomesMany, chats, msgs, slots, uids)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("index: write %d files: %w", n, err)
	}
	marked := map[string]bool{}
	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("index: write %d file_ids: %w", n, err)
	}
	for rows.Next() {
		var uid string
		if err := rows.Scan(&uid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("index: read files marked for R2: %w", err)
		}
		marked[uid] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: write %d file_ids: %w", n, err)
	}
	type sightingKey struct {
		chat, msg int64
		slot      int
		uid       string
	}
	results := make(map[sightingKey]Outcome, n)
	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("index: read %d outcomes: %w", n, err)
	}
	for rows.Next() {
		var k sightingKey
		var o Outcome
		f := &o.File
		if err := rows.Scan(&k.chat, &k.msg, &k.slot, &k.uid,
			&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
			&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &f.CreatedAt,
			&o.Existing, &o.ClaimedBySlot); err != nil {
			rows.Close()
			return nil, fmt.Errorf("index: read outcomes: %w", err)
		}
		results[k] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: read %d outcomes: %w", n, err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("index: batch of %d sightings: %w", n, err)
	}
	for i, p := range posts {
		o, ok := results[sightingKey{p.ChatID, p.MessageID, p.Slot, p.UniqueID}]
		if !ok {
			return nil, fmt.Errorf("index: no outcome for slot %d's sighting of %s in post %d/%d", p.Slot, p.UniqueID, p.ChatID, p.MessageID)
		}
		o.Reply, o.R2Checked, o.R2Error = outs[i].Reply, outs[i].R2Checked, outs[i].R2Error
		o.NeedR2Write = marked[p.UniqueID]
		outs[i] = o
	}
	return outs, nil
}

type r2Lookup struct {
	inR2 bool
	err  error
}

// checkNewInR2 asks R2, in parallel, about every file in uids that the
// database does not have yet. It takes no lock: an answer is used only if
// this batch then claims a post of that file as new.
func (ix *Indexer) checkNewInR2(ctx context.Context, tx pgx.Tx, uids []string) (map[string]r2Lookup, error) {
	if ix.check == nil {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
SELECT t.u FROM (SELECT DISTINCT u FROM unnest($1::text[]) AS u) t
LEFT JOIN LATERAL (SELECT true AS known FROM files WHERE file_unique_id = t.u LIMIT 1) f ON true
WHERE f.known IS NULL`, uids)
	if err != nil {
		return nil, fmt.Errorf("index: look up %d files: %w", len(uids), err)
	}
	unknown, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("index: look up %d files: %w", len(uids), err)
	}
	out := make(map[string]r2Lookup, len(unknown))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, id := range unknown {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			inR2, err := ix.checkR2(ctx, id)
			mu.Lock()
			out[id] = r2Lookup{inR2, err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
