package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
)

// Update is one Bot API update as it arrived: the raw JSON is kept byte for
// byte so no field Telegram adds later is lost before the worker reads it.
type Update struct {
	BotID    int64
	UpdateID int64
	Raw      []byte
	// Sighting is set for a file posted in a channel or group: the intake
	// records it in sighting_batches instead of making an update job.
	Sighting *Sighting
	// Kind is what the update is about (Classify), for metrics; empty
	// counts as other.
	Kind Kind
}

// Sighting is the file post a channel-file update carries, as the index
// will record it. Its Slot and BotID are not used: the drain takes them
// from the bot that received the update, as configured when it runs.
type Sighting struct{ Post index.Post }

// SightingOf returns the file post of a channel-file update, or nil.
func SightingOf(u *models.Update) *Sighting {
	if u == nil || Classify(u) != KindChannelFile {
		return nil
	}
	m := u.ChannelPost
	if m == nil {
		m = u.Message
	}
	p, ok := index.PostFromMessage(1, 0, m)
	if !ok {
		return nil // an update job: its worker finds nothing to index
	}
	return &Sighting{Post: p}
}

// Intake makes updates durable: Submit returns only after the update's River
// job is committed. Concurrent submissions share one transaction (group
// commit), so a burst of deliveries costs a few commits, not one each.
type Intake struct {
	db       db.Driver
	client   db.River
	logger   *slog.Logger
	reqs     chan *pending
	maxBatch int
	window   time.Duration
	flushers int
	observe  func(batch int, took time.Duration, err error)
	// sightings routes channel files to sighting_batches (the index is on).
	sightings bool
	metrics   *Metrics
}

type pending struct {
	u    Update
	done chan error
}

// IntakeOption tunes an Intake.
type IntakeOption func(*Intake)

// WithBatch sets the largest batch and how long a flusher waits for more
// updates after the first (the group-commit window).
func WithBatch(max int, window time.Duration) IntakeOption {
	return func(in *Intake) { in.maxBatch, in.window = max, window }
}

// WithFlushers sets how many transactions may be in flight at once.
func WithFlushers(n int) IntakeOption { return func(in *Intake) { in.flushers = n } }

// WithSightings records channel-file updates in sighting_batches, indexed
// in large batches by an index_drain job, instead of one update job per
// update: eleven bots seeing a post then cost a share of a row per commit,
// not eleven jobs.
func WithSightings(on bool) IntakeOption { return func(in *Intake) { in.sightings = on } }

// WithObserver is called after every commit attempt (metrics).
func WithObserver(f func(batch int, took time.Duration, err error)) IntakeOption {
	return func(in *Intake) { in.observe = f }
}

// NewIntake prepares an Intake; call Run to start its flushers. By default
// two transactions are in flight with a 1 ms window: with four, commits
// were half the size and the index bench ran at 265–308 posts/s against
// 322–402 with two (four runs each, alternated); with one, at 279–308.
func NewIntake(d db.Driver, client db.River, logger *slog.Logger, opts ...IntakeOption) *Intake {
	in := &Intake{
		db: d, client: client, logger: logger,
		maxBatch: 512, window: time.Millisecond, flushers: 2,
		observe: func(int, time.Duration, error) {},
	}
	for _, o := range opts {
		o(in)
	}
	in.reqs = make(chan *pending, in.maxBatch*in.flushers)
	return in
}

// ErrStopped is returned by Submit once the intake has shut down.
var ErrStopped = errors.New("intake stopped")

// Run works until ctx is done. Updates already submitted are committed or
// answered with an error before Run returns, so no caller waits forever.
func (in *Intake) Run(ctx context.Context) {
	done := make(chan struct{})
	for i := 0; i < in.flushers; i++ {
		counter := rand.Int32()
		go func() {
			defer func() { done <- struct{}{} }()
			in.flushLoop(ctx, counter)
		}()
	}
	for i := 0; i < in.flushers; i++ {
		<-done
	}
	// Drain: anything still queued is refused so the sender gets a 503 and
	// Telegram delivers it again.
	for {
		select {
		case p := <-in.reqs:
			p.done <- ErrStopped
		default:
			return
		}
	}
}

