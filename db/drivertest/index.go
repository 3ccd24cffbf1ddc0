package drivertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db"
)

func claim(t testing.TB, e db.Executor, posts ...db.Post) []db.PostClaim {
	t.Helper()
	return sortedBy(must(e.PostClaimMany(context.Background(), claimParams(posts...))).of(t),
		func(c db.PostClaim) db.PostRef { return c.PostRef })
}

func outcomeParams(posts ...db.Post) *db.PostOutcomeManyParams {
	p := &db.PostOutcomeManyParams{}
	for _, s := range posts {
		p.ChatID, p.MessageID, p.UniqueID = append(p.ChatID, s.ChatID), append(p.MessageID, s.MessageID), append(p.UniqueID, s.UniqueID)
	}
	return p
}

// outcome is what PostOutcomeMany and PostPendingReplyMany give for post p
// of the file first posted as first.
func outcome(p, first db.Post, existing bool, slot int) db.PostOutcome {
	return db.PostOutcome{PostRef: ref(p), File: fileOf(first, "local"), Existing: existing, ClaimedBySlot: slot}
}

// plain is outs with their files' CreatedAt checked and cleared.
func plain(t testing.TB, outs []db.PostOutcome) []db.PostOutcome {
	t.Helper()
	for i := range outs {
		recent(t, "outcome's file CreatedAt", outs[i].File.CreatedAt)
		outs[i].File.CreatedAt = time.Time{}
	}
	return outs
}

func refs(posts ...db.Post) []db.PostRef {
	out := make([]db.PostRef, len(posts))
	for i, p := range posts {
		out[i] = ref(p)
	}
	return out
}

func replied(p db.Post, reply int64) db.PostReplied {
	return db.PostReplied{PostRef: ref(p), ReplyMessageID: reply}
}

func pending(t testing.TB, e db.Executor, posts ...db.PostRef) []db.PostOutcome {
	t.Helper()
	return plain(t, must(e.PostPendingReplyMany(context.Background(), posts)).of(t))
}

func mark(t testing.TB, e db.Executor, sent ...db.PostReplied) []db.PostRef {
	t.Helper()
	return sortedBy(must(e.PostMarkRepliedMany(context.Background(), sent)).of(t), func(r db.PostRef) db.PostRef { return r })
}

// fileIDs are uid's file_ids by slot, through FileSyncGetMany.
func fileIDs(t testing.TB, e db.Executor, uid string) map[int]string {
	t.Helper()
	fs := must(e.FileSyncGetMany(context.Background(), []string{uid})).of(t)
	if len(fs) != 1 {
		t.Fatalf("FileSyncGetMany(%s) = %d files, want 1", uid, len(fs))
	}
	return fs[0].FileIDs
}

func testFileLockNew(t *testing.T, s *suite) {
	t.Run("Reentrant", func(t *testing.T) {
		d := s.driver(t)
		for range 2 { // the second transaction gets it once the first ended
			inTx(t, d, func(tx db.Tx) {
				check(t, tx.FileLockNew(t.Context()))
				check(t, tx.FileLockNew(timeout(t)))
			})
		}
	})
	t.Run("Exclusive", func(t *testing.T) {
		s.concurrent(t)
		d := s.driver(t)
		holder, waiter := begin(t, d), begin(t, d)
		check(t, holder.FileLockNew(t.Context()))
		wait := waits(t, "FileLockNew while another transaction holds it", func() error {
			return waiter.FileLockNew(context.Background())
		})
		check(t, holder.Rollback(t.Context()))
		check(t, wait())
	})
}

func testFileUnknownMany(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	index(t, d, post(1, "uA", 1))
	addFiles(t, d, post(2, "uB", 1)) // known without file_ids
	equal(t, "unknown", sorted(must(d.FileUnknownMany(ctx, []string{"uA", "uB", "uC", "uC", "uD"})).of(t)), []string{"uC", "uD"})
	equal(t, "unknown of none", must(d.FileUnknownMany(ctx, nil)).of(t), nil)
	tx := begin(t, d)
	claimAndInsert(t, tx, []db.Post{post(3, "uC", 1)})
	equal(t, "unknown in a transaction that added one", must(tx.FileUnknownMany(ctx, []string{"uC", "uD"})).of(t), []string{"uD"})
}

