package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
)

// Lease timing. A working process renews its lease every leaseRenewEvery;
// one that has not managed to for leaseFenceAfter stops its own jobs, so
// they are stopped (their contexts cancelled) well before the lease can
// lapse at leaseTTL and another process hand them back. A crash therefore
// costs about leaseTTL plus a rescue tick before the work resumes, instead
// of River's stuck-job horizon (minutes).
const (
	leaseTTL         = 8 * time.Second
	leaseRenewEvery  = time.Second
	leaseFenceAfter  = 4 * time.Second
	leaseRescueEvery = time.Second
)

// errLeaseLost is the cause given to the jobs a process stops because it
// could not keep its lease.
var errLeaseLost = errors.New("this process could not renew its lease: its jobs may be handed to another process")

// newClientID is a River client id unique to this process: River records
// it in each running job's attempted_by, and the lease is kept under it.
func newClientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	if len(host) > 60 {
		host = host[:60]
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("ferry-%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// leaseKeeper holds one process's lease: it renews it, stops the process's
// jobs when it cannot (fencing), and hands back the running jobs of
// processes whose lease lapsed (LeaseRescueJobs).
type leaseKeeper struct {
	db  db.Executor
	id  string
	log *slog.Logger

	ttl, renewEvery, fenceAfter, rescueEvery time.Duration

	mu      sync.Mutex
	lastOK  time.Time // start of the last renewal that succeeded
	fenced  bool
	lapsed  bool // the lease is gone: acquire it again once no job runs
	epoch   context.Context
	endEpo  context.CancelCauseFunc
	running int

	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func newLeaseKeeper(d db.Executor, id string, log *slog.Logger) *leaseKeeper {
	k := &leaseKeeper{
		db: d, id: id, log: log.With("component", "lease", "client_id", id),
		ttl: leaseTTL, renewEvery: leaseRenewEvery, fenceAfter: leaseFenceAfter, rescueEvery: leaseRescueEvery,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	k.epoch, k.endEpo = context.WithCancelCause(context.Background())
	return k
}

// acquire takes the lease; the process works no job before.
func (k *leaseKeeper) acquire(ctx context.Context) error {
	started := time.Now()
	if err := k.db.LeaseAcquire(ctx, k.id, k.ttl); err != nil {
		return err
	}
	k.mu.Lock()
	k.lastOK = started
	k.mu.Unlock()
	return nil
}

// middleware runs each job under the lease: not at all while the process
// is fenced, and with a context the fence cancels.
func (k *leaseKeeper) middleware() rivertype.WorkerMiddleware {
	return river.WorkerMiddlewareFunc(func(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
		k.mu.Lock()
		if k.fenced {
			k.mu.Unlock()
			return river.JobSnooze(time.Second)
		}
		epoch := k.epoch
		k.running++
		k.mu.Unlock()
		defer func() {
			k.mu.Lock()
			k.running--
			k.mu.Unlock()
		}()
		jctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		stop := context.AfterFunc(epoch, func() { cancel(context.Cause(epoch)) })
		defer stop()
		return doInner(jctx)
	})
}

// fence stops every job of the process and refuses new ones.
func (k *leaseKeeper) fence(why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fenced {
		return
	}
	k.fenced = true
	k.endEpo(errLeaseLost)
	k.log.Warn("stopping this process's jobs: lease not renewed", "reason", why, "running", k.running)
}

// unfence lets jobs run again, in a new epoch.
func (k *leaseKeeper) unfenceLocked() {
	if !k.fenced {
		return
	}
	k.fenced = false
	k.epoch, k.endEpo = context.WithCancelCause(context.Background())
	k.log.Info("lease renewed: working jobs again")
}

// run renews and rescues until stopped.
func (k *leaseKeeper) run(ctx context.Context) {
	defer close(k.done)
	renew := time.NewTicker(k.renewEvery)
	defer renew.Stop()
	rescue := time.NewTicker(k.rescueEvery)
	defer rescue.Stop()
	watch := time.NewTicker(max(k.fenceAfter/16, 50*time.Millisecond))
	defer watch.Stop()
	// Renewals run beside the loop so a stuck one cannot delay the fence.
	renewing := make(chan struct{}, 1)
	k.rescue(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.stop:
			return
		case <-watch.C:
			k.mu.Lock()
			late := time.Since(k.lastOK) > k.fenceAfter
			k.mu.Unlock()
			if late {
				k.fence(fmt.Sprintf("no renewal for %s", k.fenceAfter))
			}
		case <-renew.C:
			select {
			case renewing <- struct{}{}:
				go func() { defer func() { <-renewing }(); k.renew(ctx) }()
			default: // the previous renewal is still waiting
			}
		case <-rescue.C:
			k.rescue(ctx)
		}
	}
}

func (k *leaseKeeper) renew(ctx context.Context) {
	started := time.Now()
	rctx, cancel := context.WithTimeout(ctx, k.ttl)
	defer cancel()
	k.mu.Lock()
	lapsed, running := k.lapsed, k.running
	k.mu.Unlock()
	if lapsed {
		// Jobs this process ran may have been handed to another one: take
		// the lease again only once none of them is still running here.
		if running > 0 {
			return
		}
		if err := k.db.LeaseAcquire(rctx, k.id, k.ttl); err != nil {
			k.log.Warn("acquire lease again", "err", err)
			return
		}
		k.mu.Lock()
		k.lastOK, k.lapsed = started, false
		k.unfenceLocked()
		k.mu.Unlock()
		return
	}
	ok, err := k.db.LeaseRenew(rctx, k.id, k.ttl)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			k.log.Warn("renew lease", "err", err)
		}
	case ok:
		// Renewed, so never lapsed: no other process took its jobs.
		k.mu.Lock()
		k.lastOK = started
		k.unfenceLocked()
		k.mu.Unlock()
	default:
		k.fence("the lease lapsed")
		k.mu.Lock()
		k.lapsed = true
		k.mu.Unlock()
	}
}

func (k *leaseKeeper) rescue(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	jobs, err := k.db.LeaseRescueJobs(rctx, k.id)
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("hand back jobs of lapsed leases", "err", err)
		}
		return
	}
	for _, j := range jobs {
		k.log.Info("job handed back: its process stopped renewing its lease", "job_id", j.ID, "kind", j.Kind, "runner", j.Runner, "state", j.State)
	}
}

