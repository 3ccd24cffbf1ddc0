// Package jobs decides what happens to every update: it owns the River client,
// the job kinds and their workers. Workers are thin: they call the engines
// (mtproto, index, r2) and the Bot API, and turn Telegram's answers into River
// outcomes (429 → snooze, 400 → cancel, anything else → retry).
package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/mtproto"
)

// Queue names. Updates have their own queue so that /pause, which stops the
// work queues, never stops the /resume that would undo it.
const (
	QueueUpdates = "updates"
	QueueIndex   = "index"
	QueueR2      = "r2"
	QueueUploads = "uploads"
)

// WorkQueues are the queues /pause and /resume act on.
func WorkQueues() []string { return []string{QueueIndex, QueueR2, QueueUploads} }

// Deps is what workers need; cmd/ferry builds it once and passes it in.
type Deps struct {
	DB     db.Driver
	Config *config.Config
	Bots   *botapi.Bots
	Logger *slog.Logger
	// Index is the channel file index; nil disables indexing, /find, /get.
	Index *index.Indexer
	// Senders picks the bot that sends a file (/get); nil disables /get.
	Senders *botpool.Pool
	// R2Enabled queues record writes for new file_ids (the index has a
	// record store: the R2 bucket, or the local folder without one).
	R2Enabled bool
	// MTProto gives each bot's MTProto client; nil disables uploads.
	MTProto *MTProtoClients
	// UploadState keeps resumable upload state (parts acknowledged, random_id).
	UploadState *mtproto.StateStore
	// River is the client NewClient made; workers insert, list and
	// complete jobs with it.
	River db.River
	// Metrics records updates, job results and upload progress; nil
	// records nothing.
	Metrics *Metrics
	// Started is when the process started, for /stats; zero shows no
	// uptime.
	Started time.Time

	usernames sync.Map // bot id → username, from getMe, for /cmd@name
}

// ClientOptions choose what a River client does in this process.
type ClientOptions struct {
	// Work starts the queues; false gives an insert-only client (`ferry web`).
	Work bool
	// RescueStuckJobsAfter is how long a job may stay running before another
	// process takes it over after a crash. Zero means twice the longest
	// job timeout.
	RescueStuckJobsAfter time.Duration
}

// NewClient builds the River client with every worker registered, so any
// process can work any queue it starts, and keeps it in d.River for the
// workers.
func NewClient(d *Deps, opts ClientOptions) (db.River, error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &UpdateWorker{d: d})
	river.AddWorker(workers, &IndexReplyWorker{d: d})
	river.AddWorker(workers, &IndexDrainWorker{d: d})
	river.AddWorker(workers, &R2SyncWorker{d: d})
	river.AddWorker(workers, &R2SweepWorker{d: d})
	river.AddWorker(workers, &UploadWorker{d: d})
	river.AddWorker(workers, &RelayWorker{d: d})
	cfg := &river.Config{
		Logger:               d.Logger.With("component", "river"),
		Middleware:           []rivertype.Middleware{jobLogs(d.Logger)},
		Workers:              workers,
		JobTimeout:           updateJobTimeout,
		RescueStuckJobsAfter: opts.RescueStuckJobsAfter,
		MaxAttempts:          25,
		// River fetches at most one batch per queue per cooldown (default
		// 100 ms), which caps a queue near MaxWorkers×10 jobs/s; updates
		// arrive in thousands per second under load.
		FetchCooldown: 5 * time.Millisecond,
	}
	if cfg.RescueStuckJobsAfter == 0 {
		// Above the longest job timeout (an upload slice), and short
		// enough that a job lost in a crash runs again within minutes.
		cfg.RescueStuckJobsAfter = 3 * time.Minute
	}
	if opts.Work && d.Index != nil {
		// A safety net, and a drain at start-up: sightings left by a drain
		// job that exhausted its attempts are taken within a minute.
		cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(time.Minute),
			func() (river.JobArgs, *river.InsertOpts) { return IndexDrainArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true}))
	}
	if opts.Work && d.R2Enabled {
		// RunOnStart: a process that scales to zero may live less than a
		// minute, and River never makes up for runs missed while stopped.
		cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(time.Minute),
			func() (river.JobArgs, *river.InsertOpts) { return R2SweepArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true}))
	}
	var keeper *leaseKeeper
	if opts.Work {
		// A lease under the client id River records in attempted_by: a
		// crash costs seconds, not RescueStuckJobsAfter (jobs/lease.go).
		keeper = newLeaseKeeper(d.DB, newClientID(), d.Logger)
		cfg.ID = keeper.id
		cfg.Middleware = append(cfg.Middleware, keeper.middleware())
		cfg.Queues = map[string]river.QueueConfig{
			QueueUpdates: {MaxWorkers: 64},
			QueueIndex:   {MaxWorkers: 32},
			QueueR2:      {MaxWorkers: 32},
			QueueUploads: {MaxWorkers: 2},
		}
	}
	c, err := d.DB.NewRiver(cfg)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	if opts.Work {
		d.Metrics.watch(c)
	}
	if keeper != nil {
		c = &leasedRiver{River: c, k: keeper}
	}
	d.River = c
	return c, nil
}

const updateJobTimeout = time.Minute

// UpdateArgs is one Bot API update to act on. Bot and update id are the unique
// key: Telegram re-delivers an update it got no 200 for, and that must not make
// a second job.
type UpdateArgs struct {
	BotID    int64  `json:"bot_id" river:"unique"`
	UpdateID int64  `json:"update_id" river:"unique"`
	Update   []byte `json:"update"`
}

// Kind names the job in River's table and UI.
func (UpdateArgs) Kind() string { return "update" }

// InsertOpts puts updates on their own queue, unique by bot and update id.
func (UpdateArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueUpdates, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// outcome turns a Bot API error into what River should do with the job.
func outcome(err error) error {
	if err == nil {
		return nil
	}
	if d, ok := botapi.RetryAfter(err); ok {
		// Snoozing does not use up an attempt: a flood of 429s never
		// discards the job.
		return river.JobSnooze(d)
	}
	if botapi.Permanent(err) {
		return river.JobCancel(err)
	}
	return err
}

func username(ctx context.Context, d *Deps, b *botapi.Bot) string {
	if v, ok := d.usernames.Load(b.ID); ok {
		return v.(string)
	}
	me, err := b.Client.GetMe(ctx)
	if err != nil || me == nil {
		return ""
	}
	d.usernames.Store(b.ID, me.Username)
	return me.Username
}
