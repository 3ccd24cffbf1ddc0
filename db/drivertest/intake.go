package drivertest

import (
	"cmp"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// keys are update keys from (bot, update) pairs.
func keys(pairs ...int64) []db.UpdateKey {
	var out []db.UpdateKey
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, db.UpdateKey{BotID: pairs[i], UpdateID: pairs[i+1]})
	}
	return out
}

func sortedKeys(ks []db.UpdateKey) []db.UpdateKey {
	ks = slices.Clone(ks)
	slices.SortFunc(ks, func(a, b db.UpdateKey) int {
		return cmp.Or(cmp.Compare(a.BotID, b.BotID), cmp.Compare(a.UpdateID, b.UpdateID))
	})
	return ks
}

func accept(t testing.TB, e db.Executor, p *db.UpdateAcceptManyParams) *db.UpdateAcceptManyResult {
	t.Helper()
	return must(e.UpdateAcceptMany(context.Background(), p)).of(t)
}

// acceptSightings commits posts as one intake commit of sightings and
// reports DrainQueued.
func acceptSightings(t testing.TB, e db.Executor, posts ...db.Post) bool {
	t.Helper()
	return accept(t, e, &db.UpdateAcceptManyParams{Counter: 1, Sightings: posts, DrainKind: drainArgs{}.Kind()}).DrainQueued
}

func take(t testing.TB, e db.Executor, maxSightings int) []db.Post {
	t.Helper()
	return must(e.SightingBatchTake(context.Background(), maxSightings)).of(t)
}

// doc is post as a document: no duration or size in pixels, no caption.
func doc(msg int64, uid string, slot int) db.Post {
	p := post(msg, uid, slot)
	p.Type, p.MimeType, p.Caption, p.DC = "document", "application/pdf", "", 0
	p.Duration, p.Width, p.Height = 0, 0, 0
	return p
}

// fail keeps posts as refused sightings, each with its own error.
func fail(t testing.TB, e db.Executor, posts ...db.Post) {
	t.Helper()
	fs := make([]db.SightingFailure, len(posts))
	for i, p := range posts {
		fs[i] = db.SightingFailure{Post: p, Error: "refused " + p.UniqueID}
	}
	check(t, e.SightingFailureInsert(context.Background(), fs))
}

func failures(t testing.TB, e db.Executor, limit int) []db.SightingFailure {
	t.Helper()
	return must(e.SightingFailureList(context.Background(), limit)).of(t)
}

func failedPosts(fs []db.SightingFailure) []db.Post {
	out := make([]db.Post, len(fs))
	for i, f := range fs {
		out[i] = f.Post
	}
	return out
}

// timeout is a context for a call that must not wait on another
// transaction.
func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testUpdateAcceptMany(t *testing.T, s *suite) {
	t.Run("Updates", func(t *testing.T) {
		d := s.driver(t)
		res := accept(t, d, &db.UpdateAcceptManyParams{Counter: 1, Updates: keys(1, 1, 1, 2, 2, 1)})
		equal(t, "new updates", sortedKeys(res.New), keys(1, 1, 1, 2, 2, 1))
		res = accept(t, d, &db.UpdateAcceptManyParams{Counter: 2, Updates: keys(1, 2, 2, 2)})
		equal(t, "new of a partly repeated commit", res.New, keys(2, 2))
		res = accept(t, d, &db.UpdateAcceptManyParams{Counter: 1, Updates: keys(1, 1)})
		equal(t, "new of a repeated commit", res.New, nil)
		// Only the accepted ones count, from every flusher's counter.
		st := stats(t, d)
		equal(t, "updates counted (all, day)", []int64{st.Updates, st.UpdatesDay}, []int64{4, 4})
		res = accept(t, d, &db.UpdateAcceptManyParams{})
		equal(t, "an empty commit (new, drain queued)", []any{len(res.New), res.DrainQueued}, []any{0, false})
	})
	t.Run("Sightings", func(t *testing.T) {
		d := s.driver(t)
		ps := []db.Post{post(1, "uA", 1), post(1, "uA", 2), doc(2, "uB", 1)}
		res := accept(t, d, &db.UpdateAcceptManyParams{Counter: 1, Updates: keys(1, 9), Sightings: ps, DrainKind: drainArgs{}.Kind()})
		equal(t, "new updates", res.New, keys(1, 9))
		equal(t, "DrainQueued", res.DrainQueued, false)
		st := stats(t, d)
		equal(t, "counted (updates, day, waiting)", []int64{st.Updates, st.UpdatesDay, st.SightingsWaiting}, []int64{4, 4, 3})
		equal(t, "sightings kept", take(t, d, 100), stored(ps...))
	})
	t.Run("DrainQueued", func(t *testing.T) {
		d := s.driver(t)
		rc := newRiver(t, d)
		p := post(1, "uA", 1)
		equal(t, "DrainQueued with no job", acceptSightings(t, d, p), false)
		must(rc.Insert(t.Context(), otherArgs{}, nil)).of(t)
		equal(t, "DrainQueued with a job of another kind", acceptSightings(t, d, p), false)
		drain := must(rc.Insert(t.Context(), drainArgs{}, nil)).of(t)
		equal(t, "DrainQueued with an available drain job", acceptSightings(t, d, p), true)
		must(rc.JobCancel(t.Context(), drain.Job.ID)).of(t)
		equal(t, "DrainQueued with a cancelled drain job", acceptSightings(t, d, p), false)
	})
}

