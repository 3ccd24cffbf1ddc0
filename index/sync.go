package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/r2"
)

// ErrUnknownFile is returned by SyncR2 for a unique id with no rows: the
// job should not be retried (cancel it).
var ErrUnknownFile = errors.New("index: file not in the database")

// ErrNoR2 is returned by SyncR2 when no R2 writer is configured.
var ErrNoR2 = errors.New("index: R2 is not configured")

// loadForSync reads files with their bots' file_ids and pending gens, in
// one snapshot (so a gen always matches the file_ids read with it), by id;
// a file with no rows is absent from the map.
func (ix *Indexer) loadForSync(ctx context.Context, ids []string) (map[string]*db.FileSync, error) {
	rows, err := ix.db.FileSyncGetMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	out := make(map[string]*db.FileSync, len(rows))
	for i := range rows {
		out[rows[i].File.UniqueID] = &rows[i]
	}
	return out, nil
}

// Record builds the R2 JSON record for a file from its rows. The caption is
// the post's caption, or the file name when the post had none (as the
// seed's writer did, so readers always have something to show).
func Record(f File, fileIDs map[int]string) r2.Record {
	caption := f.Caption
	if caption == "" {
		caption = f.Name
	}
	ids := make(r2.BotFileIDs, len(fileIDs))
	for slot, id := range fileIDs {
		ids[r2.SlotKey(slot)] = id
	}
	return r2.Record{
		UniqueID:          f.UniqueID,
		BotFileIDs:        ids,
		Caption:           caption,
		FileSizeBytes:     f.Size,
		FileType:          f.Type,
		OriginalMessageID: f.MessageID,
		SourceChannelID:   f.ChatID,
		FileName:          f.Name,
		MimeType:          f.MimeType,
		Duration:          f.Duration,
		Width:             f.Width,
		Height:            f.Height,
	}
}

// SyncR2 writes a file's record to R2: create it (If-None-Match: *) or, when
// it exists (another bot, job or deployment wrote it), merge this
// database's bot file ids into it by compare-and-swap. Rows are marked
// synced only after the write landed. Any error is returned so the calling
// job retries; nothing is marked on failure. A file whose rows are all
// synced costs one query and no R2 request.
func (ix *Indexer) SyncR2(ctx context.Context, uniqueID string) error {
	_, unknown, err := ix.syncFiles(ctx, []string{uniqueID}, 1, false, nil)
	if err == nil && len(unknown) > 0 {
		return fmt.Errorf("%w: %s", ErrUnknownFile, uniqueID)
	}
	return err
}

// HeldByAll returns those of ids that have a file_id in each of slots 1 to
// slots, read through q (the transaction that wrote them): every configured
// bot's sighting of them is in, so an R2 write need not wait for more.
func (ix *Indexer) HeldByAll(ctx context.Context, q db.Executor, ids []string, slots int) ([]string, error) {
	held, err := q.FileHeldByAll(ctx, ids, slots)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return held, nil
}

// SyncFiles is SyncR2 for many files: one query loads them all, up to
// workers writes run at once (default 8), and one statement marks every
// file_id written. It returns how many files it wrote and, joined, the
// error of each file that failed. A file with no rows is skipped (logged):
// no retry could write it.
//
// A file_id committed while its file is being written stays pending: the
// transaction that wrote it queued an R2 job of its own, so nothing loops
// here waiting for stragglers.
func (ix *Indexer) SyncFiles(ctx context.Context, ids []string, workers int) (int, error) {
	n, unknown, err := ix.syncFiles(ctx, ids, workers, false, nil)
	if len(unknown) > 0 {
		ix.log.WarnContext(ctx, "R2 sync: files not in the database", slog.Any("unique_ids", unknown))
	}
	return n, err
}

