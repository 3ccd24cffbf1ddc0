package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/r2"
)

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
// create is the lookup), so a claim is held for a few round trips to the
// database, never for an R2 request; batches with new files take their R2
// step one at a time (FileLockNew). Rows are taken in
// (chat, message) then (file, slot) order by every batch, so batches wait on
// each other instead of deadlocking; should the database still abort one
// (db.IsRetryable), the caller retries it.
func (ix *Indexer) IndexMany(ctx context.Context, tx db.Tx, posts []Post) ([]Outcome, error) {
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
	// columns so: at eleven bots a tenth of the elements to send, parse and
	// sort. The driver still picks as if given every sighting.
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
	made, err := tx.PostClaimMany(ctx, &db.PostClaimManyParams{ChatID: pChats, MessageID: pMsgs, UniqueID: pUIDs, Slot: pSlots, BotID: pBots})
	if err != nil {
		return nil, fmt.Errorf("index: %d sightings: %w", n, err)
	}
	for _, c := range made {
		claims[postKey{c.ChatID, c.MessageID}] = claim{slot: c.Slot, existing: c.Existing}
	}

	// The claimed post's reply belongs to its first sighting from the
	// claiming slot; that sighting also carries the R2 lookup of a new file.
	var (
		fUID, fName, fMime, fType, fCaption, fOrigin []string
		fSize, fChat, fMsg                           []int64
		fDC, fDur, fW, fH                            []int32
		fPri                                         []int8
		newChats, newMsgs                            []int64
	)
	fileAt := make(map[string]int, len(distinctUIDs)) // each file's element in the f arrays
	owned := map[postKey]bool{}
	for _, i := range order {
		p := posts[i]
		k := postKey{p.ChatID, p.MessageID}
		pri, origin := int8(1), "local"
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
		// One element per file: its metadata from the first post this batch
		// claimed as new (pri 0), else from any sighting (pri 1, a file the
		// database normally has already), the least (pri, chat, message);
		// order is by chat and message already.
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
	err = tx.FileInsertMany(ctx, &db.FileInsertManyParams{UniqueID: fUID, Name: fName, MimeType: fMime, Type: fType, Caption: fCaption,
		Origin: fOrigin, Size: fSize, ChatID: fChat, MessageID: fMsg, DC: fDC, Duration: fDur, Width: fW, Height: fH,
		NewChatID: newChats, NewMessageID: newMsgs})
	if err != nil {
		return nil, fmt.Errorf("index: %d sightings: %w", n, err)
	}
	markedIDs, err := tx.FileBotIDUpsertMany(ctx, &db.FileBotIDUpsertManyParams{UniqueID: uids, Slot: slots, BotID: botIDs, FileID: fids,
		ChatID: chats, MessageID: msgs, CreatedUniqueID: cU, CreatedSlot: cS, CreatedFileID: cF})
	if err != nil {
		return nil, fmt.Errorf("index: %d sightings: %w", n, err)
	}
	marked := make(map[string]bool, len(markedIDs))
	for _, u := range markedIDs {
		marked[u] = true
	}
	read, err := tx.PostOutcomeMany(ctx, &db.PostOutcomeManyParams{ChatID: oChats, MessageID: oMsgs, UniqueID: oUIDs})
	if err != nil {
		return nil, fmt.Errorf("index: %d sightings: %w", n, err)
	}
	results := make(map[postFile]Outcome, len(read))
	for _, r := range read {
		results[postFile{r.ChatID, r.MessageID, r.File.UniqueID}] = Outcome{File: r.File, Existing: r.Existing, ClaimedBySlot: r.ClaimedBySlot}
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

// lookUpNewInR2 settles, for every file of the batch the database does not
// have, whether another deployment has it in R2, by creating its object
// (If-None-Match: *) from the batch's sightings: one request that both asks
// and, for a new file, writes. A create refused because the object exists
// is followed by a read: an object holding one of the batch's own file_ids
// is this batch's (an attempt that rolled back), so the file is still new;
// any other means another deployment had it first. R2 failing counts as not
// found (the R2 job writes the file later). Without a Writer it only reads.
//
// It holds the new-files lock (FileLockNew) from before it looks at the
// database again, so a concurrent batch either commits the file first (and
// this one sees it in the database) or waits. Batches of one deployment
// then never race on a new file's object, so an object that exists was
// written by another deployment or by an attempt of this batch that
// rolled back.
func (ix *Indexer) lookUpNewInR2(ctx context.Context, tx db.Tx, posts []Post, order []int, uids []string) (map[string]r2Lookup, error) {
	if ix.check == nil {
		return nil, nil
	}
	unknown, err := ix.unknownFiles(ctx, tx, uids)
	if err != nil || len(unknown) == 0 {
		return nil, err
	}
	if ix.write != nil {
		if err := tx.FileLockNew(ctx); err != nil {
			return nil, fmt.Errorf("index: %w", err)
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

func (ix *Indexer) unknownFiles(ctx context.Context, tx db.Tx, uids []string) ([]string, error) {
	unknown, err := tx.FileUnknownMany(ctx, uids)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return unknown, nil
}