// Submit commits u as a job (or finds it already committed) and returns nil
// only when it is durable.
func (in *Intake) Submit(ctx context.Context, u Update) error {
	p := &pending{u: u, done: make(chan error, 1)}
	select {
	case in.reqs <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The batch may still commit; a re-delivery is then deduplicated.
		return ctx.Err()
	}
}

// flushLoop commits batches one after another; counter is its own row key
// in update_counts.
func (in *Intake) flushLoop(ctx context.Context, counter int32) {
	batch := make([]*pending, 0, in.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case p := <-in.reqs:
			batch = append(batch, p)
		case <-ctx.Done():
			return
		}
		timer.Reset(in.window)
	collect:
		for len(batch) < in.maxBatch {
			select {
			case p := <-in.reqs:
				batch = append(batch, p)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		start := time.Now()
		// A batch already taken is committed even while shutting down.
		err := in.commit(context.WithoutCancel(ctx), batch, counter)
		in.observe(len(batch), time.Since(start), err)
		if err != nil {
			in.logger.Error("commit updates", "batch", len(batch), "err", err)
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

// commit makes the batch durable in one transaction: each update not seen
// before becomes a job (received_updates is its re-delivery guard), the
// channel files one sighting batch (a re-delivery is indexed again, which
// changes nothing), and the updates accepted are added to update_counts.
func (in *Intake) commit(ctx context.Context, batch []*pending, counter int32) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// Rows are written in key order so that two batches holding the same
	// keys lock them in the same order and cannot deadlock.
	slices.SortFunc(batch, func(a, b *pending) int {
		return cmp.Or(cmp.Compare(a.u.BotID, b.u.BotID), cmp.Compare(a.u.UpdateID, b.u.UpdateID))
	})
	accept := &db.UpdateAcceptManyParams{Counter: counter, DrainKind: IndexDrainArgs{}.Kind()}
	byKey := make(map[db.UpdateKey]*pending, len(batch))
	for _, p := range batch {
		if s := p.u.Sighting; s != nil && in.sightings {
			post := s.Post
			post.BotID = p.u.BotID
			accept.Sightings = append(accept.Sightings, post)
			continue
		}
		k := db.UpdateKey{BotID: p.u.BotID, UpdateID: p.u.UpdateID}
		accept.Updates = append(accept.Updates, k)
		byKey[k] = p
	}
	tx, err := in.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	res, err := tx.UpdateAcceptMany(ctx, accept)
	if err != nil {
		return err
	}
	params := make([]river.InsertManyParams, 0, len(res.New)+1)
	for _, k := range res.New {
		params = append(params, river.InsertManyParams{Args: UpdateArgs{BotID: k.BotID, UpdateID: k.UpdateID, Update: byKey[k].u.Raw}})
	}
	// The driver holds the sightings lock shared for these sightings, which
	// keeps a drain job from completing until they are committed (see
	// IndexDrainWorker); a drain job that is not finished will take them,
	// so a new one is queued only when there is none.
	if len(accept.Sightings) > 0 && !res.DrainQueued {
		params = append(params, river.InsertManyParams{Args: IndexDrainArgs{}})
	}
	if len(params) > 0 {
		if _, err := in.client.InsertManyTx(ctx, tx, params); err != nil {
			return fmt.Errorf("insert %d jobs: %w", len(params), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if in.metrics != nil {
		for _, k := range res.New {
			in.metrics.update(k.BotID, byKey[k].u.Kind)
		}
		for _, s := range accept.Sightings {
			in.metrics.update(s.BotID, KindChannelFile)
		}
	}
	return nil
}
