package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db/dbtest"
)

// TestTwoWorkersAndOneWebShareTheWork: one `ferry web` takes 1,000 updates
// and two `ferry worker` processes on the same Postgres work them: each is
// answered exactly once, in one attempt, both workers did some of it, the
// web process none, and the periodic start-up drain ran once for the
// cluster (only the leader schedules periodic jobs).
func TestTwoWorkersAndOneWebShareTheWork(t *testing.T) {
	dbtest.SkipOnSQLite(t, "one ferry process per embedded database")
	w := newWorld(t, nil)
	web := start(t, w.env, "web")
	workers := []*proc{start(t, w.env, "worker"), start(t, w.env, "worker")}
	for _, p := range append(workers, web) {
		p.waitReady(t, time.Now())
	}
	const updates, senders = 1000, 16
	const firstUser = int64(900000)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < updates; i += senders {
				if code := w.post(t, web, w.secret, commandUpdate(int64(5000+i), firstUser+int64(i), "/start")); code != 200 {
					t.Errorf("update %d: status %d", i, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	answered := func() map[string]int {
		per := map[string]int{}
		for _, c := range w.tg.CallsTo("sendMessage") {
			if c.OK {
				per[c.Params["chat_id"]]++
			}
		}
		return per
	}
	for deadline := time.Now().Add(90 * time.Second); len(answered()) < updates; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d updates answered", len(answered()), updates)
		}
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would show itself
	for i := range updates {
		if n := answered()[fmt.Sprint(firstUser+int64(i))]; n != 1 {
			t.Fatalf("user %d got %d answers", firstUser+int64(i), n)
		}
	}
	jobs := w.jobsOf(t, "update", rivertype.JobStateCompleted)
	if len(jobs) != updates {
		t.Fatalf("%d completed update jobs, want %d", len(jobs), updates)
	}
	by := map[string]int{}
	for _, j := range jobs {
		// A reply over the send budget's 30/s snoozes its job (a new
		// attempt, no error); a failed attempt would leave an error.
		if len(j.Errors) != 0 || len(j.AttemptedBy) == 0 {
			t.Fatalf("job #%d: %d attempts (%v), errors %v", j.ID, j.Attempt, j.AttemptedBy, j.Errors)
		}
		by[j.AttemptedBy[len(j.AttemptedBy)-1]]++
	}
	if len(by) != 2 {
		t.Fatalf("update jobs were worked by %d clients (%v), want the two workers", len(by), by)
	}
	for deadline := time.Now().Add(30 * time.Second); len(w.jobsOf(t, "index_drain")) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no start-up drain job: no worker became the leader")
		}
	}
	time.Sleep(time.Second) // a second leader's drain would show itself
	if drains := w.jobsOf(t, "index_drain"); len(drains) != 1 {
		t.Fatalf("%d start-up drain jobs for a cluster of two workers, want 1", len(drains))
	}
}
