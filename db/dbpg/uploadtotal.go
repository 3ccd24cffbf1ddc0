package dbpg

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/db"
)

// UploadTotalAdd counts one finished upload of size bytes.
func (e executor) UploadTotalAdd(ctx context.Context, bytes int64) error {
	_, err := e.q.Exec(ctx, `
INSERT INTO upload_totals (id, files, bytes) VALUES (1, 1, $1)
ON CONFLICT (id) DO UPDATE SET files = upload_totals.files + 1, bytes = upload_totals.bytes + EXCLUDED.bytes`, bytes)
	if err != nil {
		return fmt.Errorf("count upload: %w", err)
	}
	return nil
}

// UploadTotalGet reads the totals; zero before the first upload.
func (e executor) UploadTotalGet(ctx context.Context) (db.UploadTotal, error) {
	var t db.UploadTotal
	err := e.q.QueryRow(ctx, `
SELECT coalesce(sum(files), 0)::bigint, coalesce(sum(bytes), 0)::bigint FROM upload_totals`).Scan(&t.Files, &t.Bytes)
	if err != nil {
		return db.UploadTotal{}, fmt.Errorf("read upload totals: %w", err)
	}
	return t, nil
}
