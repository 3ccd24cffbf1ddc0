package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/jobs"
)

func testDeps(t *testing.T, d db.Driver, apiURL string, env map[string]string) *jobs.Deps {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	if env["BOT_TOKENS"] == "" {
		env["BOT_TOKENS"] = fmt.Sprintf("%d:AAH%s", 111, strings.Repeat("q", 32))
	}
	cfg, err := config.FromMap(env)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	bots, err := botapi.New(cfg.Bots, apiURL, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	return &jobs.Deps{DB: d, Config: cfg, Bots: bots, Logger: logger, Senders: botpool.New(d, logger)}
}

func startIntake(t *testing.T, d db.Driver, opts ...jobs.IntakeOption) *jobs.Intake {
	t.Helper()
	deps := testDeps(t, d, "http://127.0.0.1:1", nil)
	client, err := jobs.NewClient(deps, jobs.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := jobs.NewIntake(d, client, deps.Logger, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return in
}

func raw(id int64) []byte { return []byte(fmt.Sprintf(`{"update_id":%d}`, id)) }

// updateJobs decodes the args of every update job.
func updateJobs(t *testing.T, d db.Driver) []jobs.UpdateArgs {
	t.Helper()
	var out []jobs.UpdateArgs
	for _, j := range dbtest.Jobs(t, d, jobs.UpdateArgs{}.Kind()) {
		var a jobs.UpdateArgs
		if err := json.Unmarshal(j.EncodedArgs, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func stats(t *testing.T, d db.Driver) db.Stats {
	t.Helper()
	s, err := d.StatsCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unseen tells which of keys received_updates does not hold: it offers
// them to UpdateAcceptMany in a transaction rolled back at once.
func unseen(t *testing.T, d db.Driver, keys ...db.UpdateKey) (out []db.UpdateKey) {
	t.Helper()
	dbtest.RolledBack(t, d, func(tx db.Tx) {
		res, err := tx.UpdateAcceptMany(context.Background(), &db.UpdateAcceptManyParams{Updates: keys})
		if err != nil {
			t.Fatal(err)
		}
		out = res.New
	})
	return out
}

// takeBatches reads every sighting batch waiting, one at a time, in a
// transaction rolled back at once: how many there are and their sightings.
func takeBatches(t *testing.T, d db.Driver) (n int, all []db.Post) {
	t.Helper()
	dbtest.RolledBack(t, d, func(tx db.Tx) {
		for {
			// With a limit of one sighting, a take is one batch.
			posts, err := tx.SightingBatchTake(context.Background(), 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(posts) == 0 {
				return
			}
			n, all = n+1, append(all, posts...)
		}
	})
	return n, all
}

func TestIntakeRedeliveryMakesOneJob(t *testing.T) {
	d := dbtest.New(t)
	in := startIntake(t, d)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	// Five concurrent deliveries (one batch) and five later ones (new batches).
	for round := 0; round < 2; round++ {
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); errs <- in.Submit(ctx, jobs.Update{BotID: 111, UpdateID: 9, Raw: raw(9)}) }()
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(updateJobs(t, d)); n != 1 {
		t.Fatalf("%d jobs for one update", n)
	}
	// One update accepted (counted once) and guarded against re-delivery.
	if n := stats(t, d).Updates; n != 1 {
		t.Fatalf("%d updates accepted", n)
	}
	if k := unseen(t, d, db.UpdateKey{BotID: 111, UpdateID: 9}); len(k) != 0 {
		t.Fatalf("update not recorded as received: %v", k)
	}
	// The same update_id from another bot is another update.
	if err := in.Submit(ctx, jobs.Update{BotID: 222, UpdateID: 9, Raw: raw(9)}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range updateJobs(t, d) {
		if a.BotID == 222 {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d jobs for bot 222", n)
	}
}

func TestIntakeCommitsEveryUpdateOfABurst(t *testing.T) {
	d := dbtest.New(t)
	in := startIntake(t, d)
	const n = 2000
	var wg sync.WaitGroup
	var failed sync.Map
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Submit(context.Background(), jobs.Update{BotID: 111, UpdateID: int64(i), Raw: raw(int64(i))}); err != nil {
				failed.Store(i, err)
			}
		}()
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Fatalf("update %v: %v", k, v); return false })
	ids := map[int64]bool{}
	var stored []byte
	for _, a := range updateJobs(t, d) {
		ids[a.UpdateID] = true
		if a.UpdateID == 77 {
			stored = a.Update
		}
	}
	if len(ids) != n {
		t.Fatalf("%d jobs committed, want %d", len(ids), n)
	}
	// The raw update is kept byte for byte.
	if string(stored) != string(raw(77)) {
		t.Fatalf("stored update %q", stored)
	}
}

func TestIntakeReportsDatabaseFailure(t *testing.T) {
	d := dbtest.New(t)
	faulty := withFaults(d)
	in := startIntake(t, faulty)
	ctx := context.Background()
	if err := in.Submit(ctx, jobs.Update{BotID: 111, UpdateID: 1, Raw: raw(1)}); err != nil {
		t.Fatal(err)
	}
	// The database fails: the commit must fail and say so, not answer 200.
	faulty.intakeDown.Store(true)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := in.Submit(sctx, jobs.Update{BotID: 111, UpdateID: 2, Raw: raw(2)})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit with a broken database: %v", err)
	}
	if n := len(dbtest.Jobs(t, d, "")); n != 1 {
		t.Fatalf("%d jobs after a failed commit", n)
	}
	// Once the database is back, the re-delivery lands.
	faulty.intakeDown.Store(false)
	if err := in.Submit(ctx, jobs.Update{BotID: 111, UpdateID: 2, Raw: raw(2)}); err != nil {
		t.Fatal(err)
	}
	if n := len(dbtest.Jobs(t, d, "")); n != 2 {
		t.Fatalf("%d jobs after recovery", n)
	}
}

// TestIntakeRoutesSightingsToTheDrain: eleven bots' updates about one
// channel post become eleven sightings, field for field, in a sighting
// batch per commit, and one index_drain job (a few if commits race), not
// one per update, whether they arrive together or in separate commits; a
// command is still an update job.
func TestIntakeRoutesSightingsToTheDrain(t *testing.T) {
	d := dbtest.New(t)
	in := startIntake(t, d, jobs.WithSightings(true))

	post := &jobs.Sighting{Post: index.Post{ChatID: -1001, MessageID: 5, UniqueID: "AgADintake", FileID: "BQACAgQAAxkBAAIB5WMM",
		Type: index.TypeDocument, Name: "a.mkv", Size: 1 << 30, MimeType: "video/x-matroska", DC: 4}}
	var wg sync.WaitGroup
	for bot := int64(1); bot <= 11; bot++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Submit(context.Background(), jobs.Update{BotID: bot, UpdateID: 100, Raw: raw(100), Sighting: post}); err != nil {
				t.Error(err)
			}
		}()
		if bot == 6 {
			wg.Wait() // a second batch
		}
	}
	wg.Wait()
	// A command update is still an update job.
	if err := in.Submit(context.Background(), jobs.Update{BotID: 1, UpdateID: 101, Raw: raw(101)}); err != nil {
		t.Fatal(err)
	}
	// A re-delivery is a second copy (indexing it again changes nothing).
	if err := in.Submit(context.Background(), jobs.Update{BotID: 3, UpdateID: 100, Raw: raw(100), Sighting: post}); err != nil {
		t.Fatal(err)
	}
	batches, sightings := takeBatches(t, d)
	bots := map[int64]bool{}
	for _, s := range sightings {
		want := post.Post
		want.BotID = s.BotID
		if s != want || s.BotID < 1 || s.BotID > 11 {
			t.Fatalf("sighting %+v, want %+v of a bot 1 to 11", s, want)
		}
		bots[s.BotID] = true
	}
	if len(sightings) != 12 {
		t.Fatalf("%d sightings, want 11 and the re-delivery", len(sightings))
	}
	if len(bots) != 11 {
		t.Fatalf("sightings of %d bots", len(bots))
	}
	// Two groups of commits (six, then five), and the re-delivery.
	if batches < 3 || batches > 12 {
		t.Fatalf("%d sighting batches", batches)
	}
	// One job, or one per commit that raced the first (four flushers);
	// the second group found the first's job waiting and queued none.
	if n := len(dbtest.Jobs(t, d, jobs.IndexDrainArgs{}.Kind())); n < 1 || n > 4 {
		t.Fatalf("%d index_drain jobs", n)
	}
	if n := len(updateJobs(t, d)); n != 1 {
		t.Fatalf("%d update jobs", n)
	}
	// Only the command needs the re-delivery guard; every update accepted
	// (the re-delivered sighting too) is counted for /stats.
	var keys []db.UpdateKey
	for bot := int64(1); bot <= 11; bot++ {
		keys = append(keys, db.UpdateKey{BotID: bot, UpdateID: 100})
	}
	if k := unseen(t, d, append(keys, db.UpdateKey{BotID: 1, UpdateID: 101})...); len(k) != 11 || slices.Contains(k, db.UpdateKey{BotID: 1, UpdateID: 101}) {
		t.Fatalf("received_updates lacks %v, want the sightings' keys alone", k)
	}
	if n := stats(t, d).Updates; n != 13 {
		t.Fatalf("%d updates counted, want 13", n)
	}
}
