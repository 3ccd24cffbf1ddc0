package index_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/gotd/td/fileid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2"
)

// Real Bot API file_ids with known data centers.
const (
	// From gotd/td's fileid test vectors (fileid/decode_test.go), where the
	// expected decode is DC 2.
	gotdVideoDC2     = "BAACAgIAAxkBAANAYZzjSkCVY7Ttrp2l92eCQzYYxVEAAkoRAAJIYKFIRionwJTz4kIiBA"
	gotdAudioDC2     = "CQACAgIAAxkBAANEYZzt3rDAw5CkHSU8RZA8AzTTsyMAAvACAAKoAAF4SjhQUd8y3lIoIgQ"
	gotdAnimationDC2 = "CgACAgIAAxkBAAM7YZqVjhoGXOIk6qgVu7xd0QvyRVEAArQQAAK7XrBIi5xgKHPRFpQiBA"
	// Documents hard-coded in public Telegram bots' source (send_document
	// calls); the "BQACAgQ"/"BQACAgU" prefix is type 5 (document) on DC 4/5,
	// the same prefix as the seed's "BQACAgQ…" example shown as "DC 4".
	publicDocumentDC4 = "BQACAgQAAxkBAAIB5WMMasyNwS4klKVnmY8HVkR85JbtAAJLDgAC1OlhUJJMT_9X5XCBKQQ"
	publicDocumentDC5 = "BQACAgUAAxkBAANGaiAeZlcTWbDpEhdGr161iubjT_MAAtgPAAJ6OfhWJxB_x22KH-g7BA"
)

// botFileID derives the file_id bot `slot` would have for the DC 4 document:
// same file (id, DC), the bot's own access hash and file reference, encoded
// with gotd's encoder so it is a well-formed Bot API file_id.
func botFileID(t testing.TB, base string, slot int) string {
	t.Helper()
	f, err := fileid.DecodeFileID(base)
	if err != nil {
		t.Fatal(err)
	}
	f.AccessHash += int64(slot) * 7919
	f.FileReference = append([]byte(nil), f.FileReference...)
	if len(f.FileReference) > 0 {
		f.FileReference[len(f.FileReference)-1] ^= byte(slot)
	}
	s, err := fileid.EncodeFileID(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newIndexer(t testing.TB, pool *pgxpool.Pool, store *r2.Store) *index.Indexer {
	t.Helper()
	opts := index.Options{Pool: pool, PublicURL: "https://ferry.example/", Logger: slog.New(slog.DiscardHandler)}
	if store != nil {
		opts.Check, opts.Write = store, store
	}
	ix, err := index.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func newStore(t testing.TB, opts r2.Options) *r2.Store {
	t.Helper()
	s, err := r2.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// moviePost is the seed's example post as seen by the bot in slot.
func moviePost(t testing.TB, slot int, uniqueID string, chat, msg int64) index.Post {
	return index.Post{
		Slot: slot, BotID: 1000 + int64(slot), ChatID: chat, MessageID: msg,
		UniqueID: uniqueID, FileID: botFileID(t, publicDocumentDC4, slot),
		Type: index.TypeDocument, Name: "movie.mkv", Size: 1774606367,
		MimeType: "video/x-matroska", DC: 4, Caption: "movie.mkv",
	}
}

func count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func dbFileIDs(t testing.TB, pool *pgxpool.Pool, uniqueID string) map[string]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT slot, file_id FROM file_bot_ids WHERE file_unique_id = $1`, uniqueID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var slot int
		var id string
		if err := rows.Scan(&slot, &id); err != nil {
			t.Fatal(err)
		}
		m[r2.SlotKey(slot)] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func sameMap(a, b map[string]string) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d keys vs %d", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			return fmt.Errorf("%s: %q vs %q", k, v, b[k])
		}
	}
	return nil
}

func recordFor(uniqueID string) r2.Record {
	return r2.Record{UniqueID: uniqueID, FileType: "document", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "other-deployment"}}
}