func testPostClaimMany(t *testing.T, s *suite) {
	t.Run("Claims", func(t *testing.T) {
		d := s.driver(t)
		index(t, d, post(1, "uK", 1))
		// One post seen by three bots, and a post of a known file.
		ps := []db.Post{post(10, "uA", 3), post(10, "uA", 1), post(10, "uA", 2), post(11, "uK", 2)}
		tx := begin(t, d)
		claims := claim(t, tx, ps...)
		equal(t, "claims", claims, []db.PostClaim{{PostRef: ref(ps[1]), Slot: 1}, {PostRef: ref(ps[3]), Slot: 2, Existing: true}})
		equal(t, "claims made again", claim(t, tx, ps...), nil)
		check(t, tx.FileInsertMany(t.Context(), fileParams(ps, newPosts(claims))))
		check(t, tx.Commit(t.Context()))
		inTx(t, d, func(tx db.Tx) { equal(t, "claims of committed claims", claim(t, tx, ps[1]), nil) })

		// A claim rolled back leaves the post free.
		tx = begin(t, d)
		claim(t, tx, post(12, "uA", 1))
		check(t, tx.Rollback(t.Context()))
		inTx(t, d, func(tx db.Tx) {
			equal(t, "claims after Rollback", claim(t, tx, post(12, "uA", 2)),
				[]db.PostClaim{{PostRef: ref(post(12, "uA", 2)), Slot: 2, Existing: true}})
		})
	})
	t.Run("Waits", func(t *testing.T) {
		s.concurrent(t)
		d := s.driver(t)
		index(t, d, post(1, "uA", 1))
		for msg, commit := range map[int64]bool{2: true, 3: false} {
			p := post(msg, "uA", 2)
			first, second := begin(t, d), begin(t, d)
			claim(t, first, p)
			var got []db.PostClaim
			wait := waits(t, "a claim of a post claimed by an open transaction", func() (err error) {
				got, err = second.PostClaimMany(context.Background(), claimParams(post(msg, "uA", 1)))
				return err
			})
			want := []db.PostClaim{{PostRef: ref(p), Slot: 1, Existing: true}} // the first one gave up
			if commit {
				check(t, first.Commit(t.Context()))
				want = nil
			} else {
				check(t, first.Rollback(t.Context()))
			}
			check(t, wait())
			equal(t, "second claim", got, want)
			check(t, second.Rollback(t.Context()))
		}
	})
}

func testFileInsertMany(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	// uA: a new local file posted twice; uB: known to R2 first; uC: its
	// row appears (another batch's, say) after p4 was claimed as new.
	p1, p2, p3, p4, p5 := post(1, "uA", 1), post(2, "uA", 2), doc(3, "uB", 1), post(4, "uC", 1), post(5, "uC", 2)
	tx := begin(t, d)
	claims := claim(t, tx, p1, p2, p3, p4)
	equal(t, "posts claimed as new", newPosts(claims), refs(p1, p2, p3, p4))
	check(t, tx.FileInsertMany(ctx, fileParams([]db.Post{p5}, nil)))
	check(t, tx.FileInsertMany(ctx, fileParams([]db.Post{p1, p2, p3, p4}, refs(p1, p2, p3, p4), "uB")))
	existing := map[db.PostRef]bool{}
	for _, o := range must(tx.PostOutcomeMany(ctx, outcomeParams(p1, p2, p3, p4))).of(t) {
		existing[o.PostRef] = o.Existing
	}
	equal(t, "existing", existing, map[db.PostRef]bool{ref(p1): false, ref(p2): true, ref(p3): true, ref(p4): true})
	check(t, tx.Commit(ctx))

	sameFile(t, "local file", must(d.FileGet(ctx, "uA")).of(t), fileOf(p1, "local"))
	sameFile(t, "file from R2", must(d.FileGet(ctx, "uB")).of(t), fileOf(p3, "r2"))
	sameFile(t, "file inserted before", must(d.FileGet(ctx, "uC")).of(t), fileOf(p5, "local"))
}

