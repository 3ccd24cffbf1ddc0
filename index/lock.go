package index

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// LockPending reports, inside tx, whether the file still has file_ids not
// yet written to R2, after waiting for every transaction that is adding one:
// it locks the file's row FOR UPDATE, which conflicts with the FOR KEY SHARE
// lock each new file_bot_ids row takes through its foreign key, and locks the
// existing rows FOR SHARE, which waits for a file_id being replaced. A caller
// that sees false may complete its R2 job in the same tx: any sighting
// committing later finds that job finished and queues a new one.
func (ix *Indexer) LockPending(ctx context.Context, tx pgx.Tx, uniqueID string) (bool, error) {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM files WHERE file_unique_id = $1 FOR UPDATE`, uniqueID); err != nil {
		return false, fmt.Errorf("index: lock file %s: %w", uniqueID, err)
	}
	var pending bool
	err := tx.QueryRow(ctx, `
SELECT coalesce(bool_or(r2_synced_at IS NULL), false)
FROM (SELECT r2_synced_at FROM file_bot_ids WHERE file_unique_id = $1 FOR SHARE) AS b`, uniqueID).Scan(&pending)
	if err != nil {
		return false, fmt.Errorf("index: pending file_ids of %s: %w", uniqueID, err)
	}
	return pending, nil
}
