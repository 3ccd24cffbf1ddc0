package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/jobs"
)

// idleHorizon is how far ahead a scheduled job (a retry, a snooze after a
// 429 or FLOOD_WAIT) keeps an idle process up: work due later waits for the
// next wake-up (an update, or a scheduled machine).
const idleHorizon = 5 * time.Minute

// idleExit is the idle clock of `ferry serve` with IDLE_EXIT_AFTER: the
// process may stop once, for that long, no request came in and no job
// finished, and no job runs or is due within idleHorizon. Fly's proxy starts
// the machine again on the next webhook. Jobs are judged by River's table,
// not by its events: a job's row says "completed" before the event is sent,
// and "running" until then.
type idleExit struct {
	after   time.Duration
	horizon time.Duration
	river   db.River
	queues  []string // the queues this process works
	logger  *slog.Logger
	idle    chan struct{} // closed when the process may stop

	// drainMax bounds the wait for work in flight at the exit; drainLog is
	// how often that wait says what it waits for.
	drainMax, drainLog time.Duration

	mu       sync.Mutex
	inFlight int
	last     time.Time // the end of the last request that counts
}

// drainMax is how long the exit waits for a job taken while the listener
// closed: longer than an upload's 90 s slice, so a slice ends (and
// snoozes) rather than being cut; what is still running after it is
// stopped by River and resumes on the next start (uploads from their acked
// parts).
const drainMax = 2 * time.Minute

// checkIdleExit refuses an IDLE_EXIT_AFTER too short to be meant.
func checkIdleExit(after time.Duration) error {
	if after != 0 && after < time.Second {
		return fmt.Errorf("IDLE_EXIT_AFTER must be at least 1s (or unset: never exit), got %s", after)
	}
	return nil
}

// newIdleExit returns the idle clock for a process of mode m, or nil when
// IDLE_EXIT_AFTER is unset, and for web and worker, which it does not apply
// to: apart, neither knows when the other is done.
func newIdleExit(after time.Duration, m mode, client db.River, logger *slog.Logger) *idleExit {
	if after <= 0 {
		return nil
	}
	if m != modeServe {
		logger.Warn("IDLE_EXIT_AFTER applies to ferry serve only; ignored", "mode", m.String())
		return nil
	}
	ie := &idleExit{
		after: after, horizon: idleHorizon, river: client,
		queues:   append([]string{jobs.QueueUpdates}, jobs.WorkQueues()...),
		logger:   logger.With("component", "idle"),
		idle:     make(chan struct{}),
		last:     time.Now(),
		drainMax: drainMax, drainLog: 10 * time.Second,
	}
	return ie
}

// attach counts e's requests. Health probes and metric scrapes do not count:
// Fly's checks and a Prometheus scraper would keep the machine up forever.
func (ie *idleExit) attach(e *echo.Echo) {
	if ie == nil {
		return
	}
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			switch c.Request().URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return next(c)
			}
			ie.mu.Lock()
			ie.inFlight++
			ie.mu.Unlock()
			defer func() {
				ie.mu.Lock()
				ie.inFlight--
				ie.last = time.Now()
				ie.mu.Unlock()
			}()
			return next(c)
		}
	})
}

// Done is closed when the process has been idle for IDLE_EXIT_AFTER; it is
// nil (never ready) without an idle clock.
func (ie *idleExit) Done() <-chan struct{} {
	if ie == nil {
		return nil
	}
	return ie.idle
}

// start watches until the process is idle (Done) or ctx ends.
func (ie *idleExit) start(ctx context.Context) {
	if ie == nil {
		return
	}
	go func() {
		tick := time.NewTicker(min(max(ie.after/10, 50*time.Millisecond), time.Second))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				ie.mu.Lock()
				quiet := ie.inFlight == 0 && time.Since(ie.last) >= ie.after
				ie.mu.Unlock()
				if !quiet {
					continue
				}
				why, err := ie.busy(ctx, ie.after, ie.horizon)
				if err != nil {
					ie.logger.Warn("idle check", "err", err)
					continue
				}
				if why != "" {
					continue
				}
				ie.logger.Info("idle: no request, no job running or due soon; exiting",
					"idle_exit_after", ie.after, "horizon", ie.horizon)
				close(ie.idle)
				return
			}
		}
	}()
}

