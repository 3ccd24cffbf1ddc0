package index_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbpg"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
)

// BenchmarkIndexElevenBots measures posts indexed per second end to end:
// every post is seen by 11 bots, each sighting is an Index transaction on
// real Postgres (the claimer also asks S3 whether the file exists), and
// when the post's last sighting commits its R2 job (SyncR2: build the
// record from the rows, conditional create) runs, as River's unique job
// would. Sightings are worked by FERRY_BENCH_WORKERS workers (default 16,
// like River workers), interleaved so a post's 11 bots race each other.
//
// S3 is gofakes3 in-process by default; FERRY_BENCH_S3=versity uses a real
// versitygw process on loopback.
//
//	go test -run '^$' -bench BenchmarkIndexElevenBots -benchtime 2000x ./index/
func BenchmarkIndexElevenBots(b *testing.B) { benchIndex(b, 1) }

// BenchmarkIndexManyElevenBots is the same load through IndexMany, in
// transactions of FERRY_BENCH_BATCH sightings (default 44: four posts' worth
// of sightings, taken in arrival order) — what a micro-batching worker that
// groups concurrent updates would achieve.
func BenchmarkIndexManyElevenBots(b *testing.B) {
	batch := 44
	if v, err := strconv.Atoi(os.Getenv("FERRY_BENCH_BATCH")); err == nil && v > 0 {
		batch = v
	}
	benchIndex(b, batch)
}

func benchIndex(b *testing.B, batch int) {
	bots := 11
	if v, err := strconv.Atoi(os.Getenv("FERRY_BENCH_BOTS")); err == nil && v > 0 {
		bots = v // for diagnosis only: the figure is with 11
	}
	workers := 16
	if v, err := strconv.Atoi(os.Getenv("FERRY_BENCH_WORKERS")); err == nil && v > 0 {
		workers = v
	}
	var opts r2.Options
	s3kind := "gofakes3"
	if os.Getenv("FERRY_BENCH_S3") == "versity" {
		opts = r2test.StartVersity(b).Options()
		s3kind = "versitygw"
	} else {
		opts = r2test.Fake(b)
	}
	store := newStore(b, opts)

	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dbtest.NewURL(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = int32(min(workers+4, 60)) // Postgres allows 100 clients in all
	if os.Getenv("FERRY_BENCH_ASYNC_COMMIT") == "1" {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	d := dbpg.New(pool)
	ix := newIndexer(b, d, store)
	if os.Getenv("FERRY_BENCH_NO_R2") == "1" {
		ix = newIndexer(b, d, nil) // diagnosis: the database part alone
	}

	// Prepare every sighting's Post up front (file_id encoding is not what
	// is measured).
	type job struct {
		post int
		p    index.Post
	}
	jobs := make([]job, 0, b.N*bots)
	for i := 0; i < b.N; i++ {
		uid := fmt.Sprintf("AgADbench%08d", i)
		for slot := 1; slot <= bots; slot++ {
			p := moviePost(b, slot, uid, -1008000000, int64(i+1))
			jobs = append(jobs, job{post: i, p: p})
		}
	}
	remaining := make([]atomic.Int32, b.N)
	for i := range remaining {
		remaining[i].Store(int32(bots))
	}
	var replies, syncs atomic.Int64
	errc := make(chan error, 1)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	ch := make(chan []job, workers)

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for js := range ch {
				var outs []index.Outcome
				var err error
				if batch == 1 {
					var o index.Outcome
					o, err = ix.IndexCommit(ctx, js[0].p)
					outs = []index.Outcome{o}
				} else {
					posts := make([]index.Post, len(js))
					for k, j := range js {
						posts[k] = j.p
					}
					err = db.WithTx(ctx, d, func(tx db.Tx) error {
						var err error
						outs, err = ix.IndexMany(ctx, tx, posts)
						return err
					})
				}
				if err != nil {
					fail(err)
					continue
				}
				for k, j := range js {
					if outs[k].Reply {
						replies.Add(1)
					}
					if remaining[j.post].Add(-1) == 0 && os.Getenv("FERRY_BENCH_NO_R2") != "1" {
						if err := ix.SyncR2(ctx, j.p.UniqueID); err != nil {
							fail(err)
							continue
						}
						syncs.Add(1)
					}
				}
			}
		}()
	}
	step := batch
	for k := 0; k < len(jobs); k += step {
		ch <- jobs[k:min(k+step, len(jobs))]
	}
	close(ch)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	if os.Getenv("FERRY_BENCH_NO_R2") == "1" {
		syncs.Store(int64(b.N))
	}
	if replies.Load() != int64(b.N) || syncs.Load() != int64(b.N) {
		b.Fatalf("%d replies and %d R2 writes for %d posts", replies.Load(), syncs.Load(), b.N)
	}
	// Spot-check the last post's object holds all eleven bots.
	if os.Getenv("FERRY_BENCH_NO_R2") != "1" {
		rec, _, err := store.Get(ctx, fmt.Sprintf("AgADbench%08d", b.N-1))
		if err != nil || len(rec.BotFileIDs) != bots {
			b.Fatalf("last object: %d ids, %v", len(rec.BotFileIDs), err)
		}
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "posts/s")
	b.ReportMetric(float64(b.N*bots)/elapsed.Seconds(), "sightings/s")
	b.Logf("%d posts x %d bots, %d workers, %d sightings per transaction, S3=%s: %.0f posts/s",
		b.N, bots, workers, batch, s3kind, float64(b.N)/elapsed.Seconds())
}