func testFileBotIDUpsertMany(t *testing.T, s *suite) {
	d := s.driver(t)
	a1, a2, b1 := post(1, "uA", 1), post(1, "uA", 2), post(2, "uB", 1)
	addFiles(t, d, a1, b1)

	equal(t, "marked by new file_ids", upsert(t, d, []db.Post{a1, a2}), []string{"uA"})
	g1 := gen(t, d, "uA")
	if g1 == 0 {
		t.Fatal("a marked file has gen 0")
	}
	equal(t, "marked by the same file_ids", upsert(t, d, []db.Post{a1, a2}), nil)
	equal(t, "gen after the same file_ids", gen(t, d, "uA"), g1)
	a1b := withFileID(a1, "uA@1 renewed")
	equal(t, "marked by a changed file_id", upsert(t, d, []db.Post{a1b}), []string{"uA"})
	if gen(t, d, "uA") == g1 {
		t.Fatal("a changed file_id kept the gen")
	}
	equal(t, "file_ids", fileIDs(t, d, "uA"), map[int]string{1: a1b.FileID, 2: a2.FileID})

	// One slot in two posts: the latest post's file_id.
	upsert(t, d, []db.Post{withFileID(post(9, "uA", 3), "newer"), withFileID(post(5, "uA", 3), "older")})
	equal(t, "slot 3's file_id", fileIDs(t, d, "uA")[3], "newer")

	// File_ids already in the caller's object mark nothing.
	equal(t, "marked by created file_ids", upsert(t, d, []db.Post{b1}, b1), nil)
	equal(t, "gen of a file written whole", gen(t, d, "uB"), int64(0))
	b2, b3 := post(2, "uB", 2), post(2, "uB", 3)
	equal(t, "marked by one created and one not", upsert(t, d, []db.Post{b2, b3}, b2), []string{"uB"})
	b4 := post(2, "uB", 4)
	equal(t, "marked by a file_id other than the one created", upsert(t, d, []db.Post{b4}, withFileID(b4, "other")), []string{"uB"})
	equal(t, "marked in one call", upsert(t, d, []db.Post{withFileID(b1, "x"), withFileID(a2, "y")}), []string{"uA", "uB"})
	equal(t, "uB's file_ids", fileIDs(t, d, "uB"), map[int]string{1: "x", 2: b2.FileID, 3: b3.FileID, 4: b4.FileID})
}

func testPostOutcomeMany(t *testing.T, s *suite) {
	d := s.driver(t)
	p1, p2, p3 := post(1, "uA", 2), post(2, "uA", 1), post(3, "uB", 3)
	index(t, d, p1)
	index(t, d, p2, p3, post(3, "uB", 1))
	unclaimed, noFile := post(99, "uA", 1), p1
	noFile.UniqueID = "uNone"
	got := must(d.PostOutcomeMany(t.Context(), outcomeParams(p2, p1, p1, unclaimed, noFile, p3))).of(t)
	equal(t, "outcomes", sortedBy(plain(t, got), func(o db.PostOutcome) db.PostRef { return o.PostRef }),
		[]db.PostOutcome{outcome(p1, p1, false, 2), outcome(p2, p1, true, 1), outcome(p3, p3, false, 1)})
	equal(t, "outcomes of none", must(d.PostOutcomeMany(t.Context(), outcomeParams())).of(t), nil)
}

func testPostPendingReplyMany(t *testing.T, s *suite) {
	d := s.driver(t)
	p1, p2, p3 := post(1, "uA", 1), post(2, "uB", 2), post(3, "uC", 1)
	index(t, d, p1, p2, p3)
	mark(t, d, replied(p2, 100))
	got := pending(t, d, ref(p3), ref(p1), ref(p2), db.PostRef{ChatID: chat, MessageID: 99})
	equal(t, "pending, in post order", got, []db.PostOutcome{outcome(p1, p1, false, 1), outcome(p3, p3, false, 1)})
	equal(t, "pending of none", pending(t, d), nil)
}