// drain waits, once the listener is closed, for the work that came in while
// it closed (an update taken in the last instant) to be done, for at most
// drainMax: no job cut off, yet no exit put off for good. It says what it
// waits for once, then every drainLog.
func (ie *idleExit) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, ie.drainMax)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var logged time.Time
	for {
		why, err := ie.busy(ctx, 0, 0)
		if err == nil && why == "" {
			return
		}
		if why != "" && time.Since(logged) >= ie.drainLog {
			ie.logger.Info("finishing before the exit", "work", why)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			if why != "" {
				ie.logger.Warn("exiting with work still running: River stops it, and it runs again on the next start",
					"work", why, "waited", ie.drainMax)
			}
			return
		case <-tick.C:
		}
	}
}

// busy names work that keeps the process up: a job running (here, or left
// running by a process that died, which this one will rescue), a job other
// than a periodic one finished within the last `since`, or one of this
// process's queues, not paused, with a job due before now+horizon. It is ""
// when there is none.
func (ie *idleExit) busy(ctx context.Context, since, horizon time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	qs, err := ie.river.QueueList(ctx, river.NewQueueListParams().First(1000))
	if err != nil {
		return "", fmt.Errorf("list queues: %w", err)
	}
	// Paused work waits for /resume, itself an update that wakes us.
	paused := map[string]bool{}
	for _, q := range qs.Queues {
		if q.PausedAt != nil {
			paused[q.Name] = true
		}
	}
	// Running and waiting jobs in one listing, by scheduled time: a job
	// moving from scheduled to running between two separate queries would
	// be in neither. A running job's scheduled time is in the past, so it
	// comes before anything due later; the listing stops at the horizon.
	until := time.Now().Add(horizon)
	params := river.NewJobListParams().
		States(rivertype.JobStateRunning, rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable).
		OrderBy(river.JobListOrderByScheduledAt, river.SortOrderAsc).First(100)
	for {
		res, err := ie.river.JobList(ctx, params)
		if err != nil {
			return "", fmt.Errorf("list jobs: %w", err)
		}
		for _, j := range res.Jobs {
			switch {
			case j.State == rivertype.JobStateRunning:
				return fmt.Sprintf("job %d (%s) running", j.ID, j.Kind), nil
			case !j.ScheduledAt.Before(until):
				return ie.finishedSince(ctx, since)
			case slices.Contains(ie.queues, j.Queue) && !paused[j.Queue]:
				return fmt.Sprintf("job %d (%s) %s, due %s", j.ID, j.Kind, j.State, j.ScheduledAt.Format(time.RFC3339)), nil
			}
		}
		if len(res.Jobs) < 100 || res.LastCursor == nil {
			return ie.finishedSince(ctx, since)
		}
		params = params.After(res.LastCursor)
	}
}

// finishedSince names the latest job, other than a periodic one, that
// finished within the last since (none when since is 0), newest first:
// periodic runs are skipped page by page. It runs after the listing of
// running jobs, so a job that ends between the two is seen here.
func (ie *idleExit) finishedSince(ctx context.Context, since time.Duration) (string, error) {
	if since <= 0 {
		return "", nil
	}
	t := time.Now().Add(-since)
	params := river.NewJobListParams().
		States(rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded).
		OrderBy(river.JobListOrderByFinalizedAt, river.SortOrderDesc).First(50)
	for {
		res, err := ie.river.JobList(ctx, params)
		if err != nil {
			return "", fmt.Errorf("list finished jobs: %w", err)
		}
		for _, j := range res.Jobs {
			if j.FinalizedAt == nil || j.FinalizedAt.Before(t) {
				return "", nil
			}
			if !periodic(j) {
				return fmt.Sprintf("job %d (%s) %s at %s", j.ID, j.Kind, j.State, j.FinalizedAt.Format(time.RFC3339Nano)), nil
			}
		}
		if len(res.Jobs) < 50 || res.LastCursor == nil {
			return "", nil
		}
		params = params.After(res.LastCursor)
	}
}

// periodic reports whether River's periodic enqueuer made the job (its
// "periodic" metadata): the index drain and R2 sweep run every minute and
// must not keep an idle process up by themselves.
func periodic(j *rivertype.JobRow) bool {
	var md struct {
		Periodic bool `json:"periodic"`
	}
	return json.Unmarshal(j.Metadata, &md) == nil && md.Periodic
}
