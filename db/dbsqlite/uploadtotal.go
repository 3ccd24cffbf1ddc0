package dbsqlite

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/db"
)

// UploadTotalAdd counts one finished upload of size bytes.
func (e executor) UploadTotalAdd(ctx context.Context, bytes int64) error {
	_, err := e.exec(ctx, `
INSERT INTO upload_totals (id, files, bytes) VALUES (1, 1, ?)
ON CONFLICT (id) DO UPDATE SET files = files + 1, bytes = bytes + excluded.bytes`, bytes)
	if err != nil {
		return fmt.Errorf("count upload: %w", err)
	}
	return nil
}

// UploadTotalGet reads the totals; zero before the first upload.
func (e executor) UploadTotalGet(ctx context.Context) (db.UploadTotal, error) {
	var t db.UploadTotal
	err := e.queryRow(ctx, []any{&t.Files, &t.Bytes}, `
SELECT coalesce(sum(files), 0), coalesce(sum(bytes), 0) FROM upload_totals`)
	if err != nil {
		return db.UploadTotal{}, fmt.Errorf("read upload totals: %w", err)
	}
	return t, nil
}
