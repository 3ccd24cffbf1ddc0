package drivertest

import (
	"bytes"
	"context"
	"math/bits"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// upload is a fresh attempt at key with Telegram file id fileID.
func upload(key string, fileID int64) *db.UploadState {
	return &db.UploadState{Key: key, BotID: 10, FileID: fileID, Size: 5 << 20, PartSize: 512 << 10, TotalParts: 10, Big: true}
}

// beginUpload records st's attempt and returns its start and random_id.
func beginUpload(t testing.TB, e db.Executor, st *db.UploadState) (time.Time, int64) {
	t.Helper()
	created, randomID, err := e.UploadStateBegin(context.Background(), st)
	check(t, err)
	return created, randomID
}

func getUpload(t testing.TB, e db.Executor, key string) db.UploadState {
	t.Helper()
	return must(e.UploadStateGet(context.Background(), key)).of(t)
}

// sameUpload fails t unless got is want (no acked parts and an empty
// bitmap are the same; times compare as instants).
func sameUpload(t testing.TB, what string, got, want db.UploadState) {
	t.Helper()
	if !bytes.Equal(got.Acked, want.Acked) || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("%s: acked %x created %v, want acked %x created %v", what, got.Acked, got.CreatedAt, want.Acked, want.CreatedAt)
	}
	got.Acked, want.Acked, got.CreatedAt, want.CreatedAt = nil, nil, time.Time{}, time.Time{}
	equal(t, what, got, want)
}

func ackedOf(t testing.TB, e db.Executor, key string) []byte {
	t.Helper()
	return getUpload(t, e, key).Acked
}

func saveAcked(t testing.TB, e db.Executor, key string, fileID int64, acked ...byte) {
	t.Helper()
	n := 0
	for _, b := range acked {
		n += bits.OnesCount8(b)
	}
	check(t, e.UploadStateSaveAcked(context.Background(), key, fileID, acked, n))
}

func ensureRandomID(t testing.TB, e db.Executor, key string, randomID int64) int64 {
	t.Helper()
	return must(e.UploadStateEnsureRandomID(context.Background(), key, randomID)).of(t)
}

func testUploadStateGet(t *testing.T, s *suite) {
	d := s.driver(t)
	_, err := d.UploadStateGet(t.Context(), "k")
	notFound(t, "UploadStateGet of an unknown key", err)
	st := upload("k", 111)
	st.CreatedAt, _ = beginUpload(t, d, st)
	sameUpload(t, "upload state", getUpload(t, d, "k"), *st)
}

func testUploadStateBegin(t *testing.T, s *suite) {
	d := s.driver(t)
	first, randomID := beginUpload(t, d, upload("k", 111))
	recent(t, "attempt's start", first)
	equal(t, "random_id of a first attempt", randomID, int64(0))
	ensureRandomID(t, d, "k", 42)
	saveAcked(t, d, "k", 111, 0x03)

	// A fresh attempt: its own file and no parts acked, the random_id kept.
	next := upload("k", 222)
	next.Size, next.TotalParts, next.Big = 1<<20, 2, false
	started, randomID := beginUpload(t, d, next)
	equal(t, "random_id kept by a new attempt", randomID, int64(42))
	if started.Before(first) {
		t.Fatalf("second attempt started %v, before the first (%v)", started, first)
	}
	next.CreatedAt, next.RandomID = started, 42
	sameUpload(t, "upload state of the new attempt", getUpload(t, d, "k"), *next)
}

func testUploadStateSaveAcked(t *testing.T, s *suite) {
	d := s.driver(t)
	beginUpload(t, d, upload("k", 111))
	saveAcked(t, d, "k", 111, 0x03)
	equal(t, "acked", ackedOf(t, d, "k"), []byte{0x03})
	saveAcked(t, d, "k", 999, 0xff) // an abandoned attempt's late flush
	equal(t, "acked after another attempt's save", ackedOf(t, d, "k"), []byte{0x03})
	saveAcked(t, d, "k", 111, 0x0f)
	saveAcked(t, d, "k", 111, 0x07) // an older save landing after a newer one
	equal(t, "acked after an older, smaller save", ackedOf(t, d, "k"), []byte{0x0f})
	saveAcked(t, d, "k", 111, 0x0f) // the same snapshot again: no harm
	equal(t, "acked after the same save twice", ackedOf(t, d, "k"), []byte{0x0f})
	beginUpload(t, d, upload("k", 111))
	saveAcked(t, d, "k", 111, 0x03) // a fresh attempt starts from nothing
	equal(t, "acked of a fresh attempt", ackedOf(t, d, "k"), []byte{0x03})

	txMatters(t, d, func(tx db.Tx) { saveAcked(t, tx, "k", 111, 0x07) },
		func() { equal(t, "acked after Rollback", ackedOf(t, d, "k"), []byte{0x03}) },
		func() { equal(t, "acked after Commit", ackedOf(t, d, "k"), []byte{0x07}) })
}

