package drivertest

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
)

func leases(t testing.TB, e db.Executor) map[string]db.Lease {
	t.Helper()
	out := map[string]db.Lease{}
	var ids []string
	for _, l := range must(e.LeaseList(context.Background())).of(t) {
		out[l.ID] = l
		ids = append(ids, l.ID)
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("LeaseList not in id order: %v", ids)
	}
	return out
}

func acquire(t testing.TB, e db.Executor, id string, ttl time.Duration) {
	t.Helper()
	check(t, e.LeaseAcquire(context.Background(), id, ttl))
}

func testLeaseAcquire(t *testing.T, s *suite) {
	d := s.driver(t)
	acquire(t, d, "b", time.Hour)
	acquire(t, d, "a", -time.Second) // lapsed at once
	got := leases(t, d)
	if len(got) != 2 || !got["b"].Live || got["a"].Live {
		t.Fatalf("leases %+v, want b live and a lapsed", got)
	}
	recent(t, "lease's start", got["b"].StartedAt)
	if d := time.Until(got["b"].ExpiresAt); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("lease of an hour expires in %v", d)
	}
	acquire(t, d, "a", time.Hour) // revived
	if !leases(t, d)["a"].Live {
		t.Fatal("a lapsed lease acquired again is not live")
	}
	txMatters(t, d, func(tx db.Tx) { acquire(t, tx, "c", time.Hour) },
		func() { equal(t, "leases after Rollback", len(leases(t, d)), 2) },
		func() { equal(t, "leases after Commit", len(leases(t, d)), 3) })
}

func testLeaseRenew(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	renewed := must(d.LeaseRenew(ctx, "unknown", time.Hour)).of(t)
	equal(t, "renewed an unknown lease", renewed, false)
	equal(t, "leases after renewing an unknown one", len(leases(t, d)), 0)

	acquire(t, d, "a", time.Minute)
	before := leases(t, d)["a"]
	equal(t, "renewed a live lease", must(d.LeaseRenew(ctx, "a", time.Hour)).of(t), true)
	after := leases(t, d)["a"]
	if !after.ExpiresAt.After(before.ExpiresAt.Add(50*time.Minute)) || !after.StartedAt.Equal(before.StartedAt) {
		t.Fatalf("renewed lease %+v, was %+v", after, before)
	}

	acquire(t, d, "lapsed", -time.Second)
	equal(t, "renewed a lapsed lease", must(d.LeaseRenew(ctx, "lapsed", time.Hour)).of(t), false)
	equal(t, "lapsed lease after a renewal", leases(t, d)["lapsed"].Live, false)
}

func testLeaseRelease(t *testing.T, s *suite) {
	d := s.driver(t)
	acquire(t, d, "a", time.Hour)
	acquire(t, d, "b", time.Hour)
	check(t, d.LeaseRelease(t.Context(), "a"))
	check(t, d.LeaseRelease(t.Context(), "unknown"))
	got := leases(t, d)
	if _, ok := got["a"]; ok || len(got) != 1 {
		t.Fatalf("leases after releasing a: %+v", got)
	}
}

func testLeaseList(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "leases of a fresh database", len(leases(t, d)), 0)
	for _, id := range []string{"c", "a", "b"} {
		acquire(t, d, id, time.Hour)
	}
	var ids []string
	for _, l := range must(d.LeaseList(t.Context())).of(t) {
		ids = append(ids, l.ID)
	}
	equal(t, "lease ids", ids, []string{"a", "b", "c"})
}

// blockArgs is a job whose worker holds its slot until the test lets go,
// deaf to its context, as a process frozen or killed would.
type blockArgs struct {
	N int `json:"n"`
}

func (blockArgs) Kind() string { return "drivertest_block" }

func testLeaseRescueJobs(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	release := make(chan struct{})
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[blockArgs]) error {
		<-release
		return nil
	}))
	const runner = "drivertest-runner"
	// As many slots as jobs: none is free to fetch a job handed back
	// while the test looks at it.
	rc := must(d.NewRiver(&river.Config{
		ID:                runner,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 3}},
		Workers:           workers,
		FetchCooldown:     10 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
		TestOnly:          true,
	})).of(t)
	acquire(t, d, runner, time.Hour)
	check(t, rc.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rc.StopAndCancel(stopCtx)
	})
	defer close(release)
	plain := must(rc.Insert(ctx, blockArgs{N: 1}, nil)).of(t).Job.ID
	last := must(rc.Insert(ctx, blockArgs{N: 2}, &river.InsertOpts{MaxAttempts: 1})).of(t).Job.ID
	cancelled := must(rc.Insert(ctx, blockArgs{N: 3}, nil)).of(t).Job.ID
	waitState := func(id int64, state rivertype.JobState) *rivertype.JobRow {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			j := must(rc.JobGet(ctx, id)).of(t)
			if j.State == state {
				return j
			}
			if time.Now().After(end) {
				t.Fatalf("job %d is %s, want %s", id, j.State, state)
			}
		}
	}
	for _, id := range []int64{plain, last, cancelled} {
		if j := waitState(id, rivertype.JobStateRunning); j.AttemptedBy[len(j.AttemptedBy)-1] != runner {
			t.Fatalf("job %d attempted by %v", id, j.AttemptedBy)
		}
	}
	must(rc.JobCancel(ctx, cancelled)).of(t) // asked while running: stays running

	equal(t, "jobs handed back while their runner's lease is live", len(must(d.LeaseRescueJobs(ctx, "other")).of(t)), 0)
	check(t, d.LeaseAcquire(ctx, runner, -time.Second))
	equal(t, "jobs handed back by their own runner", len(must(d.LeaseRescueJobs(ctx, runner)).of(t)), 0)
	got := must(d.LeaseRescueJobs(ctx, "other")).of(t)
	slices.SortFunc(got, func(a, b db.LeaseRescuedJob) int { return int(a.ID - b.ID) })
	equal(t, "jobs handed back once the lease lapsed", got, []db.LeaseRescuedJob{
		{ID: plain, Kind: blockArgs{}.Kind(), Runner: runner, State: "available"},
		{ID: last, Kind: blockArgs{}.Kind(), Runner: runner, State: "discarded"},
		{ID: cancelled, Kind: blockArgs{}.Kind(), Runner: runner, State: "cancelled"},
	})
	for id, state := range map[int64]rivertype.JobState{plain: rivertype.JobStateAvailable, last: rivertype.JobStateDiscarded, cancelled: rivertype.JobStateCancelled} {
		j := must(rc.JobGet(ctx, id)).of(t)
		if j.State != state || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, runner) || j.Errors[0].Attempt != 1 {
			t.Fatalf("job %d after the rescue: %s, errors %+v; want %s", id, j.State, j.Errors, state)
		}
		recent(t, "rescue error's time", j.Errors[0].At)
		if state == rivertype.JobStateAvailable {
			recent(t, "handed back job's scheduled_at", j.ScheduledAt)
			if j.FinalizedAt != nil {
				t.Fatalf("available job finalized at %v", j.FinalizedAt)
			}
		} else if j.FinalizedAt == nil {
			t.Fatalf("%s job not finalized", state)
		}
	}
	equal(t, "jobs handed back twice", len(must(d.LeaseRescueJobs(ctx, "other")).of(t)), 0)

	// The job handed back runs again, to completion.
	release <- struct{}{}
	release <- struct{}{}
	release <- struct{}{}
	waitState(plain, rivertype.JobStateCompleted)
}
