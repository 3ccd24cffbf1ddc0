package dbsqlite_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferry-dev/ferry/db"
)

// What SQLite does differently from Postgres on its own, and the driver
// must hide: these are the cases the conformance suite cannot see from
// Postgres.

func doc(msg int64, uid, name string) db.Post {
	return db.Post{Slot: 1, BotID: 10, ChatID: -1001, MessageID: msg, UniqueID: uid, FileID: uid + "@1",
		Type: "document", Name: name, MimeType: "application/pdf"}
}

func claimParams(ps ...db.Post) *db.PostClaimManyParams {
	p := &db.PostClaimManyParams{}
	for _, s := range ps {
		p.ChatID, p.MessageID = append(p.ChatID, s.ChatID), append(p.MessageID, s.MessageID)
		p.UniqueID, p.Slot, p.BotID = append(p.UniqueID, s.UniqueID), append(p.Slot, int32(s.Slot)), append(p.BotID, s.BotID)
	}
	return p
}

func fileParams(ps ...db.Post) *db.FileInsertManyParams {
	p := &db.FileInsertManyParams{}
	for _, s := range ps {
		p.UniqueID, p.Name, p.MimeType = append(p.UniqueID, s.UniqueID), append(p.Name, s.Name), append(p.MimeType, s.MimeType)
		p.Type, p.Caption, p.Origin = append(p.Type, s.Type), append(p.Caption, s.Caption), append(p.Origin, "local")
		p.Size, p.ChatID, p.MessageID = append(p.Size, s.Size), append(p.ChatID, s.ChatID), append(p.MessageID, s.MessageID)
		p.DC, p.Duration = append(p.DC, int32(s.DC)), append(p.Duration, int32(s.Duration))
		p.Width, p.Height = append(p.Width, int32(s.Width)), append(p.Height, int32(s.Height))
	}
	return p
}

func index(t *testing.T, e db.Executor, ps ...db.Post) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.PostClaimMany(ctx, claimParams(ps...)); err != nil {
		t.Fatal(err)
	}
	if err := e.FileInsertMany(ctx, fileParams(ps...)); err != nil {
		t.Fatal(err)
	}
}

// A claim of a file never written fails at Commit (the deferred foreign
// key), as a data error, and the connection is usable afterwards: SQLite
// leaves such a transaction open, the driver ends it.
func TestDeferredForeignKeyAtCommit(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	tx, err := d.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.PostClaimMany(ctx, claimParams(doc(1, "uMissing", "x"))); err != nil {
		t.Fatalf("claim before its file: %v", err)
	}
	err = tx.Commit(ctx)
	if !db.IsDataError(err) {
		t.Fatalf("Commit of a claim without its file: %v, want a data error", err)
	}
	_ = tx.Rollback(ctx)
	if err := db.WithTx(ctx, d, func(tx db.Tx) error { index(t, tx, doc(2, "uA", "a")); return nil }); err != nil {
		t.Fatalf("a transaction after the refused commit: %v", err)
	}
	if _, err := d.FileGet(ctx, "uA"); err != nil {
		t.Fatal(err)
	}
	// Outside a transaction the statement is its own: refused at once.
	if _, err := d.PostClaimMany(ctx, claimParams(doc(3, "uMissing", "x"))); !db.IsDataError(err) {
		t.Fatalf("claim without its file outside a transaction: %v, want a data error", err)
	}
}

// Text Postgres refuses (a NUL, bytes that are not UTF-8) is a data error
// here too, whether a plain parameter or inside a JSON array parameter.
func TestTextPostgresRefuses(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	for name, s := range map[string]string{"NUL": "a\x00b", "not UTF-8": "a\xffb"} {
		if _, err := d.FileGet(ctx, s); !db.IsDataError(err) {
			t.Errorf("FileGet of %s: %v, want a data error", name, err)
		}
		if err := d.FileInsertMany(ctx, fileParams(doc(1, "uA", s))); !db.IsDataError(err) {
			t.Errorf("FileInsertMany with a name with %s: %v, want a data error", name, err)
		}
		_, err := d.UpdateAcceptMany(ctx, &db.UpdateAcceptManyParams{Counter: 1, Sightings: []db.Post{doc(1, "uA", s)}, DrainKind: "k"})
		if !db.IsDataError(err) {
			t.Errorf("UpdateAcceptMany with a name with %s: %v, want a data error", name, err)
		}
	}
	st, err := d.StatsCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (db.Stats{}) {
		t.Fatalf("stats after refused writes: %+v", st)
	}
}