func testUploadStateEnsureRandomID(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "random_id stored for a new key", ensureRandomID(t, d, "k", 7), int64(7))
	got := getUpload(t, d, "k")
	equal(t, "(file id, random_id, message) of a row that only carries the post",
		[]int64{got.FileID, got.RandomID, int64(got.MessageID)}, []int64{0, 7, 0})
	equal(t, "random_id stored again", ensureRandomID(t, d, "k", 8), int64(7))
	_, randomID := beginUpload(t, d, upload("k", 111))
	equal(t, "random_id kept by Begin", randomID, int64(7))

	beginUpload(t, d, upload("j", 1))
	equal(t, "random_id stored for an upload", ensureRandomID(t, d, "j", 9), int64(9))
	got = getUpload(t, d, "j")
	equal(t, "(file id, random_id) of the upload", []int64{got.FileID, got.RandomID}, []int64{1, 9})
}

func testUploadStateMarkSent(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	st := upload("k", 111)
	st.CreatedAt, _ = beginUpload(t, d, st)
	check(t, d.UploadStateMarkSent(ctx, "k", 77))
	st.MessageID = 77
	sameUpload(t, "upload state after MarkSent", getUpload(t, d, "k"), *st)

	ensureRandomID(t, d, "j", 5)
	check(t, d.UploadStateMarkSent(ctx, "j", 78))
	got := getUpload(t, d, "j")
	equal(t, "(random_id, message) of a post's row", []int64{got.RandomID, int64(got.MessageID)}, []int64{5, 78})
}

func testUploadStateInvalidate(t *testing.T, s *suite) {
	d := s.driver(t)
	beginUpload(t, d, upload("k", 111))
	ensureRandomID(t, d, "k", 42)
	saveAcked(t, d, "k", 111, 0x01)
	check(t, d.UploadStateInvalidate(t.Context(), "k"))
	got := getUpload(t, d, "k")
	if got.FileID == 111 {
		t.Fatal("an invalidated upload can still resume its attempt")
	}
	equal(t, "random_id after Invalidate", got.RandomID, int64(42))
	saveAcked(t, d, "k", 111, 0xff)
	equal(t, "acked after the old attempt's save", ackedOf(t, d, "k"), []byte{0x01})
	_, randomID := beginUpload(t, d, upload("k", 222))
	equal(t, "random_id of the next attempt", randomID, int64(42))
}

func testUploadStateDelete(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	beginUpload(t, d, upload("k", 111))
	ensureRandomID(t, d, "k", 42)
	beginUpload(t, d, upload("j", 222))
	check(t, d.UploadStateDelete(ctx, "k"))
	_, err := d.UploadStateGet(ctx, "k")
	notFound(t, "UploadStateGet after Delete", err)
	equal(t, "other upload's file id", getUpload(t, d, "j").FileID, int64(222))
	check(t, d.UploadStateDelete(ctx, "unknown"))
	equal(t, "random_id stored after Delete", ensureRandomID(t, d, "k", 43), int64(43))
}

func testSessionGet(t *testing.T, s *suite) {
	d := s.driver(t)
	_, err := d.SessionGet(t.Context(), 1)
	notFound(t, "SessionGet of an unknown bot", err)
	save(t, d, 1)
	equal(t, "session", must(d.SessionGet(t.Context(), 1)).of(t), session(1))
	_, err = d.SessionGet(t.Context(), 2)
	notFound(t, "SessionGet of another bot", err)
}

func testSessionSave(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	save(t, d, 1, 2)
	renewed := db.Session{BotID: 1, Nonce: []byte("nonce 2"), Data: []byte("renewed")}
	check(t, d.SessionSave(ctx, renewed))
	equal(t, "renewed session", must(d.SessionGet(ctx, 1)).of(t), renewed)
	equal(t, "other session", must(d.SessionGet(ctx, 2)).of(t), session(2))
}
