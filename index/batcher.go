package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Then runs inside the transaction that recorded a sighting, with its
// outcome: insert the reply job (out.Reply) and the R2 job
// (out.NeedR2Write) here so they commit atomically with the rows.
type Then func(ctx context.Context, tx pgx.Tx, out Outcome) error

// BatcherOptions tunes a Batcher. Zero values take the defaults.
type BatcherOptions struct {
	MaxBatch int           // sightings per transaction (default 64)
	MaxWait  time.Duration // how long the first sighting waits for company (default 2 ms)
	Parallel int           // transactions in flight at once (default 4)
}

// Batcher lets many concurrent workers (one River job per update) share
// transactions: each Index call waits at most MaxWait for others, and the
// group is recorded with IndexMany in one transaction, each caller's Then
// running inside it. One commit and two round trips per group instead of
// three round trips per sighting is what gets an 11-bot channel past a few
// hundred posts a second on a small machine.
//
// When a group's transaction fails (a Then error, a deadlock between
// groups, a lost connection) every member is retried alone in its own
// transaction, so one bad sighting cannot fail its neighbours.
type Batcher struct {
	ix      *Indexer
	opts    BatcherOptions
	reqs    chan *batchReq
	stopped chan struct{}
}

type batchReq struct {
	ctx  context.Context
	post Post
	then Then
	done chan batchRes
}

type batchRes struct {
	out Outcome
	err error
}

// NewBatcher makes a Batcher over ix. Call Run to start it.
func (ix *Indexer) NewBatcher(opts BatcherOptions) *Batcher {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 64
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 2 * time.Millisecond
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	return &Batcher{ix: ix, opts: opts, reqs: make(chan *batchReq), stopped: make(chan struct{})}
}

// ErrBatcherStopped is returned by Index after Run has returned.
var ErrBatcherStopped = errors.New("index: batcher stopped")

// Index records a sighting in a shared transaction, running then (may be
// nil) inside it, and returns the outcome once the transaction committed.
// The semantics are Index's: an error means nothing was committed for this
// sighting and the job should be retried.
func (b *Batcher) Index(ctx context.Context, p Post, then Then) (Outcome, error) {
	if err := validPost(p); err != nil {
		return Outcome{}, err
	}
	r := &batchReq{ctx: ctx, post: p, then: then, done: make(chan batchRes, 1)}
	select {
	case b.reqs <- r:
	case <-b.stopped:
		return Outcome{}, ErrBatcherStopped
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.out, res.err
	case <-ctx.Done():
		// The group may still commit this sighting; a retried job then
		// finds it recorded (Reply false, its jobs already committed).
		return Outcome{}, ctx.Err()
	}
}

// Run collects and records groups until ctx is done; then it finishes the
// groups in flight and returns. Index calls after that fail with
// ErrBatcherStopped. Run must be called once.
func (b *Batcher) Run(ctx context.Context) error {
	sem := make(chan struct{}, b.opts.Parallel)
	defer func() {
		close(b.stopped)
		for i := 0; i < cap(sem); i++ {
			sem <- struct{}{}
		}
	}()
	for {
		var first *batchReq
		select {
		case <-ctx.Done():
			return nil
		case first = <-b.reqs:
		}
		group := []*batchReq{first}
		timer := time.NewTimer(b.opts.MaxWait)
	collect:
		for len(group) < b.opts.MaxBatch {
			select {
			case r := <-b.reqs:
				group = append(group, r)
			case <-timer.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		timer.Stop()
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			b.record(context.WithoutCancel(ctx), group)
		}()
	}
}

func (b *Batcher) record(ctx context.Context, group []*batchReq) {
	var outs []Outcome
	err := pgx.BeginFunc(ctx, b.ix.pool, func(tx pgx.Tx) error {
		posts := make([]Post, len(group))
		for i, r := range group {
			posts[i] = r.post
		}
		var err error
		outs, err = b.ix.IndexMany(ctx, tx, posts)
		if err != nil {
			return err
		}
		for i, r := range group {
			if r.then == nil {
				continue
			}
			if err := r.then(r.ctx, tx, outs[i]); err != nil {
				return fmt.Errorf("then for slot %d, post %d/%d: %w", r.post.Slot, r.post.ChatID, r.post.MessageID, err)
			}
		}
		return nil
	})
	if err == nil {
		for i, r := range group {
			r.done <- batchRes{out: outs[i]}
		}
		return
	}
	if len(group) > 1 {
		b.ix.log.WarnContext(ctx, "index group failed; recording its sightings one by one",
			slog.Int("size", len(group)), slog.Any("err", err))
	}
	for _, r := range group {
		var out Outcome
		err := pgx.BeginFunc(ctx, b.ix.pool, func(tx pgx.Tx) error {
			var err error
			out, err = b.ix.Index(ctx, tx, r.post)
			if err != nil {
				return err
			}
			if r.then != nil {
				return r.then(r.ctx, tx, out)
			}
			return nil
		})
		r.done <- batchRes{out: out, err: err}
	}
}
