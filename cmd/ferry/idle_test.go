package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
)

// runningRiver is a db.River whose job table holds one running job until
// finish is called; only the two lists busy reads are implemented.
type runningRiver struct {
	db.River
	mu    sync.Mutex
	done  bool
	lists int
}

func (r *runningRiver) finish() { r.mu.Lock(); r.done = true; r.mu.Unlock() }

func (r *runningRiver) JobList(_ context.Context, p *river.JobListParams) (*river.JobListResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists++
	if r.done {
		return &river.JobListResult{}, nil
	}
	return &river.JobListResult{Jobs: []*rivertype.JobRow{{ID: 7, Kind: "upload", State: rivertype.JobStateRunning}}}, nil
}

func (r *runningRiver) QueueList(context.Context, *river.QueueListParams) (*river.QueueListResult, error) {
	return &river.QueueListResult{}, nil
}

// The exit's wait for work in flight ends when the work does, and is
// bounded when it does not; it says what it waits for once, then at most
// every drainLog, not every poll.
func TestIdleDrainIsBoundedAndQuiet(t *testing.T) {
	newIdle := func(r db.River, max, every time.Duration) (*idleExit, *bytes.Buffer) {
		var log bytes.Buffer
		ie := newIdleExit(time.Second, modeServe, r, slog.New(slog.NewTextHandler(&log, nil)))
		ie.drainMax, ie.drainLog = max, every
		return ie, &log
	}
	lines := func(log *bytes.Buffer, msg string) int { return strings.Count(log.String(), `msg="`+msg) }
	drain := func(ie *idleExit) {
		t.Helper()
		done := make(chan struct{})
		go func() { ie.drain(context.Background()); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("drain did not return within 10 s: its wait is not bounded")
		}
	}

	// Work that never ends: the wait stops at drainMax, logged once, then
	// a warning.
	r := &runningRiver{}
	ie, log := newIdle(r, 1500*time.Millisecond, 10*time.Second)
	start := time.Now()
	drain(ie)
	if took := time.Since(start); took < 1400*time.Millisecond || took > 3*time.Second {
		t.Fatalf("drain of work that never ends took %s, want about 1.5s", took)
	}
	if n := lines(log, "finishing before the exit"); n != 1 || r.lists < 5 {
		t.Fatalf("%d progress lines in %d polls, want 1:\n%s", n, r.lists, log)
	}
	if n := lines(log, "exiting with work still running"); n != 1 || !strings.Contains(log.String(), "job 7 (upload) running") {
		t.Fatalf("no warning naming the job left running:\n%s", log)
	}

	// With a short log interval it repeats, at that interval.
	ie, log = newIdle(&runningRiver{}, 1100*time.Millisecond, 500*time.Millisecond)
	drain(ie)
	if n := lines(log, "finishing before the exit"); n < 2 || n > 3 {
		t.Fatalf("%d progress lines over 1.1 s at one per 500 ms, want 2 or 3:\n%s", n, log)
	}

	// Work that ends: the wait ends with it, and no warning.
	r = &runningRiver{}
	ie, log = newIdle(r, time.Minute, 10*time.Second)
	time.AfterFunc(300*time.Millisecond, r.finish)
	start = time.Now()
	drain(ie)
	if took := time.Since(start); took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("drain took %s after the job ended at 300ms", took)
	}
	if lines(log, "finishing before the exit") != 1 || lines(log, "exiting with work still running") != 0 {
		t.Fatalf("log of a drain that finished:\n%s", log)
	}
}
