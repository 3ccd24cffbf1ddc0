package index_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/gotd/td/fileid"

	"github.com/ferry-dev/ferry/db"
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

func newIndexer(t testing.TB, d db.Driver, store *r2.Store) *index.Indexer {
	t.Helper()
	opts := index.Options{DB: d, PublicURL: "https://ferry.example/", Logger: slog.New(slog.DiscardHandler)}
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

// dbFileIDs is each bot's file_id for a file as the database has it, by
// R2 slot key.
func dbFileIDs(t testing.TB, d db.Driver, uniqueID string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for slot, id := range fileSync(t, d, uniqueID).FileIDs {
		m[r2.SlotKey(slot)] = id
	}
	return m
}

// fileSync reads a file as an R2 write would (zero when it has no file_ids).
func fileSync(t testing.TB, d db.Driver, uniqueID string) db.FileSync {
	t.Helper()
	fs, err := d.FileSyncGetMany(context.Background(), []string{uniqueID})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		return db.FileSync{}
	}
	return fs[0]
}

// pendingR2 tells whether a file is marked for an R2 write.
func pendingR2(t testing.TB, d db.Driver, uniqueID string) bool {
	t.Helper()
	return fileSync(t, d, uniqueID).Gen != 0
}

// outcomeOf reads a post's claim of a file; ok is false when there is none.
func outcomeOf(t testing.TB, d db.Driver, chat, msg int64, uniqueID string) (db.PostOutcome, bool) {
	t.Helper()
	outs, err := d.PostOutcomeMany(context.Background(), &db.PostOutcomeManyParams{
		ChatID: []int64{chat}, MessageID: []int64{msg}, UniqueID: []string{uniqueID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) == 0 {
		return db.PostOutcome{}, false
	}
	return outs[0], true
}

// fileCount is how many files the database has.
func fileCount(t testing.TB, d db.Driver) int64 {
	t.Helper()
	s, err := d.StatsCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Files
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