func testSightingBatchTake(t *testing.T, s *suite) {
	b1 := []db.Post{post(1, "uA", 1), post(1, "uA", 2)}
	b2 := []db.Post{doc(2, "uB", 3), post(3, "uC", 1)}
	b3 := []db.Post{post(4, "uD", 2), post(4, "uD", 1)}
	t.Run("Rounds", func(t *testing.T) {
		d := s.driver(t)
		equal(t, "taken from none", take(t, d, 10), nil)
		for _, b := range [][]db.Post{b1, b2, b3} {
			acceptSightings(t, d, b...)
		}
		tx := begin(t, d)
		equal(t, "taken in a transaction", take(t, tx, 3), stored(slices.Concat(b1, b2)...))
		check(t, tx.Rollback(t.Context()))
		// Batches while fewer than 3 came before: the first two.
		equal(t, "taken after Rollback", take(t, d, 3), stored(slices.Concat(b1, b2)...))
		// At least one batch, even one larger than asked.
		equal(t, "taken with 1", take(t, d, 1), stored(b3...))
		equal(t, "taken when all were", take(t, d, 10), nil)
		equal(t, "waiting", stats(t, d).SightingsWaiting, int64(0))
	})
	t.Run("SkipLocked", func(t *testing.T) {
		s.concurrent(t)
		d := s.driver(t)
		for _, b := range [][]db.Post{b1, b2, b3} {
			acceptSightings(t, d, b...)
		}
		tx1, tx2 := begin(t, d), begin(t, d)
		equal(t, "first drain", take(t, tx1, 1), stored(b1...))
		// The second neither waits nor takes the first's batch; it may
		// find the rest locked too (Postgres locks the round it looked at).
		second := must(tx2.SightingBatchTake(timeout(t), 1)).of(t)
		check(t, tx1.Rollback(t.Context()))
		check(t, tx2.Commit(t.Context()))
		all := slices.Concat(second, take(t, d, 10))
		equal(t, "taken by both, then left", sortedBy(all, ref), stored(slices.Concat(b1, b2, b3)...))
	})
}

func lockEmpty(t testing.TB, e db.Executor) bool {
	t.Helper()
	return must(e.SightingBatchLockEmpty(context.Background())).of(t)
}

func testSightingBatchLockEmpty(t *testing.T, s *suite) {
	p := post(1, "uA", 1)
	t.Run("Empty", func(t *testing.T) {
		d := s.driver(t)
		inTx(t, d, func(tx db.Tx) { equal(t, "empty with no batch", lockEmpty(t, tx), true) })
		acceptSightings(t, d, p)
		tx := begin(t, d)
		equal(t, "empty with a batch", lockEmpty(t, tx), false)
		take(t, tx, 10)
		equal(t, "empty once taken", lockEmpty(t, tx), true)
		check(t, tx.Rollback(t.Context()))
		inTx(t, d, func(tx db.Tx) { equal(t, "empty after Rollback", lockEmpty(t, tx), false) })
	})
	t.Run("SkipsTaken", func(t *testing.T) {
		s.concurrent(t)
		d := s.driver(t)
		acceptSightings(t, d, p)
		drain, other := begin(t, d), begin(t, d)
		take(t, drain, 10)
		empty := must(other.SightingBatchLockEmpty(timeout(t))).of(t)
		equal(t, "empty with the only batch taken by another drain", empty, true)
	})
	t.Run("Exclusive", func(t *testing.T) {
		s.concurrent(t)
		d := s.driver(t)
		intake := begin(t, d)
		acceptSightings(t, intake, p)
		// Intake commits share the lock.
		must(d.UpdateAcceptMany(timeout(t), &db.UpdateAcceptManyParams{Counter: 2, Sightings: []db.Post{p}})).of(t)
		drain := begin(t, d)
		var empty bool
		wait := waits(t, "SightingBatchLockEmpty during an intake commit", func() (err error) {
			empty, err = drain.SightingBatchLockEmpty(context.Background())
			return err
		})
		check(t, intake.Commit(t.Context()))
		check(t, wait())
		equal(t, "empty", empty, false)
		wait = waits(t, "UpdateAcceptMany while a drain holds the lock", func() error {
			_, err := d.UpdateAcceptMany(context.Background(), &db.UpdateAcceptManyParams{Counter: 3, Sightings: []db.Post{p}})
			return err
		})
		check(t, drain.Rollback(t.Context()))
		check(t, wait())
		equal(t, "waiting", stats(t, d).SightingsWaiting, int64(3))
	})
}