// shutdown stops the keeper and deletes the lease.
func (k *leaseKeeper) shutdown() {
	k.stopOnce.Do(func() {
		close(k.stop)
		if !k.started.Load() {
			return
		}
		<-k.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := k.db.LeaseRelease(ctx, k.id); err != nil {
			k.log.Warn("release lease", "err", err)
		}
	})
}

// leasedRiver is a working River client that holds a lease while it runs.
type leasedRiver struct {
	db.River
	k *leaseKeeper
}

// Start takes the lease, then starts River.
func (c *leasedRiver) Start(ctx context.Context) error {
	if err := c.k.acquire(ctx); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	c.k.started.Store(true)
	go c.k.run(context.WithoutCancel(ctx))
	context.AfterFunc(ctx, c.k.shutdown)
	if err := c.River.Start(ctx); err != nil {
		c.k.shutdown()
		return err
	}
	return nil
}

// Stop stops River softly; the lease goes once no job is left running.
func (c *leasedRiver) Stop(ctx context.Context) error {
	if err := c.River.Stop(ctx); err != nil {
		return err
	}
	c.k.shutdown()
	return nil
}

// StopAndCancel cancels the jobs, stops River and lets the lease go.
func (c *leasedRiver) StopAndCancel(ctx context.Context) error {
	err := c.River.StopAndCancel(ctx)
	c.k.shutdown()
	return err
}
