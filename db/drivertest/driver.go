package drivertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
)

// The transaction cases mark what a transaction wrote with a session row:
// the smallest write there is to look for.

func session(botID int64) db.Session {
	return db.Session{BotID: botID, Nonce: []byte("nonce"), Data: fmt.Appendf(nil, "session of %d", botID)}
}

func save(t testing.TB, e db.Executor, botIDs ...int64) {
	t.Helper()
	for _, id := range botIDs {
		check(t, e.SessionSave(context.Background(), session(id)))
	}
}

// saved reports which of botIDs have a session in e.
func saved(t testing.TB, e db.Executor, botIDs ...int64) []int64 {
	t.Helper()
	var out []int64
	for _, id := range botIDs {
		_, err := e.SessionGet(context.Background(), id)
		if errors.Is(err, db.ErrNotFound) {
			continue
		}
		check(t, err)
		out = append(out, id)
	}
	return out
}

var errBoom = errors.New("boom")

// boom fails t unless err is (wraps) errBoom.
func boom(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, errBoom) {
		t.Fatalf("%s returned %v, want f's error", what, err)
	}
}

// sqlStateError is an error a database gives with its SQLSTATE.
type sqlStateError string

func (e sqlStateError) Error() string    { return "sqlstate " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

func testName(t *testing.T, s *suite) {
	if s.driver(t).Name() == "" {
		t.Fatal("Name is empty")
	}
}

func testPing(t *testing.T, s *suite) {
	check(t, s.driver(t).Ping(t.Context()))
}

func testClose(t *testing.T, s *suite) {
	d := s.driver(t)
	check(t, d.Ping(t.Context()))
	d.Close()
	if err := d.Ping(t.Context()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

func testMigrate(t *testing.T, s *suite) {
	d := s.driver(t)
	save(t, d, 1)
	check(t, d.Migrate(t.Context(), slog.New(slog.DiscardHandler)))
	check(t, d.Current(t.Context()))
	equal(t, "sessions after migrating a migrated database", saved(t, d, 1), []int64{1})
}

func testCurrent(t *testing.T, s *suite) {
	// The driver's own tests migrate down to see it fail.
	check(t, s.driver(t).Current(t.Context()))
}

func testBegin(t *testing.T, s *suite) {
	d := s.driver(t)
	tx := must(d.Begin(t.Context())).of(t)
	save(t, tx, 1)
	equal(t, "a transaction's own write", saved(t, tx, 1), []int64{1})
	check(t, tx.Commit(t.Context()))
	// One after the other, on the same driver.
	inTx(t, d, func(tx db.Tx) { save(t, tx, 2) })
	equal(t, "sessions after two transactions", saved(t, d, 1, 2), []int64{1, 2})
}

func testCommit(t *testing.T, s *suite) {
	t.Run("Durable", func(t *testing.T) {
		d := s.driver(t)
		tx := begin(t, d)
		save(t, tx, 1)
		check(t, tx.Commit(t.Context()))
		_ = tx.Rollback(t.Context()) // after Commit: must not undo it
		equal(t, "committed sessions", saved(t, d, 1), []int64{1})
		equal(t, "committed sessions in a later transaction", saved(t, begin(t, d), 1), []int64{1})
	})
	t.Run("Isolated", func(t *testing.T) {
		s.concurrent(t)
		d := s.driver(t)
		tx := begin(t, d)
		save(t, tx, 1)
		equal(t, "sessions seen before Commit", saved(t, d, 1), nil)
		check(t, tx.Commit(t.Context()))
		equal(t, "sessions seen after Commit", saved(t, d, 1), []int64{1})
	})
}

func testRollback(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	tx := must(d.Begin(ctx)).of(t)
	save(t, tx, 1)
	must(tx.UpdateAcceptMany(ctx, &db.UpdateAcceptManyParams{Counter: 1, Updates: []db.UpdateKey{{BotID: 1, UpdateID: 1}}})).of(t)
	claimAndInsert(t, tx, []db.Post{post(1, "uA", 1)})
	must(tx.UploadStateEnsureRandomID(ctx, "k", 7)).of(t)
	check(t, tx.Rollback(ctx))

	equal(t, "sessions after Rollback", saved(t, d, 1), nil)
	equal(t, "stats after Rollback", stats(t, d), db.Stats{})
	_, err := d.FileGet(ctx, "uA")
	notFound(t, "FileGet after Rollback", err)
	_, err = d.UploadStateGet(ctx, "k")
	notFound(t, "UploadStateGet after Rollback", err)
	// The update is new again.
	res := must(d.UpdateAcceptMany(ctx, &db.UpdateAcceptManyParams{Counter: 1, Updates: []db.UpdateKey{{BotID: 1, UpdateID: 1}}})).of(t)
	equal(t, "new updates after Rollback", res.New, []db.UpdateKey{{BotID: 1, UpdateID: 1}})
}

func testSavepoint(t *testing.T, s *suite) {
	t.Run("Success", func(t *testing.T) {
		d := s.driver(t)
		for _, commit := range []bool{false, true} {
			tx := begin(t, d)
			check(t, tx.Savepoint(t.Context(), func(sp db.Tx) error { save(t, sp, 1); return nil }))
			equal(t, "outer sees the savepoint's write", saved(t, tx, 1), []int64{1})
			if !commit {
				check(t, tx.Rollback(t.Context()))
				equal(t, "savepoint's write after outer Rollback", saved(t, d, 1), nil)
				continue
			}
			check(t, tx.Commit(t.Context()))
			equal(t, "savepoint's write after outer Commit", saved(t, d, 1), []int64{1})
		}
	})
	t.Run("Failure", func(t *testing.T) {
		d := s.driver(t)
		tx := begin(t, d)
		save(t, tx, 1)
		boom(t, "Savepoint", tx.Savepoint(t.Context(), func(sp db.Tx) error { save(t, sp, 2); return errBoom }))
		save(t, tx, 3)
		check(t, tx.Commit(t.Context()))
		equal(t, "sessions", saved(t, d, 1, 2, 3), []int64{1, 3})
	})
	t.Run("DataError", func(t *testing.T) {
		// The database refuses a row inside the savepoint: the outer
		// transaction goes on (on Postgres, past an aborted statement).
		d := s.driver(t)
		tx := begin(t, d)
		save(t, tx, 1)
		err := tx.Savepoint(t.Context(), func(sp db.Tx) error { return sp.FileInsertMany(t.Context(), bogusFile("uBad")) })
		if !db.IsDataError(err) {
			t.Fatalf("Savepoint returned %v, want a data error", err)
		}
		claimAndInsert(t, tx, []db.Post{post(1, "uA", 1)})
		check(t, tx.Commit(t.Context()))
		equal(t, "sessions", saved(t, d, 1), []int64{1})
		must(d.FileGet(t.Context(), "uA")).of(t)
		_, err = d.FileGet(t.Context(), "uBad")
		notFound(t, "the refused file", err)
	})
	t.Run("Nested", func(t *testing.T) {
		d := s.driver(t)
		inTx(t, d, func(tx db.Tx) {
			check(t, tx.Savepoint(t.Context(), func(sp db.Tx) error {
				save(t, sp, 1)
				boom(t, "inner Savepoint", sp.Savepoint(t.Context(), func(inner db.Tx) error { save(t, inner, 2); return errBoom }))
				return nil
			}))
		})
		equal(t, "sessions", saved(t, d, 1, 2), []int64{1})
	})
}

// bogusFile is a file the schema refuses (no such file type).
func bogusFile(uid string) *db.FileInsertManyParams {
	p := post(1, uid, 1)
	p.Type = "bogus"
	return fileParams([]db.Post{p}, nil)
}

func testIsDataError(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	badOrigin := fileParams([]db.Post{post(2, "uOrigin", 1)}, nil)
	badOrigin.Origin[0] = "elsewhere"
	for name, p := range map[string]*db.FileInsertManyParams{"file type": bogusFile("uType"), "origin": badOrigin} {
		err := d.FileInsertMany(ctx, p)
		if !db.IsDataError(err) || db.IsRetryable(err) {
			t.Fatalf("FileInsertMany with a bad %s: %v (IsDataError %v, IsRetryable %v), want a data error",
				name, err, db.IsDataError(err), db.IsRetryable(err))
		}
	}
	equal(t, "files after refused rows", stats(t, d).Files, int64(0))
	_, err := d.FileGet(ctx, "uType")
	if db.IsDataError(err) {
		t.Fatalf("FileGet of an unknown file is a data error: %v", err)
	}
	// In a transaction too; it can still be rolled back.
	tx := begin(t, d)
	if err := tx.FileInsertMany(ctx, bogusFile("uType")); !db.IsDataError(err) {
		t.Fatalf("FileInsertMany in a transaction: %v, want a data error", err)
	}
	check(t, tx.Rollback(ctx))
}

func testWithTx(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	check(t, db.WithTx(ctx, d, func(tx db.Tx) error { save(t, tx, 1); return nil }))
	equal(t, "sessions after a committed WithTx", saved(t, d, 1), []int64{1})

	boom(t, "WithTx", db.WithTx(ctx, d, func(tx db.Tx) error { save(t, tx, 2); return errBoom }))
	equal(t, "sessions after a failed WithTx", saved(t, d, 2), nil)

	// A deadlock runs f again, in a new transaction: the first attempt's
	// write is gone.
	attempts := 0
	check(t, db.WithTx(ctx, d, func(tx db.Tx) error {
		attempts++
		save(t, tx, int64(10+attempts))
		if attempts == 1 {
			return fmt.Errorf("first try: %w", sqlStateError("40P01"))
		}
		return nil
	}))
	equal(t, "attempts", attempts, 2)
	equal(t, "sessions after a retried WithTx", saved(t, d, 11, 12), []int64{12})

	attempts = 0
	err := db.WithTx(ctx, d, func(tx db.Tx) error { attempts++; save(t, tx, 20); return sqlStateError("40001") })
	if !db.IsRetryable(err) || attempts != 5 {
		t.Fatalf("WithTx always aborted: %v after %d attempts, want the error after 5", err, attempts)
	}
	equal(t, "sessions after WithTx gave up", saved(t, d, 20), nil)
}

func testRiverTx(t *testing.T, s *suite) {
	d := s.driver(t)
	rc := newRiver(t, d)
	tx := begin(t, d)
	if tx.RiverTx() == nil {
		t.Fatal("RiverTx is nil")
	}
	kept := must(rc.InsertTx(t.Context(), tx, otherArgs{N: 1}, nil)).of(t)
	// A savepoint's Tx carries its own: a job inserted in a failed
	// savepoint is rolled back with it.
	boom(t, "Savepoint", tx.Savepoint(t.Context(), func(sp db.Tx) error {
		must(rc.InsertTx(t.Context(), sp, otherArgs{N: 2}, nil)).of(t)
		return errBoom
	}))
	check(t, tx.Commit(t.Context()))
	equal(t, "jobs", jobIDs(t, rc, otherArgs{}.Kind()), resultIDs(kept))
}

func testNewRiver(t *testing.T, s *suite) {
	kind := otherArgs{}.Kind()
	t.Run("InsertTx", func(t *testing.T) {
		checkInsertTx(t, s, func(rc db.River, tx db.Tx) []*rivertype.JobInsertResult {
			return []*rivertype.JobInsertResult{must(rc.InsertTx(t.Context(), tx, otherArgs{N: 1}, nil)).of(t)}
		})
	})
	t.Run("InsertManyTx", func(t *testing.T) {
		params := []river.InsertManyParams{{Args: otherArgs{N: 1}}, {Args: otherArgs{N: 2}}, {Args: otherArgs{N: 3}}}
		checkInsertTx(t, s, func(rc db.River, tx db.Tx) []*rivertype.JobInsertResult {
			return must(rc.InsertManyTx(t.Context(), tx, params)).of(t)
		})
	})
	t.Run("JobList", func(t *testing.T) {
		d := s.driver(t)
		rc := newRiver(t, d)
		a := must(rc.Insert(t.Context(), otherArgs{N: 1}, nil)).of(t)
		drain := must(rc.Insert(t.Context(), drainArgs{}, nil)).of(t)
		b := must(rc.Insert(t.Context(), otherArgs{N: 2}, nil)).of(t)
		equal(t, kind+" jobs", jobIDs(t, rc, kind), resultIDs(a, b))
		equal(t, "drain jobs", jobIDs(t, rc, drainArgs{}.Kind()), resultIDs(drain))
	})
	t.Run("JobCountByState", func(t *testing.T) {
		d := s.driver(t)
		rc := newRiver(t, d)
		var res []*rivertype.JobInsertResult
		for n := range 3 {
			res = append(res, must(rc.Insert(t.Context(), otherArgs{N: n}, nil)).of(t))
		}
		must(rc.JobCancel(t.Context(), res[0].Job.ID)).of(t)
		counts := must(rc.JobCountByState(t.Context())).of(t)
		equal(t, "available", counts[rivertype.JobStateAvailable], 2)
		equal(t, "cancelled", counts[rivertype.JobStateCancelled], 1)
	})
	t.Run("JobCompleteTx", func(t *testing.T) { testJobCompleteTx(t, s.driver(t)) })
}

// checkInsertTx checks that the jobs insert puts in a transaction, with a
// write of ferry's, are listed once it commits, and not after a Rollback
// (nor, with concurrent writers, before the Commit).
func checkInsertTx(t *testing.T, s *suite, insert func(rc db.River, tx db.Tx) []*rivertype.JobInsertResult) {
	d := s.driver(t)
	rc := newRiver(t, d)
	kind := otherArgs{}.Kind()
	var inserted []*rivertype.JobInsertResult
	txMatters(t, d, func(tx db.Tx) {
		inserted = insert(rc, tx)
		save(t, tx, 1)
		if s.caps.ConcurrentWriters {
			equal(t, "jobs before Commit", jobIDs(t, rc, kind), nil)
		}
	}, func() {
		equal(t, "jobs after Rollback", jobIDs(t, rc, kind), nil)
	}, func() {
		equal(t, "jobs after Commit", jobIDs(t, rc, kind), resultIDs(inserted...))
		equal(t, "sessions committed with the jobs", saved(t, d, 1), []int64{1})
	})
}

// completeArgs is a job whose worker completes it in its own transaction.
type completeArgs struct {
	Bot int64 `json:"bot"`
}

func (completeArgs) Kind() string { return "drivertest_complete" }

// testJobCompleteTx works a job whose worker writes and completes it in one
// transaction, as ferry's workers do.
func testJobCompleteTx(t *testing.T, d db.Driver) {
	ctx := t.Context()
	var rc db.River
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[completeArgs]) error {
		return db.WithTx(ctx, d, func(tx db.Tx) error {
			if err := tx.SessionSave(ctx, session(job.Args.Bot)); err != nil {
				return err
			}
			return rc.JobCompleteTx(ctx, tx, job.JobRow)
		})
	}))
	rc = must(d.NewRiver(&river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 1}},
		Workers:           workers,
		FetchCooldown:     10 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
		TestOnly:          true,
	})).of(t)
	events, unsubscribe := rc.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer unsubscribe()
	check(t, rc.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rc.Stop(stopCtx)
	})
	res := must(rc.Insert(ctx, completeArgs{Bot: 7}, nil)).of(t)
	select {
	case ev := <-events:
		if ev.Kind != river.EventKindJobCompleted {
			t.Fatalf("job %s: %+v", ev.Kind, ev.Job.Errors)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("job not worked within 10s")
	}
	job := must(rc.JobGet(ctx, res.Job.ID)).of(t)
	equal(t, "job state", job.State, rivertype.JobStateCompleted)
	equal(t, "sessions written with the completion", saved(t, d, 7), []int64{7})
}
