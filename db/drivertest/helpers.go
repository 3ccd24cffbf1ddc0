package drivertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
)

// must(f()).of(t) is f's value, failing t when f failed.
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) of(t testing.TB) T {
	t.Helper()
	check(t, r.err)
	return r.v
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// equal fails t unless got is want; a nil and an empty slice are equal.
func equal[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	if g.Kind() == reflect.Slice && w.Kind() == reflect.Slice && g.Len() == 0 && w.Len() == 0 {
		return
	}
	t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
}

// notFound fails t unless err is (wraps) db.ErrNotFound.
func notFound(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("%s: got error %v, want db.ErrNotFound", what, err)
	}
}

// recent fails t unless ts is within a minute of now.
func recent(t testing.TB, what string, ts time.Time) {
	t.Helper()
	if d := time.Since(ts); d < -time.Minute || d > time.Minute {
		t.Fatalf("%s is %v, not about now", what, ts)
	}
}

func sorted[T cmp.Ordered](xs []T) []T {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs
}

func sortedBy[T any](xs []T, key func(T) db.PostRef) []T {
	xs = slices.Clone(xs)
	slices.SortStableFunc(xs, func(a, b T) int {
		ka, kb := key(a), key(b)
		return cmp.Or(cmp.Compare(ka.ChatID, kb.ChatID), cmp.Compare(ka.MessageID, kb.MessageID))
	})
	return xs
}

// begin starts a transaction that is rolled back when the test ends unless
// it was committed.
func begin(t testing.TB, d db.Driver) db.Tx {
	t.Helper()
	tx := must(d.Begin(context.Background())).of(t)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// inTx runs f in a transaction it commits.
func inTx(t testing.TB, d db.Driver, f func(tx db.Tx)) {
	t.Helper()
	tx := begin(t, d)
	f(tx)
	check(t, tx.Commit(context.Background()))
}

// txMatters checks that write, run in a transaction, is part of it: after
// a Rollback unchanged holds, after a Commit changed does.
func txMatters(t testing.TB, d db.Driver, write func(tx db.Tx), unchanged, changed func()) {
	t.Helper()
	tx := begin(t, d)
	write(tx)
	check(t, tx.Rollback(context.Background()))
	unchanged()
	inTx(t, d, write)
	changed()
}

// waits runs f concurrently, checks it is still waiting a while later, and
// returns a function that waits for its result.
func waits(t testing.TB, what string, f func() error) func() error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		t.Fatalf("%s did not wait (returned %v)", what, err)
	case <-time.After(200 * time.Millisecond):
	}
	return func() error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits", what)
			return nil
		}
	}
}

// chat is the channel the fixtures are posted in.
const chat int64 = -1001

// bot is the id of slot's bot.
func bot(slot int) int64 { return int64(slot) * 10 }

// post is slot's bot's sighting of file uid in message msg, every field set.
func post(msg int64, uid string, slot int) db.Post {
	return db.Post{Slot: slot, BotID: bot(slot), ChatID: chat, MessageID: msg, UniqueID: uid,
		FileID: fmt.Sprintf("%s@%d", uid, slot), Type: "video", Name: "Name of " + uid, Size: 1000 + msg,
		MimeType: "video/mp4", DC: 4, Caption: "caption of " + uid, Duration: 61, Width: 1280, Height: 720}
}

func ref(p db.Post) db.PostRef { return db.PostRef{ChatID: p.ChatID, MessageID: p.MessageID} }

// stored is p as stored sightings come back: without its slot.
func stored(ps ...db.Post) []db.Post {
	out := make([]db.Post, len(ps))
	for i, p := range ps {
		p.Slot = 0
		out[i] = p
	}
	return out
}

// fileOf is the files row p creates.
func fileOf(p db.Post, origin string) db.File {
	return db.File{UniqueID: p.UniqueID, Name: p.Name, Size: p.Size, MimeType: p.MimeType, Type: p.Type, DC: p.DC,
		Caption: p.Caption, Duration: p.Duration, Width: p.Width, Height: p.Height, ChatID: p.ChatID,
		MessageID: p.MessageID, Origin: origin}
}

// sameFile fails t unless got is want, apart from a recent CreatedAt.
func sameFile(t testing.TB, what string, got, want db.File) {
	t.Helper()
	recent(t, what+" CreatedAt", got.CreatedAt)
	got.CreatedAt = time.Time{}
	equal(t, what, got, want)
}

func claimParams(posts ...db.Post) *db.PostClaimManyParams {
	p := &db.PostClaimManyParams{}
	for _, s := range posts {
		p.ChatID, p.MessageID = append(p.ChatID, s.ChatID), append(p.MessageID, s.MessageID)
		p.UniqueID, p.Slot, p.BotID = append(p.UniqueID, s.UniqueID), append(p.Slot, int32(s.Slot)), append(p.BotID, s.BotID)
	}
	return p
}

