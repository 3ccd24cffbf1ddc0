package index_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
)

func TestHumanSize(t *testing.T) {
	cases := map[int64]string{
		0:                "0 B",
		1023:             "1023 B",
		1024:             "1.00 KB",
		1536:             "1.50 KB",
		10 * 1024 * 1024: "10.00 MB",
		1774606367:       "1.65 GB",
		2097152000:       "1.95 GB",
		5 << 40:          "5.00 TB",
	}
	for n, want := range cases {
		if got := index.HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDCFromFileID(t *testing.T) {
	cases := map[string]int{
		gotdVideoDC2:      2,
		gotdAudioDC2:      2,
		gotdAnimationDC2:  2,
		publicDocumentDC4: 4,
		publicDocumentDC5: 5,
	}
	for id, want := range cases {
		got, err := index.DCFromFileID(id)
		if err != nil || got != want {
			t.Errorf("DCFromFileID(%s) = %d, %v; want %d", id[:12], got, err, want)
		}
	}
	if _, err := index.DCFromFileID("not-a-file-id"); err == nil {
		t.Error("garbage decoded")
	}
	// The per-bot ids the tests derive keep the file's DC.
	if dc, err := index.DCFromFileID(botFileID(t, publicDocumentDC4, 7)); err != nil || dc != 4 {
		t.Errorf("derived id: %d, %v", dc, err)
	}
}

func TestPostFromMessage(t *testing.T) {
	channel := models.Chat{ID: -1001234567890, Type: models.ChatTypeChannel}
	t.Run("NUL and overflowing numbers", func(t *testing.T) {
		p, ok := index.PostFromMessage(1, 42, &models.Message{ID: 7, Chat: channel, Caption: "a\x00b",
			Video: &models.Video{FileID: gotdVideoDC2, FileUniqueID: "AgADnul", Duration: 1 << 40, Width: -5,
				FileName: "x\x00.mp4", MimeType: "video/mp4\x00"}})
		if !ok || p.Caption != "ab" || p.Name != "x.mp4" || p.MimeType != "video/mp4" || p.Duration != 1<<31-1 || p.Width != 0 {
			t.Fatalf("got %+v, %v", p, ok)
		}
	})
	t.Run("video", func(t *testing.T) {
		p, ok := index.PostFromMessage(3, 42, &models.Message{ID: 6402, Chat: channel, Caption: "cap",
			Video: &models.Video{FileID: gotdVideoDC2, FileUniqueID: "AgADvid", Width: 1920, Height: 1080, Duration: 61,
				FileName: "clip.mp4", MimeType: "video/mp4", FileSize: 12345}})
		want := index.Post{Slot: 3, BotID: 42, ChatID: -1001234567890, MessageID: 6402, UniqueID: "AgADvid",
			FileID: gotdVideoDC2, Type: "video", Name: "clip.mp4", Size: 12345, MimeType: "video/mp4", DC: 2,
			Caption: "cap", Duration: 61, Width: 1920, Height: 1080}
		if !ok || p != want {
			t.Fatalf("got %+v, %v\nwant %+v", p, ok, want)
		}
	})
	t.Run("video without name", func(t *testing.T) {
		p, ok := index.PostFromMessage(1, 1, &models.Message{ID: 9, Chat: channel,
			Video: &models.Video{FileID: gotdVideoDC2, FileUniqueID: "AgADvid", MimeType: "video/mp4"}})
		if !ok || p.Name != "video_1234567890_9.mp4" {
			t.Fatalf("name = %q", p.Name)
		}
	})
	t.Run("audio", func(t *testing.T) {
		p, ok := index.PostFromMessage(1, 1, &models.Message{ID: 1, Chat: models.Chat{ID: -100, Type: models.ChatTypeSupergroup},
			Audio: &models.Audio{FileID: gotdAudioDC2, FileUniqueID: "AgADaud", Duration: 200, Performer: "Band", Title: "Song", MimeType: "audio/mpeg", FileSize: 9}})
		if !ok || p.Type != "audio" || p.DC != 2 || p.Duration != 200 || p.Name != "Band - Song.mp3" {
			t.Fatalf("got %+v", p)
		}
	})
	t.Run("document", func(t *testing.T) {
		p, ok := index.PostFromMessage(2, 1, &models.Message{ID: 1, Chat: models.Chat{ID: -5, Type: models.ChatTypeGroup},
			Document: &models.Document{FileID: publicDocumentDC4, FileUniqueID: "AgADdoc", FileName: "movie.mkv", MimeType: "video/x-matroska", FileSize: 1774606367}})
		if !ok || p.Type != "document" || p.DC != 4 || p.Name != "movie.mkv" || p.Size != 1774606367 {
			t.Fatalf("got %+v", p)
		}
	})
	t.Run("animation wins over its document", func(t *testing.T) {
		p, ok := index.PostFromMessage(1, 1, &models.Message{ID: 1, Chat: channel,
			Animation: &models.Animation{FileID: gotdAnimationDC2, FileUniqueID: "AgADgif", Width: 320, Height: 240, Duration: 3, FileName: "a.gif.mp4", MimeType: "video/mp4"},
			Document:  &models.Document{FileID: gotdAnimationDC2, FileUniqueID: "AgADgif", FileName: "a.gif.mp4"}})
		if !ok || p.Type != "animation" || p.Width != 320 || p.DC != 2 {
			t.Fatalf("got %+v", p)
		}
	})
	t.Run("ignored", func(t *testing.T) {
		for name, m := range map[string]*models.Message{
			"nil":        nil,
			"text":       {ID: 1, Chat: channel, Text: "hi"},
			"photo":      {ID: 1, Chat: channel, Photo: []models.PhotoSize{{FileID: "x", FileUniqueID: "y"}}},
			"private":    {ID: 1, Chat: models.Chat{ID: 5, Type: models.ChatTypePrivate}, Document: &models.Document{FileID: publicDocumentDC4, FileUniqueID: "u"}},
			"no file id": {ID: 1, Chat: channel, Document: &models.Document{FileUniqueID: "u"}},
		} {
			if _, ok := index.PostFromMessage(1, 1, m); ok {
				t.Errorf("%s: accepted", name)
			}
		}
		if _, ok := index.PostFromMessage(0, 1, &models.Message{ID: 1, Chat: channel, Document: &models.Document{FileID: publicDocumentDC4, FileUniqueID: "u"}}); ok {
			t.Error("slot 0 accepted")
		}
	})
}

func TestFormatReply(t *testing.T) {
	o := index.Outcome{File: index.File{UniqueID: "AgAD", Name: `<script>&"x".mkv`, Size: 1774606367, MimeType: "video/x-matroska", DC: 4}}
	text, button := index.FormatReply(o, "https://ferry.example/f/AgAD?a=1&b=2")
	want := "✅ <b>File Stored Successfully</b>\n\n" +
		"<b>Name:</b> &lt;script&gt;&amp;&#34;x&#34;.mkv\n" +
		"<b>Size:</b> 1.65 GB\n" +
		"<b>Type:</b> video/x-matroska\n" +
		"<b>Location:</b> DC 4\n\n" +
		`<b>View at:</b> <a href="https://ferry.example/f/AgAD?a=1&amp;b=2">https://ferry.example/f/AgAD?a=1&amp;b=2</a>`
	if text != want {
		t.Fatalf("text\n got %q\nwant %q", text, want)
	}
	if button != (index.Button{Text: "View File", URL: "https://ferry.example/f/AgAD?a=1&b=2"}) {
		t.Fatalf("button = %+v", button)
	}
	o.Existing = true
	o.File.MimeType, o.File.Type, o.File.DC = "", "audio", 0
	text, button = index.FormatReply(o, "")
	if !strings.HasPrefix(text, "✅ <b>File Already Exists</b>") || !strings.Contains(text, "<b>Type:</b> audio") ||
		!strings.Contains(text, "DC unknown") || strings.Contains(text, "View at") || button != (index.Button{}) {
		t.Fatalf("existing reply: %q %+v", text, button)
	}
}

func TestViewURL(t *testing.T) {
	pool := dbtest.New(t)
	ix, _ := index.New(index.Options{DB: pool, PublicURL: "https://ferry.example/"})
	if got := ix.ViewURL("AgAD"); got != "https://ferry.example/f/AgAD" {
		t.Fatalf("ViewURL = %q", got)
	}
	store, err := r2.New(r2.Options{AccountID: "a", Bucket: "b", AccessKeyID: "k", SecretAccessKey: "s", PublicURL: "https://files.example"})
	if err != nil {
		t.Fatal(err)
	}
	ix, _ = index.New(index.Options{DB: pool, PublicURL: "https://ferry.example", R2PublicURL: store.PublicURL})
	if got := ix.ViewURL("AgAD"); got != "https://files.example/linkerz/AgAD.json" {
		t.Fatalf("ViewURL with R2_PUBLIC_URL = %q", got)
	}
	ix, _ = index.New(index.Options{DB: pool})
	if got := ix.ViewURL("AgAD"); got != "" {
		t.Fatalf("ViewURL without URLs = %q", got)
	}
}

type failingChecker struct{ calls int }

func (f *failingChecker) Get(context.Context, string) (r2.Record, string, error) {
	f.calls++
	return r2.Record{}, "", errors.New("dial tcp: connection refused")
}

type slowChecker struct{}

func (slowChecker) Get(ctx context.Context, _ string) (r2.Record, string, error) {
	<-ctx.Done()
	return r2.Record{}, "", ctx.Err()
}

func TestR2CheckFailureMeansNew(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	fc := &failingChecker{}
	ix, _ := index.New(index.Options{DB: pool, Check: fc})
	out, err := ix.IndexCommit(ctx, moviePost(t, 1, "AgADfail", -1, 1))
	if err != nil || out.Existing || !out.Reply || out.R2Error == nil || fc.calls != 1 {
		t.Fatalf("outcome %+v, err %v, calls %d", out, err, fc.calls)
	}
	// A hanging R2 costs at most CheckTimeout.
	ix, _ = index.New(index.Options{DB: pool, Check: slowChecker{}, CheckTimeout: 100 * time.Millisecond})
	start := time.Now()
	out, err = ix.IndexCommit(ctx, moviePost(t, 1, "AgADslow", -1, 2))
	if err != nil || out.Existing || out.R2Error == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("slow R2: %+v %v after %v", out, err, time.Since(start))
	}
	// SyncR2 without a writer fails (the job keeps retrying until R2 is configured).
	if err := ix.SyncR2(ctx, "AgADslow"); !errors.Is(err, index.ErrNoR2) {
		t.Fatalf("SyncR2 without R2: %v", err)
	}
}

// A database failure mid-index rolls everything back; the retried job then
// indexes normally and still owns the reply.
func TestRolledBackIndexIsRetried(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	ix := newIndexer(t, pool, nil)
	p := moviePost(t, 1, "AgADretry", -1, 1)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ix.Index(ctx, tx, p)
	if err != nil || !out.Reply {
		t.Fatalf("first attempt: %+v %v", out, err)
	}
	// The caller's own write (its River job) fails: the whole tx goes.
	bad := &db.FileInsertManyParams{UniqueID: []string{"AgADbad"}, Name: []string{""}, MimeType: []string{""}, Type: []string{"bogus"},
		Caption: []string{""}, Origin: []string{"local"}, Size: []int64{0}, ChatID: []int64{-1}, MessageID: []int64{2},
		DC: []int32{0}, Duration: []int32{0}, Width: []int32{0}, Height: []int32{0}}
	if err := tx.FileInsertMany(ctx, bad); err == nil {
		t.Fatal("expected failure")
	}
	_ = tx.Rollback(ctx)
	if n := fileCount(t, pool); n != 0 {
		t.Fatalf("files has %d rows after rollback", n)
	}
	if ids := dbFileIDs(t, pool, p.UniqueID); len(ids) != 0 {
		t.Fatalf("file_bot_ids has %v after rollback", ids)
	}
	if _, ok := outcomeOf(t, pool, p.ChatID, p.MessageID, p.UniqueID); ok {
		t.Fatal("channel_posts has the claim after rollback")
	}
	// A broken connection mid-Index returns an error, not an outcome.
	cctx, cancel := context.WithCancel(ctx)
	tx2, err := pool.Begin(cctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := ix.Index(cctx, tx2, p); err == nil {
		t.Fatal("Index on a cancelled transaction succeeded")
	}
	_ = tx2.Rollback(ctx)

	out, err = ix.IndexCommit(ctx, p)
	if err != nil || !out.Reply || out.Existing {
		t.Fatalf("retry: %+v %v", out, err)
	}
	if o, ok := outcomeOf(t, pool, p.ChatID, p.MessageID, p.UniqueID); !ok || o.ClaimedBySlot != 1 || o.Existing {
		t.Fatalf("channel_posts after the retry: %+v %v", o, ok)
	}
}

func TestFoundInR2IsExisting(t *testing.T) {
	ctx := context.Background()
	store := newStore(t, r2test.Fake(t))
	if err := store.Create(ctx, r2.Record{UniqueID: "AgADelsewhere", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "theirs"}}); err != nil {
		t.Fatal(err)
	}
	pool := dbtest.New(t)
	ix := newIndexer(t, pool, store)
	out, err := ix.IndexCommit(ctx, moviePost(t, 4, "AgADelsewhere", -7, 7))
	if err != nil || !out.Existing || !out.Reply || out.File.Origin != "r2" {
		t.Fatalf("outcome %+v %v", out, err)
	}
	if err := ix.SyncR2(ctx, "AgADelsewhere"); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := store.Get(ctx, "AgADelsewhere")
	if rec.BotFileIDs[r2.SlotKey(1)] != "theirs" || rec.BotFileIDs[r2.SlotKey(4)] != botFileID(t, publicDocumentDC4, 4) {
		t.Fatalf("merged = %v", rec.BotFileIDs)
	}
}

func TestFind(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	ix := newIndexer(t, pool, nil)
	names := []string{"The.Matrix.1999.mkv", "matrix reloaded.mp4", "Other 100%_done.zip", "Dune.Part.Two.mkv"}
	for i, n := range names {
		p := moviePost(t, 1, fmt.Sprintf("AgADfind%d", i), -1, int64(i+1))
		p.Name = n
		if _, err := ix.IndexCommit(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	files, total, err := ix.Find(ctx, "MATRIX", 0, 10)
	if err != nil || total != 2 || len(files) != 2 {
		t.Fatalf("Find matrix: %d/%d %v", len(files), total, err)
	}
	if files[0].Name != "matrix reloaded.mp4" { // newest first
		t.Fatalf("order: %s, %s", files[0].Name, files[1].Name)
	}
	files, total, err = ix.Find(ctx, "matrix", 1, 1)
	if err != nil || total != 2 || len(files) != 1 || files[0].Name != "The.Matrix.1999.mkv" {
		t.Fatalf("page 2: %+v %d %v", files, total, err)
	}
	files, total, err = ix.Find(ctx, "matrix", 5, 1)
	if err != nil || total != 2 || len(files) != 0 {
		t.Fatalf("past the end: %d %d %v", len(files), total, err)
	}
	files, total, err = ix.Find(ctx, "matrix 1999", 0, 10)
	if err != nil || total != 1 || files[0].Name != "The.Matrix.1999.mkv" {
		t.Fatalf("two words: %d %v", total, err)
	}
	// LIKE wildcards in the query are literal.
	if _, total, _ = ix.Find(ctx, "100%_", 0, 10); total != 1 {
		t.Fatalf("escaped search found %d", total)
	}
	if _, total, _ = ix.Find(ctx, "%", 0, 10); total != 1 {
		t.Fatalf("'%%' found %d, want only the name containing %%", total)
	}
	if files, total, _ = ix.Find(ctx, "   ", 0, 10); total != 0 || files != nil {
		t.Fatal("blank query matched")
	}
}

func TestReplyState(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	ix := newIndexer(t, pool, nil)
	if _, err := ix.IndexCommit(ctx, moviePost(t, 2, "AgADreply", -9, 9)); err != nil {
		t.Fatal(err)
	}
	posts := []index.PostRef{{ChatID: -9, MessageID: 9}, {ChatID: -9, MessageID: 10}} // the second was never seen
	pending, err := ix.PendingReplies(ctx, posts)
	if err != nil || len(pending) != 1 || pending[0].PostRef != posts[0] {
		t.Fatalf("pending before reply: %+v %v", pending, err)
	}
	if out := pending[0].Outcome; out.ClaimedBySlot != 2 || out.File.UniqueID != "AgADreply" || out.Existing {
		t.Fatalf("outcome: %+v", out)
	}
	// The never-seen post is not marked; a mark given twice counts once.
	sent := []index.SentReply{{PostRef: posts[1], ReplyMessageID: 554}, {PostRef: posts[0], ReplyMessageID: 555}, {PostRef: posts[0], ReplyMessageID: 555}}
	if marked, err := ix.MarkReplied(ctx, sent); err != nil || len(marked) != 1 || marked[0] != posts[0] {
		t.Fatalf("MarkReplied: %v %v", marked, err)
	}
	if marked, err := ix.MarkReplied(ctx, []index.SentReply{{PostRef: posts[0], ReplyMessageID: 556}}); err != nil || len(marked) != 0 {
		t.Fatalf("second MarkReplied: %v %v", marked, err)
	}
	if o, _ := outcomeOf(t, pool, -9, 9, "AgADreply"); o.ReplyMessageID != 555 {
		t.Fatalf("reply_message_id %d; want 555", o.ReplyMessageID)
	}
	if pending, err := ix.PendingReplies(ctx, posts); err != nil || len(pending) != 0 {
		t.Fatalf("pending after reply: %+v %v", pending, err)
	}
	if _, err := ix.GetFile(ctx, "AgADnope"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("GetFile unknown: %v", err)
	}
}

// `ferry r2 sync`: a new, empty bucket gets every file from the database.
func TestSyncAllRebuildsBucket(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	old := newStore(t, r2test.Fake(t))
	ix := newIndexer(t, pool, old)
	for i := 0; i < 7; i++ {
		for slot := 1; slot <= 2; slot++ {
			if _, err := ix.IndexCommit(ctx, moviePost(t, slot, fmt.Sprintf("AgADall%d", i), -1, int64(i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := ix.SyncR2(ctx, fmt.Sprintf("AgADall%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := newStore(t, r2test.Fake(t))
	ix2 := newIndexer(t, pool, fresh)
	var seen []string
	n, err := ix2.SyncAll(ctx, 3, func(done int, id string) { seen = append(seen, id) })
	if err != nil || n != 7 || len(seen) != 7 {
		t.Fatalf("SyncAll = %d, %v (%d progress calls)", n, err, len(seen))
	}
	for i := 0; i < 7; i++ {
		id := fmt.Sprintf("AgADall%d", i)
		rec, _, err := fresh.Get(ctx, id)
		if err != nil {
			t.Fatalf("%s not rebuilt: %v", id, err)
		}
		if err := sameMap(rec.BotFileIDs, dbFileIDs(t, pool, id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix2.SyncR2(ctx, "AgADnothere"); !errors.Is(err, index.ErrUnknownFile) {
		t.Fatalf("unknown file: %v", err)
	}
}

// A post whose claim names another file (the message was edited to carry a
// different file): the new file is still recorded, nobody replies twice.
func TestEditedPostOtherFile(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	ix := newIndexer(t, pool, nil)
	if _, err := ix.IndexCommit(ctx, moviePost(t, 1, "AgADbefore", -8, 8)); err != nil {
		t.Fatal(err)
	}
	out, err := ix.IndexCommit(ctx, moviePost(t, 2, "AgADafter", -8, 8))
	if err != nil {
		t.Fatal(err)
	}
	if out.Reply || out.File.UniqueID != "AgADafter" || !out.NeedR2Write {
		t.Fatalf("outcome = %+v", out)
	}
	if ids := dbFileIDs(t, pool, "AgADafter"); ids[r2.SlotKey(2)] == "" {
		t.Fatal("edited post's file not recorded")
	}
}

// gatedWriter, once armed, holds the next Create until release is closed,
// so a test can change the database while an R2 write is in flight.
type gatedWriter struct {
	index.Writer
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gatedWriter) Create(ctx context.Context, rec r2.Record) error {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.Writer.Create(ctx, rec)
}

// A file_id committed while an R2 write of its file is in flight must leave
// the file marked for R2, both when the mark is updated under the write and
// when the write's mark was cleared by another writer and made anew (a
// reused gen would let the slow writer clear the new mark).
func TestR2MarkSurvivesChangeDuringWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		// during runs while the first write is held.
		during func(t *testing.T, ix *index.Indexer, uid string)
	}{
		{"MarkUpdated", func(t *testing.T, ix *index.Indexer, uid string) {
			if out, err := ix.IndexCommit(context.Background(), moviePost(t, 3, uid, -5, 5)); err != nil || !out.NeedR2Write {
				t.Fatalf("third bot: %+v, %v", out, err)
			}
		}},
		{"MarkClearedAndMadeAgain", func(t *testing.T, ix *index.Indexer, uid string) {
			// Another writer lands the same state and clears the mark...
			if err := ix.SyncR2(context.Background(), uid); err != nil {
				t.Fatal(err)
			}
			// ...then a new file_id makes a new mark.
			if out, err := ix.IndexCommit(context.Background(), moviePost(t, 3, uid, -5, 5)); err != nil || !out.NeedR2Write {
				t.Fatalf("third bot: %+v, %v", out, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pool := dbtest.New(t)
			store := newStore(t, r2test.Fake(t))
			gate := &gatedWriter{Writer: store, entered: make(chan struct{}), release: make(chan struct{})}
			ix, err := index.New(index.Options{DB: pool, Check: store, Write: gate, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			const uid = "AgADgated"
			// The first bot's sighting creates the object; the second's
			// file_id waits for an R2 write.
			if out, err := ix.IndexCommit(ctx, moviePost(t, 1, uid, -5, 5)); err != nil || out.NeedR2Write {
				t.Fatalf("first bot: %+v, %v", out, err)
			}
			if out, err := ix.IndexCommit(ctx, moviePost(t, 2, uid, -5, 5)); err != nil || !out.NeedR2Write {
				t.Fatalf("second bot: %+v, %v", out, err)
			}
			gate.armed.Store(true)
			slow := make(chan error, 1)
			go func() { slow <- ix.SyncR2(ctx, uid) }()
			<-gate.entered
			tc.during(t, ix, uid)
			close(gate.release)
			if err := <-slow; err != nil {
				t.Fatal(err)
			}
			if !pendingR2(t, pool, uid) {
				t.Fatal("the slow write cleared a mark it did not write")
			}
			// The same sighting again changes nothing and asks for no write.
			if out, err := ix.IndexCommit(ctx, moviePost(t, 3, uid, -5, 5)); err != nil || out.NeedR2Write {
				t.Fatalf("repeated sighting: %+v, %v", out, err)
			}
			if err := ix.SyncR2(ctx, uid); err != nil {
				t.Fatal(err)
			}
			rec, _, err := store.Get(ctx, uid)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameMap(rec.BotFileIDs, dbFileIDs(t, pool, uid)); err != nil || len(rec.BotFileIDs) != 3 {
				t.Fatalf("object = %v (%v)", rec.BotFileIDs, err)
			}
			if pendingR2(t, pool, uid) {
				t.Fatal("a mark is left after the file landed")
			}
		})
	}
}

// A batch that created a new file's object and then rolled back leaves the
// object behind; its retry must find the object its own (it holds the
// batch's file_id) and still answer "File Stored Successfully".
func TestRolledBackCreateInR2IsStillNew(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	store := newStore(t, r2test.Fake(t))
	ix := newIndexer(t, pool, store)
	p := moviePost(t, 4, "AgADrolled", -7, 7)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ix.Index(ctx, tx, p); err != nil || out.Existing || out.NeedR2Write {
		t.Fatalf("first attempt: %+v %v", out, err)
	}
	_ = tx.Rollback(ctx)
	rec, _, err := store.Get(ctx, p.UniqueID)
	if err != nil || rec.BotFileIDs[r2.SlotKey(4)] != p.FileID {
		t.Fatalf("object of the rolled-back attempt: %+v, %v", rec, err)
	}

	out, err := ix.IndexCommit(ctx, p)
	if err != nil || out.Existing || !out.Reply || !out.R2Checked || out.File.Origin != "local" {
		t.Fatalf("retry: %+v %v", out, err)
	}
	// Another bot of another deployment in the same slot has another
	// file_id: for it the object is someone else's.
	other := newIndexer(t, dbtest.New(t), store)
	q := p
	q.FileID = botFileID(t, publicDocumentDC4, 104)
	if out, err := other.IndexCommit(ctx, q); err != nil || !out.Existing || out.File.Origin != "r2" {
		t.Fatalf("other deployment: %+v %v", out, err)
	}
}