func testSightingFailureInsert(t *testing.T, s *suite) {
	d := s.driver(t)
	check(t, d.SightingFailureInsert(t.Context(), nil))
	equal(t, "kept after inserting none", failures(t, d, 10), nil)
	ps := []db.Post{post(1, "uA", 2), doc(2, "uB", 1)}
	fail(t, d, ps...)
	got := failures(t, d, 10)
	equal(t, "kept sightings", failedPosts(got), stored(ps...))
	for i, f := range got {
		equal(t, "error", f.Error, "refused "+ps[i].UniqueID)
		recent(t, "FailedAt", f.FailedAt)
	}
	tx := begin(t, d)
	fail(t, tx, post(3, "uC", 1))
	check(t, tx.Rollback(t.Context()))
	equal(t, "failed", stats(t, d).SightingsFailed, int64(2))
}

func testSightingFailureList(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "kept with none", failures(t, d, 10), nil)
	ps := []db.Post{post(1, "uA", 1), doc(2, "uB", 1), post(3, "uC", 2)}
	fail(t, d, ps[0])
	fail(t, d, ps[1:]...)
	equal(t, "kept, oldest first", failedPosts(failures(t, d, 10)), stored(ps...))
	equal(t, "kept, limited", failedPosts(failures(t, d, 2)), stored(ps[:2]...))
}

func requeue(t testing.TB, e db.Executor) int {
	t.Helper()
	return must(e.SightingFailureRequeue(context.Background())).of(t)
}

func testSightingFailureRequeue(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "requeued of none", requeue(t, d), 0)
	equal(t, "batches after requeueing none", take(t, d, 10), nil)

	older := post(1, "uA", 1)
	acceptSightings(t, d, older)
	ps := []db.Post{post(2, "uB", 1), doc(3, "uC", 2), post(4, "uD", 1)}
	fail(t, d, ps[0])
	fail(t, d, ps[1:]...)
	equal(t, "requeued", requeue(t, d), 3)
	equal(t, "kept after requeueing", failures(t, d, 10), nil)
	st := stats(t, d)
	equal(t, "failed, waiting", []int64{st.SightingsFailed, st.SightingsWaiting}, []int64{0, 4})
	equal(t, "first batch", take(t, d, 1), stored(older))
	// One batch: taken whole even with room for one.
	equal(t, "requeued batch", take(t, d, 1), stored(ps...))
	equal(t, "requeued again", requeue(t, d), 0)
}

func testCommandCountAdd(t *testing.T, s *suite) {
	d := s.driver(t)
	count := func(user int64, window time.Duration) int {
		t.Helper()
		return must(d.CommandCountAdd(t.Context(), user, window)).of(t)
	}
	const long = 100000 * time.Hour // one window for the whole test
	equal(t, "counts of one user", []int{count(1, long), count(1, long), count(1, long)}, []int{1, 2, 3})
	equal(t, "another user's own count", count(2, long), 1)
	// A short window: the next one starts at 1 again.
	equal(t, "first in a short window", count(3, 100*time.Millisecond), 1)
	time.Sleep(150 * time.Millisecond)
	equal(t, "first in the next window", count(3, 100*time.Millisecond), 1)
}

func testStatsCount(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "stats of an empty database", stats(t, d), db.Stats{})
	accept(t, d, &db.UpdateAcceptManyParams{Counter: 1, Updates: keys(1, 1, 1, 2, 1, 3),
		Sightings: []db.Post{post(1, "uA", 1), post(1, "uA", 2)}, DrainKind: drainArgs{}.Kind()})
	accept(t, d, &db.UpdateAcceptManyParams{Counter: 2, Updates: keys(1, 3)})
	fail(t, d, post(2, "uB", 1))
	index(t, d, post(10, "uX", 1), post(11, "uY", 1))
	mark(t, d, replied(post(10, "uX", 1), 500))
	equal(t, "stats", stats(t, d), db.Stats{Updates: 5, UpdatesDay: 5, Files: 2, PostsReplied: 1, R2Pending: 2,
		SightingsWaiting: 2, SightingsFailed: 1})
	if err := d.R2PendingDeleteMany(t.Context(), []db.R2Written{{UniqueID: "uX", Gen: gen(t, d, "uX")}}); err != nil {
		t.Fatal(err)
	}
	equal(t, "records waiting after one write", stats(t, d).R2Pending, int64(1))
}
