package index

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/r2"
)

// ErrUnknownFile is returned by SyncR2 for a unique id with no rows: the
// job should not be retried (cancel it).
var ErrUnknownFile = errors.New("index: file not in the database")

// ErrNoR2 is returned by SyncR2 when no R2 writer is configured.
var ErrNoR2 = errors.New("index: R2 is not configured")

type botRow struct {
	slot   int
	fileID string
	synced bool
}

// loadForSync reads a file and all its bots' file ids.
func (ix *Indexer) loadForSync(ctx context.Context, uniqueID string) (File, []botRow, error) {
	rows, err := ix.pool.Query(ctx, `
SELECT `+fileColumns+`, b.slot, b.file_id, b.r2_synced_at IS NOT NULL
FROM files f JOIN file_bot_ids b ON b.file_unique_id = f.file_unique_id
WHERE f.file_unique_id = $1
ORDER BY b.slot`, uniqueID)
	if err != nil {
		return File{}, nil, fmt.Errorf("index: load %s for R2: %w", uniqueID, err)
	}
	defer rows.Close()
	var f File
	var bots []botRow
	for rows.Next() {
		var b botRow
		if err := rows.Scan(&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
			&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &f.CreatedAt,
			&b.slot, &b.fileID, &b.synced); err != nil {
			return File{}, nil, fmt.Errorf("index: load %s for R2: %w", uniqueID, err)
		}
		bots = append(bots, b)
	}
	if err := rows.Err(); err != nil {
		return File{}, nil, fmt.Errorf("index: load %s for R2: %w", uniqueID, err)
	}
	if len(bots) == 0 {
		return File{}, nil, fmt.Errorf("%w: %s", ErrUnknownFile, uniqueID)
	}
	return f, bots, nil
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
// synced only after the write landed, and it loops while rows committed
// during the write are still unsynced. Any error is returned so the calling
// job retries; nothing is marked on failure. A file whose rows are all
// synced costs one query and no R2 request.
func (ix *Indexer) SyncR2(ctx context.Context, uniqueID string) error {
	return ix.syncR2(ctx, uniqueID, false)
}

func (ix *Indexer) syncR2(ctx context.Context, uniqueID string, force bool) error {
	if ix.write == nil {
		return ErrNoR2
	}
	for round := 0; round < 5; round++ {
		f, bots, err := ix.loadForSync(ctx, uniqueID)
		if err != nil {
			return err
		}
		pending := false
		ids := make(map[int]string, len(bots))
		for _, b := range bots {
			ids[b.slot] = b.fileID
			if !b.synced {
				pending = true
			}
		}
		if !pending && (!force || round > 0) {
			return nil
		}
		rec := Record(f, ids)
		err = ix.write.Create(ctx, rec)
		if errors.Is(err, r2.ErrExists) {
			_, err = ix.write.Merge(ctx, rec)
		}
		if err != nil {
			return fmt.Errorf("index: write %s to R2: %w", uniqueID, err)
		}
		slots := make([]int32, 0, len(bots))
		fids := make([]string, 0, len(bots))
		for _, b := range bots {
			slots = append(slots, int32(b.slot))
			fids = append(fids, b.fileID)
		}
		// Mark exactly the (slot, file_id) pairs just written: a file_id
		// replaced meanwhile stays pending. Rows are locked in slot order so
		// concurrent jobs for the same file cannot deadlock. The statement
		// also tells whether other rows are still pending (committed while
		// we wrote), in which case we go round again.
		var more bool
		err = ix.pool.QueryRow(ctx, `
WITH w AS (SELECT * FROM unnest($2::int[], $3::text[]) AS w(slot, file_id)),
lk AS (
    SELECT b.slot FROM file_bot_ids b JOIN w ON w.slot = b.slot AND w.file_id = b.file_id
    WHERE b.file_unique_id = $1 AND b.r2_synced_at IS NULL
    ORDER BY b.slot
    FOR UPDATE OF b
),
upd AS (
    UPDATE file_bot_ids b SET r2_synced_at = now()
    FROM lk WHERE b.file_unique_id = $1 AND b.slot = lk.slot
    RETURNING 1
)
SELECT EXISTS (
    SELECT 1 FROM file_bot_ids b
    WHERE b.file_unique_id = $1 AND b.r2_synced_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM w WHERE w.slot = b.slot AND w.file_id = b.file_id)
) FROM (SELECT count(*) FROM upd) AS done`, uniqueID, slots, fids).Scan(&more)
		if err != nil {
			return fmt.Errorf("index: mark %s synced: %w", uniqueID, err)
		}
		if !more {
			return nil
		}
	}
	return nil
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
	if workers <= 0 {
		workers = 8
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ids := make(chan string)
	var (
		mu       sync.Mutex
		done     int
		firstErr error
	)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				err := ix.syncR2(ctx, id, force)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					done++
					if progress != nil {
						progress(done, id)
					}
				}
				mu.Unlock()
			}
		}()
	}

	listErr := ix.listForSync(ctx, force, olderThan, ids)
	close(ids)
	wg.Wait()
	if firstErr != nil {
		return done, firstErr
	}
	if listErr != nil {
		return done, listErr
	}
	return done, nil
}

// listForSync streams ids in pages (keyset on file_unique_id), so a large
// index is never held in memory or in one long-running query.
func (ix *Indexer) listForSync(ctx context.Context, all bool, olderThan time.Duration, out chan<- string) error {
	after := ""
	for {
		var rows pgx.Rows
		var err error
		if all {
			rows, err = ix.pool.Query(ctx, `
SELECT file_unique_id FROM files WHERE file_unique_id > $1 ORDER BY file_unique_id LIMIT 500`, after)
		} else {
			rows, err = ix.pool.Query(ctx, `
SELECT DISTINCT file_unique_id FROM file_bot_ids
WHERE r2_synced_at IS NULL AND updated_at < now() - make_interval(secs => $2) AND file_unique_id > $1
ORDER BY file_unique_id LIMIT 500`, after, olderThan.Seconds())
		}
		if err != nil {
			return fmt.Errorf("index: list files for R2: %w", err)
		}
		page, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("index: list files for R2: %w", err)
		}
		for _, id := range page {
			select {
			case out <- id:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(page) < 500 {
			return nil
		}
		after = page[len(page)-1]
	}
}
