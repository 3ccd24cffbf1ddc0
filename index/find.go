package index

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry/db"
)

// Find searches file names for text (every whitespace-separated word must
// occur, case-insensitively) and returns one page, newest first, with the
// total number of matches for paging. page is 0-based; pageSize defaults to
// 10 and is capped at 100.
func (ix *Indexer) Find(ctx context.Context, text string, page, pageSize int) ([]File, int, error) {
	if pageSize <= 0 {
		pageSize = 10
	}
	if pageSize > 100 {
		pageSize = 100
	}
	if page < 0 {
		page = 0
	}
	words := strings.Fields(strings.ToLower(text))
	if len(words) == 0 {
		return nil, 0, nil
	}
	if len(words) > 8 {
		words = words[:8]
	}
	files, total, err := ix.db.FileFind(ctx, &db.FileFindParams{Words: words, Limit: pageSize, Offset: page * pageSize})
	if err != nil {
		return nil, 0, fmt.Errorf("index: %w", err)
	}
	return files, total, nil
}