func testPostMarkRepliedMany(t *testing.T, s *suite) {
	d := s.driver(t)
	p1, p2, p3 := post(1, "uA", 1), post(2, "uB", 1), post(3, "uC", 1)
	index(t, d, p1, p2, p3)
	got := mark(t, d, replied(p2, 100), replied(p1, 101), replied(p1, 102), db.PostReplied{PostRef: db.PostRef{ChatID: chat, MessageID: 99}})
	equal(t, "marked", got, refs(p1, p2))
	equal(t, "marked again", mark(t, d, replied(p1, 103)), nil)
	equal(t, "pending after marking", pending(t, d, ref(p1), ref(p2)), nil)
	outs := must(d.PostOutcomeMany(t.Context(), &db.PostOutcomeManyParams{ChatID: []int64{chat, chat}, MessageID: []int64{p1.MessageID, p2.MessageID},
		UniqueID: []string{p1.UniqueID, p2.UniqueID}})).of(t)
	replies := map[int64]int64{}
	for _, o := range outs {
		replies[o.MessageID] = o.ReplyMessageID
	}
	equal(t, "reply messages recorded (the first mark of each post)", replies, map[int64]int64{p1.MessageID: 101, p2.MessageID: 100})

	txMatters(t, d, func(tx db.Tx) { equal(t, "marked in a transaction", mark(t, tx, replied(p3, 104)), refs(p3)) },
		func() { equal(t, "pending after Rollback", refsOf(pending(t, d, ref(p3))), refs(p3)) },
		func() { equal(t, "pending after Commit", pending(t, d, ref(p3)), nil) })
}

func refsOf(outs []db.PostOutcome) []db.PostRef {
	out := make([]db.PostRef, len(outs))
	for i, o := range outs {
		out[i] = o.PostRef
	}
	return out
}

func testFileGet(t *testing.T, s *suite) {
	d := s.driver(t)
	_, err := d.FileGet(t.Context(), "uA")
	notFound(t, "FileGet of an unknown file", err)
	p := doc(1, "uA", 1)
	index(t, d, p)
	sameFile(t, "file", must(d.FileGet(t.Context(), "uA")).of(t), fileOf(p, "local"))
}