// A method of several statements that fails in a transaction leaves none
// of its writes (as a single Postgres statement), and aborts the
// transaction as Postgres does: later statements are refused and Commit
// rolls back, unless a savepoint around the call is rolled back to.
func TestMethodFailsInTransaction(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	good, bad := doc(1, "uGood", "good"), doc(2, "uBad", "bad")
	bad.Type = "bogus"

	tx, err := d.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = tx.Savepoint(ctx, func(sp db.Tx) error { return sp.FileInsertMany(ctx, fileParams(good, bad)) })
	if !db.IsDataError(err) {
		t.Fatalf("FileInsertMany with a bad file: %v, want a data error", err)
	}
	if _, err := tx.FileGet(ctx, "uGood"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("the good file of the refused call: %v, want not found", err)
	}
	index(t, tx, good)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.FileGet(ctx, "uGood"); err != nil {
		t.Fatal(err)
	}

	// Without a savepoint.
	tx, err = d.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.SessionSave(ctx, db.Session{BotID: 1, Nonce: []byte("n"), Data: []byte("d")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.FileInsertMany(ctx, fileParams(bad)); !db.IsDataError(err) {
		t.Fatalf("FileInsertMany of a bad file: %v, want a data error", err)
	}
	if _, err := tx.SessionGet(ctx, 1); err == nil || db.IsDataError(err) || errors.Is(err, db.ErrNotFound) {
		t.Fatalf("a statement after the error: %v, want the transaction aborted", err)
	}
	if err := tx.Savepoint(ctx, func(db.Tx) error { return nil }); err == nil {
		t.Fatal("a savepoint in an aborted transaction succeeded")
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("Commit of an aborted transaction succeeded")
	}
	if _, err := d.SessionGet(ctx, 1); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("the aborted transaction's write: %v, want not found", err)
	}
}

// /find lower-cases names beyond ASCII, as Postgres does in a UTF-8 locale.
func TestFileFindUnicode(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	if err := db.WithTx(ctx, d, func(tx db.Tx) error {
		index(t, tx, doc(1, "uA", "Фильм ÜBER 100%.mkv"), doc(2, "uB", "other_name.mkv"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		words []string
		want  int
	}{
		{[]string{"фильм"}, 1},
		{[]string{"über", "100%"}, 1},
		{[]string{"r_n"}, 1},
		{[]string{"%"}, 1},
		{[]string{"_"}, 1},
		{[]string{".mkv"}, 2},
		{[]string{"ФИЛЬМ"}, 0}, // the words come lower-cased
	} {
		files, total, err := d.FileFind(ctx, &db.FileFindParams{Words: c.words, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != c.want || total != c.want {
			t.Errorf("find %q: %d files, total %d, want %d", c.words, len(files), total, c.want)
		}
	}
}

// Every statement of a transaction sees one now(), its start: files created
// in one transaction share their CreatedAt, as on Postgres.
func TestTransactionNow(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	if err := db.WithTx(ctx, d, func(tx db.Tx) error {
		index(t, tx, doc(1, "uA", "a"))
		index(t, tx, doc(2, "uB", "b"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a, err := d.FileGet(ctx, "uA")
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.FileGet(ctx, "uB")
	if err != nil {
		t.Fatal(err)
	}
	if !a.CreatedAt.Equal(b.CreatedAt) {
		t.Fatalf("CreatedAt in one transaction: %v and %v", a.CreatedAt, b.CreatedAt)
	}
}

// A transaction lives until Commit or Rollback whatever becomes of the
// context it was begun with, as a pgx one does.
func TestBeginContextEnds(t *testing.T) {
	d := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	tx, err := d.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := tx.SessionSave(t.Context(), db.Session{BotID: 1, Nonce: []byte("n"), Data: []byte("d")}); err != nil {
		t.Fatalf("a write after Begin's context ended: %v", err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatalf("Commit after Begin's context ended: %v", err)
	}
	if _, err := d.SessionGet(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
}

// A gen is never drawn twice, even for a file whose mark was cleared and
// made again.
func TestGenNeverRepeats(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	p := doc(1, "uA", "a")
	if err := db.WithTx(ctx, d, func(tx db.Tx) error { index(t, tx, p); return nil }); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for i := range 5 {
		_, err := d.FileBotIDUpsertMany(ctx, &db.FileBotIDUpsertManyParams{UniqueID: []string{"uA"},
			FileID: []string{string(rune('a' + i))}, Slot: []int32{1}, BotID: []int64{10}, ChatID: []int64{p.ChatID}, MessageID: []int64{p.MessageID}})
		if err != nil {
			t.Fatal(err)
		}
		fs, err := d.FileSyncGetMany(ctx, []string{"uA"})
		if err != nil {
			t.Fatal(err)
		}
		g := fs[0].Gen
		if g == 0 || seen[g] {
			t.Fatalf("gen %d drawn again (or none) after %d marks", g, i)
		}
		seen[g] = true
		if err := d.R2PendingDeleteMany(ctx, []db.R2Written{{UniqueID: "uA", Gen: g}}); err != nil {
			t.Fatal(err)
		}
	}
}
