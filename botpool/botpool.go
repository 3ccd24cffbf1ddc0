// Package botpool chooses which bot sends a file: every bot that holds its
// own file_id for it, the least loaded and not in flood wait first, failing
// over to the next. /get uses it now; uploads and streaming links will.
// Load is shared through the database, so every process ranks bots alike.
package botpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-telegram/bot"
	"github.com/gotd/td/tgerr"

	"github.com/ferry-dev/ferry/db"
)

// Holder is a bot that holds its own file_id for a file and can send it.
type Holder = db.Holder

// Pool ranks and tries the bots that hold a file, and holds the send
// budget every send of every bot takes its turn from.
type Pool struct {
	db     db.Executor
	log    *slog.Logger
	lease  time.Duration
	budget *Budget
}

// Option configures a Pool.
type Option func(*options)

type options struct{ limits Limits }

// WithLimits sets the rates the send budget keeps to (default
// TelegramLimits).
func WithLimits(l Limits) Option { return func(o *options) { o.limits = l } }

// New builds a Pool on d; logger may be nil.
func New(d db.Driver, logger *slog.Logger, opts ...Option) *Pool {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := options{limits: TelegramLimits()}
	for _, f := range opts {
		f(&o)
	}
	return &Pool{db: d, log: logger, lease: sendLease, budget: NewBudget(d, o.limits, logger)}
}

// Budget is the send budget; nil on a nil Pool (which paces nothing).
func (p *Pool) Budget() *Budget {
	if p == nil {
		return nil
	}
	return p.budget
}

// InFlight counts each bot's sends in flight (Send, SendTo), from every
// process: leases younger than the send lease. Nil on a nil Pool.
func (p *Pool) InFlight(ctx context.Context) (map[int64]int, error) {
	if p == nil {
		return nil, nil
	}
	n, err := p.db.BotSendsInFlight(ctx, p.lease)
	if err != nil {
		return nil, fmt.Errorf("sends in flight: %w", err)
	}
	return n, nil
}

// sendLease is how long a send counts as in flight at most: far longer than
// any send by file_id takes, so only a send whose process died is cut short.
const sendLease = 10 * time.Minute

// Holders lists the bots that can send a file, best first: bots not in
// flood wait before those that are, then fewest sends in flight (from every
// process), then least recently used (so equal bots take turns), then slot.
func (p *Pool) Holders(ctx context.Context, uniqueID string) ([]Holder, error) {
	hs, err := p.db.HolderList(ctx, uniqueID, p.lease)
	if err != nil {
		return nil, fmt.Errorf("botpool: %w", err)
	}
	return hs, nil
}

// ErrNoHolder is returned by Send when no bot could send.
var ErrNoHolder = errors.New("botpool: no bot could send the file")

// Send calls send with each holder in order until one succeeds, and returns
// the holder that did. Each attempt is counted (in flight while it runs,
// then a send or a failure), and a flood-wait error (Bot API 429
// retry_after, or MTProto FLOOD_WAIT) puts that bot in flood wait so
// Holders ranks it last until the wait is over. Holders still in flood wait
// are tried only after all others failed. When every holder fails the
// errors are joined under ErrNoHolder.
func (p *Pool) Send(ctx context.Context, holders []Holder, send func(context.Context, Holder) error) (Holder, error) {
	if len(holders) == 0 {
		return Holder{}, fmt.Errorf("%w: nobody holds it", ErrNoHolder)
	}
	now := time.Now()
	order := make([]Holder, 0, len(holders))
	var waiting []Holder
	for _, h := range holders {
		if h.FloodWaitUntil.After(now) {
			waiting = append(waiting, h)
			continue
		}
		order = append(order, h)
	}
	order = append(order, waiting...)

	errs := []error{ErrNoHolder}
	for _, h := range order {
		if err := ctx.Err(); err != nil {
			return Holder{}, fmt.Errorf("botpool: send: %w", err)
		}
		lease := p.begin(ctx, h.BotID)
		err := send(ctx, h)
		p.end(ctx, h.BotID, lease, err)
		if err == nil {
			return h, nil
		}
		p.log.WarnContext(ctx, "send failed; trying the next bot",
			slog.Int("slot", h.Slot), slog.Int64("bot_id", h.BotID), slog.Any("err", err))
		errs = append(errs, fmt.Errorf("slot %d (bot %d): %w", h.Slot, h.BotID, err))
	}
	return Holder{}, errors.Join(errs...)
}

// sendWithin is how long SendTo waits for a holder's turn before it
// returns a *WaitError.
const sendWithin = 20 * time.Second

// SendTo is Send into chatID, each attempt taking its turn from the send
// budget first: the first holder whose turn comes first (holders in flood
// wait last), then the others in order should it fail. When no holder
// has a turn within 20 s it returns a *WaitError; a 429 is recorded in the
// budget (see Budget.Refused) under method.
func (p *Pool) SendTo(ctx context.Context, chatID int64, method string, holders []Holder, send func(context.Context, Holder) error) (Holder, error) {
	if len(holders) == 0 {
		return Holder{}, fmt.Errorf("%w: nobody holds it", ErrNoHolder)
	}
	ids := make([]int64, len(holders))
	for i, h := range holders {
		ids[i] = h.BotID
	}
	first, err := p.budget.WaitAny(ctx, chatID, ids, sendWithin)
	if err != nil {
		return Holder{}, err
	}
	order := make([]Holder, 0, len(holders))
	for _, h := range holders {
		if h.BotID == first {
			order = append([]Holder{h}, order...)
		} else {
			order = append(order, h)
		}
	}
	taken := first
	return p.Send(ctx, order, func(ctx context.Context, h Holder) error {
		if h.BotID != taken {
			if err := p.budget.Wait(ctx, chatID, h.BotID, sendWithin); err != nil {
				return err
			}
		}
		taken = 0
		err := send(ctx, h)
		if d, ok := FloodWait(err); ok {
			p.budget.Refused(ctx, h.BotID, chatID, method, d)
		}
		return err
	})
}

// FloodWait extracts how long a bot must wait from a Bot API 429 or an
// MTProto FLOOD_WAIT error.
func FloodWait(err error) (time.Duration, bool) {
	var tmr *bot.TooManyRequestsError
	if errors.As(err, &tmr) {
		return time.Duration(tmr.RetryAfter) * time.Second, true
	}
	if d, ok := tgerr.AsFloodWait(err); ok {
		return d, true
	}
	return 0, false
}

// Load accounting is best effort: a failed write is logged and never fails
// the send it describes. begin returns the lease to end (0 if none).
func (p *Pool) begin(ctx context.Context, botID int64) int64 {
	lease, err := p.db.BotSendLease(context.WithoutCancel(ctx), botID, p.lease)
	if err != nil {
		p.log.WarnContext(ctx, "bot load: begin", slog.Int64("bot_id", botID), slog.Any("err", err))
	}
	return lease
}

func (p *Pool) end(ctx context.Context, botID, lease int64, sendErr error) {
	r := &db.BotSendReleaseParams{BotID: botID, Lease: lease, OK: sendErr == nil}
	if d, ok := FloodWait(sendErr); ok {
		r.FloodWaitUntil = time.Now().Add(d)
	}
	if err := p.db.BotSendRelease(context.WithoutCancel(ctx), r); err != nil {
		p.log.WarnContext(ctx, "bot load: end", slog.Int64("bot_id", botID), slog.Any("err", err))
	}
}