func testFileFind(t *testing.T, s *suite) {
	d := s.driver(t)
	// Created in this order (so newest first is not id order), one commit each.
	names := []string{"Holiday Video 2020.mp4", "holiday_photos.mkv", "100% Holiday.avi", "Work Notes.pdf",
		"50 percent off", `back\slash HOLIDAY`}
	var posts []db.Post
	for i, name := range names {
		p := post(int64(i+1), "f"+string(rune('a'+i)), 1)
		p.Name = name
		index(t, d, p)
		posts = append(posts, p)
	}
	for _, c := range []struct {
		words         []string
		limit, offset int
		want          []string
		total         int
	}{
		{[]string{"holiday"}, 10, 0, []string{"ff", "fc", "fb", "fa"}, 4},
		{[]string{"holiday", "video"}, 10, 0, []string{"fa"}, 1},
		{[]string{"%"}, 10, 0, []string{"fc"}, 1},
		{[]string{"0%"}, 10, 0, []string{"fc"}, 1},
		{[]string{"_"}, 10, 0, []string{"fb"}, 1},
		{[]string{`\`}, 10, 0, []string{"ff"}, 1},
		{[]string{"nothing"}, 10, 0, nil, 0},
		{nil, 10, 0, []string{"ff", "fe", "fd", "fc", "fb", "fa"}, 6},
		{[]string{"holiday"}, 3, 0, []string{"ff", "fc", "fb"}, 4},
		{[]string{"holiday"}, 3, 3, []string{"fa"}, 4},
		{[]string{"holiday"}, 3, 10, nil, 4},
	} {
		files, total, err := d.FileFind(t.Context(), &db.FileFindParams{Words: c.words, Limit: c.limit, Offset: c.offset})
		check(t, err)
		var ids []string
		for _, f := range files {
			ids = append(ids, f.UniqueID)
		}
		what := fmt.Sprintf("FileFind(%q, limit %d, offset %d)", c.words, c.limit, c.offset)
		equal(t, what+" ids", ids, c.want)
		equal(t, what+" total", total, c.total)
		if len(files) > 0 && files[0].UniqueID == "fa" {
			sameFile(t, "found file", files[0], fileOf(posts[0], "local"))
		}
	}
}

func testFileHeldByAll(t *testing.T, s *suite) {
	d := s.driver(t)
	index(t, d, post(1, "uA", 1), post(1, "uA", 2))
	index(t, d, post(2, "uB", 1))
	index(t, d, post(3, "uC", 1), post(3, "uC", 2), post(3, "uC", 3))
	addFiles(t, d, post(4, "uD", 1))
	index(t, d, post(5, "uE", 2), post(5, "uE", 3)) // not slot 1
	ids := []string{"uA", "uB", "uC", "uD", "uE", "uX"}
	for slots, want := range map[int][]string{1: {"uA", "uB", "uC"}, 2: {"uA", "uC"}, 3: {"uC"}} {
		equal(t, "held by all of the first slots", sorted(must(d.FileHeldByAll(t.Context(), ids, slots)).of(t)), want)
	}
	equal(t, "held of none", must(d.FileHeldByAll(t.Context(), nil, 2)).of(t), nil)
}

func testFileSyncGetMany(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	a1, a2 := post(1, "uA", 1), post(1, "uA", 2)
	index(t, d, a1, a2)
	addFiles(t, d, post(2, "uB", 1)) // no file_ids: left out
	got := must(d.FileSyncGetMany(ctx, []string{"uA", "uB", "uX"})).of(t)
	if len(got) != 1 {
		t.Fatalf("FileSyncGetMany = %+v, want uA alone", got)
	}
	sameFile(t, "file", got[0].File, fileOf(a1, "local"))
	equal(t, "file_ids", got[0].FileIDs, map[int]string{1: a1.FileID, 2: a2.FileID})
	if got[0].Gen == 0 {
		t.Fatal("a marked file has gen 0")
	}
	check(t, d.R2PendingDeleteMany(ctx, []db.R2Written{{UniqueID: "uA", Gen: got[0].Gen}}))
	equal(t, "gen when nothing is pending", gen(t, d, "uA"), int64(0))
	equal(t, "files of none", must(d.FileSyncGetMany(ctx, nil)).of(t), nil)
}

func testFileListAfter(t *testing.T, s *suite) {
	d := s.driver(t)
	for i, uid := range []string{"fc", "fa", "fe", "fb", "fd"} {
		addFiles(t, d, post(int64(i+1), uid, 1))
	}
	for _, c := range []struct {
		after string
		limit int
		want  []string
	}{
		{"", 2, []string{"fa", "fb"}},
		{"fb", 2, []string{"fc", "fd"}},
		{"fd", 10, []string{"fe"}},
		{"fe", 10, nil},
	} {
		equal(t, "files after "+c.after, must(d.FileListAfter(t.Context(), c.after, c.limit)).of(t), c.want)
	}
}

func testR2PendingListAfter(t *testing.T, s *suite) {
	d := s.driver(t)
	list := func(olderThan time.Duration, after string, limit int) []string {
		t.Helper()
		return must(d.R2PendingListAfter(t.Context(), olderThan, after, limit)).of(t)
	}
	for i, uid := range []string{"uA", "uB", "uC"} {
		index(t, d, post(int64(i+1), uid, 1))
	}
	addFiles(t, d, post(4, "uD", 1)) // never marked
	equal(t, "pending for an hour", list(time.Hour, "", 10), nil)
	const old = 500 * time.Millisecond
	time.Sleep(old + 100*time.Millisecond)
	equal(t, "pending", list(old, "", 10), []string{"uA", "uB", "uC"})
	equal(t, "pending after uA, one", list(old, "uA", 1), []string{"uB"})
	upsert(t, d, []db.Post{withFileID(post(2, "uB", 1), "renewed")}) // marked again just now
	equal(t, "pending after uB changed", list(old, "", 10), []string{"uA", "uC"})
}

func testR2PendingDeleteMany(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	a := post(1, "uA", 1)
	index(t, d, a)
	g1 := gen(t, d, "uA")
	upsert(t, d, []db.Post{withFileID(a, "renewed")})
	g2 := gen(t, d, "uA")
	check(t, d.R2PendingDeleteMany(ctx, []db.R2Written{{UniqueID: "uA", Gen: g1}}))
	equal(t, "gen after a write of a stale gen", gen(t, d, "uA"), g2)
	check(t, d.R2PendingDeleteMany(ctx, []db.R2Written{{UniqueID: "uA", Gen: g2}, {UniqueID: "uX", Gen: 1}}))
	equal(t, "gen after a write of the current gen", gen(t, d, "uA"), int64(0))
	check(t, d.R2PendingDeleteMany(ctx, nil))

	index(t, d, post(2, "uB", 1))
	written := []db.R2Written{{UniqueID: "uB", Gen: gen(t, d, "uB")}}
	txMatters(t, d, func(tx db.Tx) { check(t, tx.R2PendingDeleteMany(ctx, written)) },
		func() { equal(t, "gen after Rollback", gen(t, d, "uB"), written[0].Gen) },
		func() { equal(t, "gen after Commit", gen(t, d, "uB"), int64(0)) })
}
