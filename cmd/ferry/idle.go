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

	mu       sync.Mutex
	inFlight int
	last     time.Time // the end of the last request that counts
}

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
		queues: append([]string{jobs.QueueUpdates}, jobs.WorkQueues()...),
		logger: logger.With("component", "idle"),
		idle:   make(chan struct{}),
		last:   time.Now(),
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
// it closed (an update taken in the last instant) to be done: no job cut off.
func (ie *idleExit) drain(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		why, err := ie.busy(ctx, 0, 0)
		if err == nil && why == "" {
			return
		}
		if why != "" {
			ie.logger.Info("finishing before the exit", "work", why)
		}
		select {
		case <-ctx.Done():
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
	running, err := ie.river.JobList(ctx, river.NewJobListParams().States(rivertype.JobStateRunning).First(1))
	if err != nil {
		return "", fmt.Errorf("list running jobs: %w", err)
	}
	if len(running.Jobs) > 0 {
		j := running.Jobs[0]
		return fmt.Sprintf("job %d (%s) running", j.ID, j.Kind), nil
	}
	if since > 0 {
		why, err := ie.finishedSince(ctx, time.Now().Add(-since))
		if why != "" || err != nil {
			return why, err
		}
	}
	qs, err := ie.river.QueueList(ctx, river.NewQueueListParams().First(1000))
	if err != nil {
		return "", fmt.Errorf("list queues: %w", err)
	}
	queues := slices.Clone(ie.queues)
	for _, q := range qs.Queues {
		if q.PausedAt != nil {
			// Paused work waits for /resume, itself an update that wakes us.
			queues = slices.DeleteFunc(queues, func(name string) bool { return name == q.Name })
		}
	}
	if len(queues) == 0 {
		return "", nil
	}
	due, err := ie.river.JobList(ctx, river.NewJobListParams().
		States(rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable).
		Queues(queues...).OrderBy(river.JobListOrderByScheduledAt, river.SortOrderAsc).First(1))
	if err != nil {
		return "", fmt.Errorf("list due jobs: %w", err)
	}
	if len(due.Jobs) > 0 && due.Jobs[0].ScheduledAt.Before(time.Now().Add(horizon)) {
		j := due.Jobs[0]
		return fmt.Sprintf("job %d (%s) %s, due %s", j.ID, j.Kind, j.State, j.ScheduledAt.Format(time.RFC3339)), nil
	}
	return "", nil
}

// finishedSince names the latest job, other than a periodic one, that
// finished after t, newest first: periodic runs are skipped page by page.
func (ie *idleExit) finishedSince(ctx context.Context, t time.Time) (string, error) {
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
