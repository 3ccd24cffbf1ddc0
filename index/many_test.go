package index_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2/r2test"
)

func indexMany(t *testing.T, ix *index.Indexer, pool db.Driver, posts []index.Post) []index.Outcome {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := ix.IndexMany(ctx, tx, posts)
	if err != nil {
		_ = tx.Rollback(ctx)
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return outs
}

// One batch with a new file's post seen by 11 bots (shuffled), a second
// post of a file already known, and a post whose file another deployment
// put in R2: the same outcomes Index gives one by one.
func TestIndexMany(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	store := newStore(t, r2test.Fake(t))
	ix := newIndexer(t, pool, store)
	if _, err := ix.IndexCommit(ctx, moviePost(t, 1, "AgADknown", -1, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Merge(ctx, recordFor("AgADinr2")); err != nil {
		t.Fatal(err)
	}
	var posts []index.Post
	for slot := 1; slot <= 11; slot++ {
		posts = append(posts, moviePost(t, slot, "AgADbatchnew", -2, 5))
	}
	posts = append(posts, moviePost(t, 3, "AgADknown", -3, 9), moviePost(t, 4, "AgADknown", -3, 9))
	posts = append(posts, moviePost(t, 2, "AgADinr2", -4, 1), moviePost(t, 5, "AgADinr2", -4, 1))
	rand.Shuffle(len(posts), func(i, j int) { posts[i], posts[j] = posts[j], posts[i] })

	outs := indexMany(t, ix, pool, posts)
	replies := map[string]int{}
	for i, o := range outs {
		p := posts[i]
		if o.File.UniqueID != p.UniqueID {
			t.Fatalf("outcome %d is for %s, post for %s", i, o.File.UniqueID, p.UniqueID)
		}
		if o.Reply {
			replies[p.UniqueID]++
		}
		wantExisting := p.UniqueID != "AgADbatchnew"
		if o.Existing != wantExisting {
			t.Fatalf("%s slot %d: existing = %v", p.UniqueID, p.Slot, o.Existing)
		}
		// The new file's object was created with all eleven file_ids by
		// the lookup itself; the others need an R2 write.
		if o.NeedR2Write != (p.UniqueID != "AgADbatchnew") {
			t.Fatalf("%s slot %d: NeedR2Write = %v", p.UniqueID, p.Slot, o.NeedR2Write)
		}
	}
	if fmt.Sprint(replies) != "map[AgADbatchnew:1 AgADinr2:1 AgADknown:1]" {
		t.Fatalf("replies = %v", replies)
	}
	if n := len(dbFileIDs(t, pool, "AgADbatchnew")); n != 11 {
		t.Fatalf("rows = %d", n)
	}
	if f, err := pool.FileGet(ctx, "AgADinr2"); err != nil || f.Origin != "r2" {
		t.Fatalf("R2 hit not recorded: %+v %v", f, err)
	}
	if pendingR2(t, pool, "AgADbatchnew") {
		t.Fatal("the file created in R2 by the batch is still marked for R2")
	}
}

// Two concurrent batches splitting the same posts' bots: one reply per post.
func TestIndexManyConcurrentBatches(t *testing.T) {
	pool := dbtest.New(t)
	ix := newIndexer(t, pool, newStore(t, r2test.Fake(t)))
	var a, b []index.Post
	for post := 0; post < 5; post++ {
		uid := fmt.Sprintf("AgADconc%d", post)
		for slot := 1; slot <= 11; slot++ {
			p := moviePost(t, slot, uid, -5, int64(post+1))
			if slot%2 == 0 {
				a = append(a, p)
			} else {
				b = append(b, p)
			}
		}
	}
	var outsA, outsB []index.Outcome
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); outsA = indexMany(t, ix, pool, a) }()
	go func() { defer wg.Done(); outsB = indexMany(t, ix, pool, b) }()
	wg.Wait()
	replies := map[string]int{}
	for i, o := range append(outsA, outsB...) {
		if o.Existing {
			t.Fatalf("outcome %d existing for a new file", i)
		}
		if o.Reply {
			replies[o.File.UniqueID]++
		}
	}
	if len(replies) != 5 {
		t.Fatalf("replies = %v", replies)
	}
	for id, n := range replies {
		if n != 1 {
			t.Fatalf("%s: %d replies", id, n)
		}
	}
	n := 0
	for post := 0; post < 5; post++ {
		n += len(dbFileIDs(t, pool, fmt.Sprintf("AgADconc%d", post)))
	}
	if n != 55 {
		t.Fatalf("rows = %d", n)
	}
}