// fileParams are the files of posts (one each, from its first post there),
// origin "r2" for the ids in r2 and "local" for the others, settling the
// posts claimed as newPosts.
func fileParams(posts []db.Post, newPosts []db.PostRef, r2 ...string) *db.FileInsertManyParams {
	p := &db.FileInsertManyParams{}
	seen := map[string]bool{}
	for _, s := range posts {
		if seen[s.UniqueID] {
			continue
		}
		seen[s.UniqueID] = true
		origin := "local"
		if slices.Contains(r2, s.UniqueID) {
			origin = "r2"
		}
		p.UniqueID, p.Name, p.MimeType = append(p.UniqueID, s.UniqueID), append(p.Name, s.Name), append(p.MimeType, s.MimeType)
		p.Type, p.Caption, p.Origin = append(p.Type, s.Type), append(p.Caption, s.Caption), append(p.Origin, origin)
		p.Size, p.ChatID, p.MessageID = append(p.Size, s.Size), append(p.ChatID, s.ChatID), append(p.MessageID, s.MessageID)
		p.DC, p.Duration = append(p.DC, int32(s.DC)), append(p.Duration, int32(s.Duration))
		p.Width, p.Height = append(p.Width, int32(s.Width)), append(p.Height, int32(s.Height))
	}
	for _, r := range newPosts {
		p.NewChatID, p.NewMessageID = append(p.NewChatID, r.ChatID), append(p.NewMessageID, r.MessageID)
	}
	return p
}

// botIDParams write the file_ids of posts, those of created already in
// the caller's R2 object.
func botIDParams(posts []db.Post, created ...db.Post) *db.FileBotIDUpsertManyParams {
	p := &db.FileBotIDUpsertManyParams{}
	for _, s := range posts {
		p.UniqueID, p.FileID, p.Slot = append(p.UniqueID, s.UniqueID), append(p.FileID, s.FileID), append(p.Slot, int32(s.Slot))
		p.BotID, p.ChatID, p.MessageID = append(p.BotID, s.BotID), append(p.ChatID, s.ChatID), append(p.MessageID, s.MessageID)
	}
	for _, c := range created {
		p.CreatedUniqueID, p.CreatedSlot = append(p.CreatedUniqueID, c.UniqueID), append(p.CreatedSlot, int32(c.Slot))
		p.CreatedFileID = append(p.CreatedFileID, c.FileID)
	}
	return p
}

// newPosts are the claims not settled as existing.
func newPosts(claims []db.PostClaim) []db.PostRef {
	var out []db.PostRef
	for _, c := range claims {
		if !c.Existing {
			out = append(out, c.PostRef)
		}
	}
	return out
}

// addFiles claims posts and creates their files (origin local) as the
// index does, without file_ids, and commits.
func addFiles(t testing.TB, d db.Driver, posts ...db.Post) {
	t.Helper()
	inTx(t, d, func(tx db.Tx) { claimAndInsert(t, tx, posts) })
}

func claimAndInsert(t testing.TB, tx db.Tx, posts []db.Post) []db.PostClaim {
	t.Helper()
	ctx := context.Background()
	claims := must(tx.PostClaimMany(ctx, claimParams(posts...))).of(t)
	check(t, tx.FileInsertMany(ctx, fileParams(posts, newPosts(claims))))
	return claims
}

// index is addFiles with the posts' file_ids written; it returns the files
// marked for R2.
func index(t testing.TB, d db.Driver, posts ...db.Post) []string {
	t.Helper()
	var marked []string
	inTx(t, d, func(tx db.Tx) {
		claimAndInsert(t, tx, posts)
		marked = upsert(t, tx, posts)
	})
	return marked
}

// upsert writes the posts' file_ids and returns the files marked, sorted.
func upsert(t testing.TB, e db.Executor, posts []db.Post, created ...db.Post) []string {
	t.Helper()
	return sorted(must(e.FileBotIDUpsertMany(context.Background(), botIDParams(posts, created...))).of(t))
}

// withFileID is p seen with another file_id.
func withFileID(p db.Post, fileID string) db.Post {
	p.FileID = fileID
	return p
}

// gen is uid's r2_pending generation (0: not pending), through
// FileSyncGetMany; the file must have file_ids.
func gen(t testing.TB, e db.Executor, uid string) int64 {
	t.Helper()
	fs := must(e.FileSyncGetMany(context.Background(), []string{uid})).of(t)
	if len(fs) != 1 {
		t.Fatalf("FileSyncGetMany(%s) = %d files, want 1", uid, len(fs))
	}
	return fs[0].Gen
}

// stats counts /stats.
func stats(t testing.TB, e db.Executor) db.Stats {
	t.Helper()
	return must(e.StatsCount(context.Background())).of(t)
}

// drainArgs is a job of the drain's kind, for DrainQueued.
type drainArgs struct{}

func (drainArgs) Kind() string { return "index_drain" }

// otherArgs is a job of another kind.
type otherArgs struct {
	N int `json:"n"`
}

func (otherArgs) Kind() string { return "drivertest_other" }

// newRiver is an insert-only River client on d.
func newRiver(t testing.TB, d db.Driver) db.River {
	t.Helper()
	return must(d.NewRiver(&river.Config{})).of(t)
}

// jobIDs lists the ids of kind's jobs in every state, oldest first.
func jobIDs(t testing.TB, rc db.River, kind string) []int64 {
	t.Helper()
	res := must(rc.JobList(context.Background(), river.NewJobListParams().Kinds(kind).First(1000))).of(t)
	var ids []int64
	for _, j := range res.Jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

func resultIDs(rs ...*rivertype.JobInsertResult) []int64 {
	var ids []int64
	for _, r := range rs {
		ids = append(ids, r.Job.ID)
	}
	return ids
}
