package index_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2/r2test"
)

// 11 bots x 6 posts through the Batcher, each Then inserting the caller's
// follow-up jobs in the shared transaction; one Then fails. Exactly one
// reply job per post commits, every successful sighting's R2 job commits,
// and the failing sighting alone gets an error and leaves nothing.
func TestBatcher(t *testing.T) {
	ctx := context.Background()
	pool := dbtest.New(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE test_jobs (kind text, chat bigint, msg bigint, slot int, uid text)`); err != nil {
		t.Fatal(err)
	}
	ix := newIndexer(t, pool, newStore(t, r2test.Fake(t)))
	bt := ix.NewBatcher(index.BatcherOptions{MaxBatch: 16, MaxWait: 5 * time.Millisecond, Parallel: 3})
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- bt.Run(runCtx) }()

	failing := errors.New("job insert failed")
	var wg sync.WaitGroup
	type res struct {
		p   index.Post
		out index.Outcome
		err error
	}
	results := make(chan res, 66)
	for post := 1; post <= 6; post++ {
		for slot := 1; slot <= 11; slot++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := moviePost(t, slot, fmt.Sprintf("AgADbatcher%d", post), -6, int64(post))
				out, err := bt.Index(ctx, p, func(ctx context.Context, tx pgx.Tx, o index.Outcome) error {
					if post == 3 && slot == 5 {
						return failing
					}
					if o.Reply {
						if _, err := tx.Exec(ctx, `INSERT INTO test_jobs VALUES ('reply', $1, $2, $3, $4)`, p.ChatID, p.MessageID, p.Slot, p.UniqueID); err != nil {
							return err
						}
					}
					if o.NeedR2Write {
						if _, err := tx.Exec(ctx, `INSERT INTO test_jobs VALUES ('r2', $1, $2, $3, $4)`, p.ChatID, p.MessageID, p.Slot, p.UniqueID); err != nil {
							return err
						}
					}
					return nil
				})
				results <- res{p, out, err}
			}()
		}
	}
	wg.Wait()
	close(results)
	failed := 0
	for r := range results {
		if r.err != nil {
			if !errors.Is(r.err, failing) || r.p.MessageID != 3 || r.p.Slot != 5 {
				t.Fatalf("slot %d post %d: %v", r.p.Slot, r.p.MessageID, r.err)
			}
			failed++
			continue
		}
		if r.out.File.UniqueID != r.p.UniqueID || r.out.Existing {
			t.Fatalf("outcome %+v for %+v", r.out, r.p)
		}
	}
	if failed != 1 {
		t.Fatalf("%d failures, want 1", failed)
	}
	if n := count(t, pool, `SELECT count(*) FROM test_jobs WHERE kind = 'reply'`); n != 6 {
		t.Fatalf("%d reply jobs for 6 posts", n)
	}
	if n := count(t, pool, `SELECT count(DISTINCT msg) FROM test_jobs WHERE kind = 'reply'`); n != 6 {
		t.Fatalf("reply jobs cover %d posts", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM test_jobs WHERE kind = 'r2'`); n != 65 {
		t.Fatalf("%d R2 jobs, want 65", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM file_bot_ids`); n != 65 {
		t.Fatalf("%d file_id rows, want 65 (the failed sighting must leave none)", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM file_bot_ids WHERE file_unique_id = 'AgADbatcher3' AND slot = 5`); n != 0 {
		t.Fatal("failed sighting's row committed")
	}
	// Its retry (River would run the job again) succeeds.
	out, err := ix.IndexCommit(ctx, moviePost(t, 5, "AgADbatcher3", -6, 3))
	if err != nil || out.Reply || !out.NeedR2Write {
		t.Fatalf("retry: %+v %v", out, err)
	}

	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if _, err := bt.Index(ctx, moviePost(t, 1, "AgADlate", -6, 99), nil); !errors.Is(err, index.ErrBatcherStopped) {
		t.Fatalf("after stop: %v", err)
	}
}