// syncFiles writes ids; unknown lists those with no rows.
func (ix *Indexer) syncFiles(ctx context.Context, ids []string, workers int, force bool, progress func(string)) (n int, unknown []string, err error) {
	if ix.write == nil {
		return 0, nil, ErrNoR2
	}
	if workers <= 0 {
		workers = 8
	}
	loaded, err := ix.loadForSync(ctx, ids)
	if err != nil {
		return 0, nil, err
	}
	errs := make([]error, len(ids))
	written := make([]bool, len(ids))
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, id := range ids {
		fr := loaded[id]
		if fr == nil {
			unknown = append(unknown, id)
			continue
		}
		if fr.Gen == 0 && !force {
			continue // nothing changed since the last write
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rec := Record(fr.File, fr.FileIDs)
			err := ix.write.Create(ctx, rec)
			if errors.Is(err, r2.ErrExists) {
				_, err = ix.write.Merge(ctx, rec)
			}
			if err != nil {
				errs[i] = fmt.Errorf("index: write %s to R2: %w", id, err)
				return
			}
			written[i] = true
		}()
	}
	wg.Wait()

	// Clear exactly the marks read with the file_ids just written: a file
	// changed meanwhile has a new gen and stays pending.
	var done []db.R2Written
	for i, id := range ids {
		if !written[i] {
			continue
		}
		n++
		if g := loaded[id].Gen; g != 0 {
			done = append(done, db.R2Written{UniqueID: id, Gen: g})
		}
	}
	if len(done) > 0 {
		if err := ix.db.R2PendingDeleteMany(ctx, done); err != nil {
			// Written but not marked: a retry merges the same ids again.
			return 0, unknown, errors.Join(append(errs, fmt.Errorf("index: %w", err))...)
		}
	}
	if progress != nil {
		for i, id := range ids {
			if written[i] {
				progress(id)
			}
		}
	}
	return n, unknown, errors.Join(errs...)
}

// SyncAll rewrites every file in the database to R2 (`ferry r2 sync`): for
// a new bucket, or to repair one after an outage or a manual deletion. It
// is idempotent (create-or-merge per file) and runs workers requests in
// parallel (default 8). progress, if not nil, is called after each file. It
// stops at the first error and returns how many files were written.
func (ix *Indexer) SyncAll(ctx context.Context, workers int, progress func(done int, uniqueID string)) (int, error) {
	return ix.syncMany(ctx, workers, true, 0, progress)
}

// SyncPending writes every file that has a bot file_id not yet in R2 and
// last changed more than olderThan ago. Run it periodically (a River
// periodic job): it closes the gap left when an R2 job could not be
// enqueued because one for the same file was running. It returns how many
// files were written.
func (ix *Indexer) SyncPending(ctx context.Context, olderThan time.Duration, workers int) (int, error) {
	return ix.syncMany(ctx, workers, false, olderThan, nil)
}

func (ix *Indexer) syncMany(ctx context.Context, workers int, force bool, olderThan time.Duration, progress func(int, string)) (int, error) {
	if ix.write == nil {
		return 0, ErrNoR2
	}
	done := 0
	err := ix.listForSync(ctx, force, olderThan, func(page []string) error {
		_, _, err := ix.syncFiles(ctx, page, workers, force, func(id string) {
			done++
			if progress != nil {
				progress(done, id)
			}
		})
		return err
	})
	return done, err
}

// listForSync passes ids to each in pages (keyset on file_unique_id), so
// a large index is never held in memory or in one long-running query. It
// stops at the first error each returns.
func (ix *Indexer) listForSync(ctx context.Context, all bool, olderThan time.Duration, each func([]string) error) error {
	after := ""
	for {
		var page []string
		var err error
		if all {
			page, err = ix.db.FileListAfter(ctx, after, syncPage)
		} else {
			page, err = ix.db.R2PendingListAfter(ctx, olderThan, after, syncPage)
		}
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		if len(page) > 0 {
			if err := each(page); err != nil {
				return err
			}
		}
		if len(page) < syncPage {
			return nil
		}
		after = page[len(page)-1]
	}
}

// syncPage is how many files one page of a sweep or full sync holds.
const syncPage = 200
