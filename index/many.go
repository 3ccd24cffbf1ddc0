package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/r2"
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
// for R2 with a fresh gen (see migration 00007), unless it is one of the
// file_ids ($7..$9) this batch put in the object it created. It returns the
// files marked, whose R2 write the caller queues in the same transaction.
// Both tables are written in key order, as every batch and R2 write takes
// them.
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

// The outcome of every distinct (post, file) of the batch, read back after
// the writes: it is the same for every bot's sighting of them.
const sqlOutcomesMany = `
SELECT t.c, t.m, t.u, ` + fileColumns + `, cp.existing, cp.claimed_by_slot
FROM (SELECT DISTINCT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(c, m, u)) t
JOIN files f ON f.file_unique_id = t.u
JOIN channel_posts cp ON cp.chat_id = t.c AND cp.message_id = t.m`

// planned runs a statement unnamed, so Postgres plans it for the arrays it
// gets each time: a plan cached while the tables were small (a new
// deployment) scans them whole once they have grown, until autovacuum's
// next ANALYZE. (plan_cache_mode=force_custom_plan would do the same, but it
// also re-plans every foreign-key check the statements fire, one per row:
// half of Postgres's planning time in the end-to-end bench.)
const planned = pgx.QueryExecModeExec

// IndexMany records many bots' sightings of many posts inside tx and decides
// each post's reply. Outcomes are returned in the order of posts. The caller
// commits tx (with the reply and R2 jobs) or rolls it back on error; a
// rolled-back call leaves nothing behind and can simply be retried.
//
// The work is four set-based statements whatever the batch size: claim the
// posts, write the file rows and the decisions, write the file_ids, read the
// outcomes back.
//
// Concurrency: the first transaction to insert a post's claim owns its
// reply and decides "new" or "already exists"; other batches holding the same
// post wait on that row, then only add their file_ids. Files the database
// does not have are created in R2 before the claim (lookUpNewInR2: the
// create is the lookup), so a claim is held for a few round trips to
// Postgres, never for an R2 request; batches with new files take their R2
// step one at a time (IndexLockKey). Rows are taken in
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
	// The statements that want one row per post or per file get their
	// arrays so: at eleven bots a tenth of the elements to send, parse and
	// sort. Their SQL still picks as if given every sighting.
	type postKey struct{ chat, msg int64 }
	type postFile struct {
		chat, msg int64
		uid       string
	}
	var pChats, pMsgs, pBots, oChats, oMsgs []int64
	var pUIDs, oUIDs, distinctUIDs []string
	var pSlots []int32
	seenPost := make(map[postKey]bool, n)
	seenPF := make(map[postFile]bool, n)
	seenFile := make(map[string]bool, n)
	for k := range order {
		if pk := (postKey{chats[k], msgs[k]}); !seenPost[pk] { // its lowest slot: order is by slot within a post
			seenPost[pk] = true
			pChats, pMsgs, pUIDs, pSlots, pBots = append(pChats, chats[k]), append(pMsgs, msgs[k]), append(pUIDs, uids[k]), append(pSlots, slots[k]), append(pBots, botIDs[k])
		}
		if pf := (postFile{chats[k], msgs[k], uids[k]}); !seenPF[pf] {
			seenPF[pf] = true
			oChats, oMsgs, oUIDs = append(oChats, chats[k]), append(oMsgs, msgs[k]), append(oUIDs, uids[k])
		}
		if !seenFile[uids[k]] {
			seenFile[uids[k]] = true
			distinctUIDs = append(distinctUIDs, uids[k])
		}
	}

	r2s, err := ix.lookUpNewInR2(ctx, tx, posts, order, distinctUIDs)
	if err != nil {
		return nil, err
	}

	type claim struct {
		slot     int
		existing bool
	}
	claims := map[postKey]claim{}
	rows, err := tx.Query(ctx, sqlClaimMany, planned, pChats, pMsgs, pUIDs, pSlots, pBots)
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
		fUID, fName, fMime, fType, fCaption, fOrigin []string
		fSize, fChat, fMsg                           []int64
		fDC, fDur, fW, fH, fPri                      []int32
		newChats, newMsgs                            []int64
	)
	fileAt := make(map[string]int, len(distinctUIDs)) // each file's element in the f arrays
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
		// One element per file: the sighting sqlFilesMany would pick, the
		// least (pri, chat, message); order is by chat and message already.
		j, seen := fileAt[p.UniqueID]
		if seen && pri >= fPri[j] {
			continue
		}
		if !seen {
			j = len(fUID)
			fileAt[p.UniqueID] = j
			fUID, fName, fMime, fType, fCaption, fOrigin = append(fUID, ""), append(fName, ""), append(fMime, ""), append(fType, ""), append(fCaption, ""), append(fOrigin, "")
			fSize, fChat, fMsg = append(fSize, 0), append(fChat, 0), append(fMsg, 0)
			fDC, fDur, fW, fH, fPri = append(fDC, 0), append(fDur, 0), append(fW, 0), append(fH, 0), append(fPri, 0)
		}
		fUID[j], fName[j], fMime[j], fType[j], fCaption[j], fOrigin[j] = p.UniqueID, p.Name, p.MimeType, p.Type, p.Caption, origin
		fSize[j], fChat[j], fMsg[j] = p.Size, p.ChatID, p.MessageID
		fDC[j], fDur[j], fW[j], fH[j], fPri[j] = int32(p.DC), int32(p.Duration), int32(p.Width), int32(p.Height), pri
	}

	var cU, cF []string
	var cS []int32
	for u, r := range r2s {
		for slot, f := range r.created {
			cU, cS, cF = append(cU, u), append(cS, int32(slot)), append(cF, f)
		}
	}
	if _, err := tx.Exec(ctx, sqlFilesMany, planned, fUID, fName, fSize, fMime, fType, fDC, fCaption, fDur, fW, fH, fChat, fMsg, fOrigin, fPri, newChats, newMsgs); err != nil {
		return nil, fmt.Errorf("index: write %d files: %w", n, err)
	}
	marked := map[string]bool{}
	rows, err = tx.Query(ctx, sqlBotIDsMany, planned, uids, slots, botIDs, fids, chats, msgs, cU, cS, cF)
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
	results := make(map[postFile]Outcome, len(oChats))
	rows, err = tx.Query(ctx, sqlOutcomesMany, planned, oChats, oMsgs, oUIDs)
	if err != nil {
		return nil, fmt.Errorf("index: read %d outcomes: %w", n, err)
	}
	for rows.Next() {
		var k postFile
		var o Outcome
		f := &o.File
		if err := rows.Scan(&k.chat, &k.msg, &k.uid,
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
	for i, p := range posts {
		o, ok := results[postFile{p.ChatID, p.MessageID, p.UniqueID}]
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
	// created holds the file_ids (by slot) of the object this batch
	// created: they are in R2 already and need no R2 job.
	created map[int]string
}

// IndexLockKey is the advisory lock key ("ferryidx") a batch holds while it
// creates R2 objects for files the database does not know yet, until it
// commits. Batches of one deployment then never race on a new file's
// object, so an object that exists was written by another deployment or
// by an attempt of this batch that rolled back (see lookUpNewInR2).
const IndexLockKey int64 = 0x6665727279696478

// sqlUnknownFiles lists the files of a batch that the database does not
// have (a LATERAL key lookup each, see sqlClaimMany).
const sqlUnknownFiles = `
SELECT t.u FROM (SELECT DISTINCT u FROM unnest($1::text[]) AS u) t
LEFT JOIN LATERAL (SELECT true AS known FROM files WHERE file_unique_id = t.u LIMIT 1) f ON true
WHERE f.known IS NULL`

// lookUpNewInR2 settles, for every file of the batch the database does not
// have, whether another deployment has it in R2, by creating its object
// (If-None-Match: *) from the batch's sightings: one request that both asks
// and, for a new file, writes. A create refused because the object exists
// is followed by a read: an object holding one of the batch's own file_ids
// is this batch's (an attempt that rolled back), so the file is still new;
// any other means another deployment had it first. R2 failing counts as not
// found (the R2 job writes the file later). Without a Writer it only reads.
//
// It holds IndexLockKey from before it looks at the database, so a
// concurrent batch either commits the file first (and this one sees it in
// the database) or waits.
func (ix *Indexer) lookUpNewInR2(ctx context.Context, tx pgx.Tx, posts []Post, order []int, uids []string) (map[string]r2Lookup, error) {
	if ix.check == nil {
		return nil, nil
	}
	unknown, err := ix.unknownFiles(ctx, tx, uids)
	if err != nil || len(unknown) == 0 {
		return nil, err
	}
	if ix.write != nil {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, IndexLockKey); err != nil {
			return nil, fmt.Errorf("index: lock new files: %w", err)
		}
		// Again, now that no other batch is between its create and commit.
		if unknown, err = ix.unknownFiles(ctx, tx, uids); err != nil || len(unknown) == 0 {
			return nil, err
		}
	}
	// Each new file as the batch will write it: metadata from its first
	// post in key order, each slot's file_id from its latest post.
	type newFile struct {
		file    File
		fileIDs map[int]string
	}
	files := make(map[string]*newFile, len(unknown))
	for _, id := range unknown {
		files[id] = nil
	}
	for _, i := range order {
		p := posts[i]
		nf, want := files[p.UniqueID]
		if !want {
			continue
		}
		if nf == nil {
			nf = &newFile{file: File{UniqueID: p.UniqueID, Name: p.Name, Size: p.Size, MimeType: p.MimeType, Type: p.Type,
				DC: p.DC, Caption: p.Caption, Duration: p.Duration, Width: p.Width, Height: p.Height,
				ChatID: p.ChatID, MessageID: p.MessageID}, fileIDs: map[int]string{}}
			files[p.UniqueID] = nf
		}
		nf.fileIDs[p.Slot] = p.FileID
	}
	out := make(map[string]r2Lookup, len(unknown))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for id, nf := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var r r2Lookup
			if ix.write == nil {
				r.inR2, r.err = ix.checkR2(ctx, id)
			} else {
				r = ix.createInR2(ctx, Record(nf.file, nf.fileIDs), nf.fileIDs)
			}
			mu.Lock()
			out[id] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// createInR2 creates a new file's object with the batch's file_ids, or
// tells whose the existing object is (see lookUpNewInR2).
func (ix *Indexer) createInR2(ctx context.Context, rec r2.Record, fileIDs map[int]string) r2Lookup {
	cctx, cancel := context.WithTimeout(ctx, ix.checkTimeout)
	defer cancel()
	err := ix.write.Create(cctx, rec)
	if err == nil {
		return r2Lookup{created: fileIDs}
	}
	if !errors.Is(err, r2.ErrExists) {
		return r2Lookup{err: fmt.Errorf("index: create %s in R2: %w", rec.UniqueID, err)}
	}
	cur, _, err := ix.check.Get(cctx, rec.UniqueID)
	if err != nil {
		return r2Lookup{err: fmt.Errorf("index: read %s from R2: %w", rec.UniqueID, err)}
	}
	for slot, id := range fileIDs {
		if cur.BotFileIDs[r2.SlotKey(slot)] == id {
			return r2Lookup{} // this batch's own object, from an attempt rolled back
		}
	}
	return r2Lookup{inR2: true}
}

func (ix *Indexer) unknownFiles(ctx context.Context, tx pgx.Tx, uids []string) ([]string, error) {
	rows, err := tx.Query(ctx, sqlUnknownFiles, planned, uids)
	if err != nil {
		return nil, fmt.Errorf("index: look up %d files: %w", len(uids), err)
	}
	unknown, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("index: look up %d files: %w", len(uids), err)
	}
	return unknown, nil
}
