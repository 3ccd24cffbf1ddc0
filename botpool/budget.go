package botpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// Rate is N sends in any Per; N 0 is no limit.
type Rate struct {
	N   int
	Per time.Duration
}

func (r Rate) String() string {
	if r.N <= 0 || r.Per <= 0 {
		return "none"
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

// Limits are the rates the send budget keeps each bot within. Telegram
// publishes them as rules of thumb (Bot API FAQ): about one message a
// second into one private chat, 20 a minute into one group or channel,
// 30 a second overall; edits count as sends.
type Limits struct {
	Private Rate // per bot, per private chat
	Group   Rate // per bot, per group, supergroup or channel
	Bot     Rate // per bot, every chat together
	// Margin widens every gap between two sends of one budget by this
	// fraction of it: a send reaches Telegram some milliseconds after its
	// turn, and not always the same number, so turns spaced exactly at the
	// limit would sometimes arrive closer than it.
	Margin float64
}

// TelegramLimits are Telegram's published limits.
func TelegramLimits() Limits {
	return Limits{Private: Rate{1, time.Second}, Group: Rate{20, time.Minute}, Bot: Rate{30, time.Second}, Margin: 0.05}
}

// NoLimits paces nothing (the budget still keeps its books), for
// benchmarks and tests that measure ferry's own cost.
func NoLimits() Limits { return Limits{} }

func (l Limits) String() string {
	return fmt.Sprintf("private=%s,group=%s,bot=%s,margin=%g", l.Private, l.Group, l.Bot, l.Margin)
}

// ParseLimits reads SEND_LIMITS: "" is TelegramLimits, "none" NoLimits;
// otherwise comma-separated changes to TelegramLimits, each
// private|group|bot=N/DURATION (N 0: no limit) or margin=FRACTION, e.g.
// "group=20/6s,bot=30/1s".
func ParseLimits(s string) (Limits, error) {
	l := TelegramLimits()
	switch strings.TrimSpace(s) {
	case "":
		return l, nil
	case "none":
		return NoLimits(), nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Limits{}, fmt.Errorf("send limits: %q is not name=value", part)
		}
		if k == "margin" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				return Limits{}, fmt.Errorf("send limits: margin %q is not a fraction 0..1", v)
			}
			l.Margin = f
			continue
		}
		n, per, ok := strings.Cut(v, "/")
		count, err1 := strconv.Atoi(n)
		d, err2 := time.ParseDuration(per)
		if !ok || err1 != nil || err2 != nil || count < 0 || d <= 0 {
			return Limits{}, fmt.Errorf("send limits: %s=%q is not N/DURATION (e.g. 20/1m)", k, v)
		}
		switch k {
		case "private":
			l.Private = Rate{count, d}
		case "group":
			l.Group = Rate{count, d}
		case "bot":
			l.Bot = Rate{count, d}
		default:
			return Limits{}, fmt.Errorf("send limits: unknown limit %q (private, group, bot, margin)", k)
		}
	}
	return l, nil
}

// gap is the least time between two turns of a budget that keeps to r:
// turns evenly spaced at Per/N never put more than N into any Per.
func (l Limits) gap(r Rate) time.Duration {
	if r.N <= 0 || r.Per <= 0 {
		return 0
	}
	g := r.Per / time.Duration(r.N)
	return g + time.Duration(float64(g)*l.Margin)
}

// chatGap is the gap of chatID's budget: positive ids are private chats,
// the others groups and channels (the Bot API's convention).
func (l Limits) chatGap(chatID int64) time.Duration {
	if chatID > 0 {
		return l.gap(l.Private)
	}
	return l.gap(l.Group)
}

// Budget paces every send of every bot: each takes a turn first, from
// rows in the database, so that every process of a deployment spends the
// same budget. A turn is a time at which a bot may send into a chat: the
// turns of one bot in one chat are at least Per/N apart (its chat limit),
// and so are all its turns together (its bot limit). Turns can be taken
// ahead (a batch of replies takes the next few, spread over the bots that
// can send into the chat), which also tells a progress edit that the chat
// is busy. A 429 blocks the bot in that chat until its retry_after ends.
//
// A nil *Budget grants every turn at once.
type Budget struct {
	d       db.Driver
	limits  Limits
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	// Spent chat rows are pruned by a Take at most every pruneEvery, so
	// send_budget holds the chats of the last window, not every chat ever.
	pruneEvery time.Duration
	pruneMu    sync.Mutex
	prunedAt   time.Time
}

// pruneEvery is how often a process prunes send_budget, piggy-backed on a
// Take: one indexed DELETE per process per interval.
const pruneEvery = 10 * time.Minute

// NewBudget makes the budget on d with limits.
func NewBudget(d db.Driver, limits Limits, logger *slog.Logger) *Budget {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Budget{d: d, limits: limits, log: logger, now: time.Now, pruneEvery: pruneEvery}
}

// window is the longest time a chat row can matter for: the longest Per of
// the limits, and at least a minute (the longest a 429 blocks one chat
// before it blocks the bot's own row instead).
func (l Limits) window() time.Duration {
	return max(l.Private.Per, l.Group.Per, l.Bot.Per, globalWait)
}

// Prune deletes the chat rows whose turns and 429s ended more than the
// longest window ago: a fresh row paces exactly as they would.
func (b *Budget) Prune(ctx context.Context) (int64, error) {
	if b == nil {
		return 0, nil
	}
	n, err := b.d.SendBudgetPrune(ctx, b.now().Add(-b.limits.window()))
	if err != nil {
		return 0, fmt.Errorf("send budget: %w", err)
	}
	return n, nil
}

// maybePrune runs Prune when this process has not for pruneEvery; an error
// is logged (the rows wait for the next try).
func (b *Budget) maybePrune(ctx context.Context) {
	b.pruneMu.Lock()
	now := b.now()
	due := now.Sub(b.prunedAt) >= b.pruneEvery
	if due {
		b.prunedAt = now
	}
	b.pruneMu.Unlock()
	if !due {
		return
	}
	n, err := b.Prune(context.WithoutCancel(ctx))
	if err != nil {
		b.log.WarnContext(ctx, "send budget: prune spent rows", "err", err)
		return
	}
	b.log.DebugContext(ctx, "send budget: pruned spent rows", "rows", n)
}

// Limits are the rates b keeps to.
func (b *Budget) Limits() Limits {
	if b == nil {
		return NoLimits()
	}
	return b.limits
}

// Turn is when one send of BotID may go.
type Turn struct {
	BotID int64
	At    time.Time
}

// Take reserves up to n turns in chatID, each no later than within from
// now, choosing for each the bot of bots (in order of preference) whose
// turn comes first, the earlier in bots on a tie: with every bot free the
// turns go round them, so N bots that can send into a chat give it N
// times the rate. The times are this process's clock (turns are set by
// each process's clock: processes on one machine, or clocks in sync). It
// returns the turns in time order and, when fewer than n fit, when the
// next would be free.
func (b *Budget) Take(ctx context.Context, chatID int64, bots []int64, n int, within time.Duration) ([]Turn, time.Time, error) {
	bots = distinct(bots)
	if len(bots) == 0 || n <= 0 {
		return nil, time.Time{}, nil
	}
	if b == nil {
		turns := make([]Turn, n)
		now := time.Now()
		for i := range turns {
			turns[i] = Turn{BotID: bots[i%len(bots)], At: now}
		}
		return turns, time.Time{}, nil
	}
	var turns []Turn
	var next time.Time
	err := db.WithTx(ctx, b.d, func(tx db.Tx) error {
		turns, next = nil, time.Time{}
		rows, err := tx.SendBudgetLock(ctx, chatID, bots)
		if err != nil {
			return err
		}
		now := b.now()
		book := newBook(rows, chatID)
		chatGap, botGap := b.limits.chatGap(chatID), b.limits.gap(b.limits.Bot)
		for len(turns) < n {
			best, at := -1, time.Time{}
			for i, id := range bots {
				if t := book.free(id, now); best < 0 || t.Before(at) {
					best, at = i, t
				}
			}
			if at.After(now.Add(within)) {
				next = at
				break
			}
			id := bots[best]
			c, o := book.chat[id], book.bot[id]
			if c == nil || o == nil {
				return fmt.Errorf("bot %d's rows are missing from the lock", id)
			}
			c.NextAt, o.NextAt = at.Add(chatGap), at.Add(botGap)
			o.Sends++
			if at.After(now) {
				o.Queued++
			}
			turns = append(turns, Turn{BotID: id, At: at})
		}
		return tx.SendBudgetSave(ctx, book.rows())
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("send budget of chat %d: %w", chatID, err)
	}
	b.metrics.taken(turns, b.now())
	b.maybePrune(ctx)
	return turns, next, nil
}

// TakeIdle takes a turn of botID in chatID now, only if the chat has been
// idle for a whole gap beyond the last turn taken (no send is waiting for
// one, nor was there one just now): for sends that may be skipped, such as
// progress edits, which so never take a turn a reply could have had.
func (b *Budget) TakeIdle(ctx context.Context, chatID, botID int64) (bool, error) {
	if b == nil {
		return true, nil
	}
	var ok bool
	err := db.WithTx(ctx, b.d, func(tx db.Tx) error {
		ok = false
		rows, err := tx.SendBudgetLock(ctx, chatID, []int64{botID})
		if err != nil {
			return err
		}
		now := b.now()
		book := newBook(rows, chatID)
		chatGap, botGap := b.limits.chatGap(chatID), b.limits.gap(b.limits.Bot)
		c, o := book.chat[botID], book.bot[botID]
		if c == nil || o == nil {
			return fmt.Errorf("bot %d's rows are missing from the lock", botID)
		}
		if book.free(botID, now).After(now) || c.NextAt.Add(chatGap).After(now) {
			return nil
		}
		c.NextAt, o.NextAt = now.Add(chatGap), now.Add(botGap)
		o.Sends++
		ok = true
		return tx.SendBudgetSave(ctx, book.rows())
	})
	if err != nil {
		return false, fmt.Errorf("send budget of chat %d: %w", chatID, err)
	}
	if !ok {
		b.metrics.skipped(botID)
	}
	return ok, nil
}

// WaitError is returned by Wait when the bot's next turn is further than
// it may wait: the caller should try again after Wait (a River snooze).
type WaitError struct {
	Wait time.Duration
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("send budget spent: next turn in %s", e.Wait.Round(time.Millisecond))
}

// AsWait reports how long a WaitError asks to wait.
func AsWait(err error) (time.Duration, bool) {
	var we *WaitError
	if errors.As(err, &we) {
		return we.Wait, true
	}
	return 0, false
}

// Wait takes botID's next turn in chatID and sleeps until it, if it comes
// within within; otherwise it takes none and returns a *WaitError.
func (b *Budget) Wait(ctx context.Context, chatID, botID int64, within time.Duration) error {
	_, err := b.WaitAny(ctx, chatID, []int64{botID}, within)
	return err
}

// WaitAny is Wait for the first turn of any of bots; it returns the bot.
func (b *Budget) WaitAny(ctx context.Context, chatID int64, bots []int64, within time.Duration) (int64, error) {
	if b == nil {
		if len(bots) == 0 {
			return 0, nil
		}
		return bots[0], nil
	}
	turns, next, err := b.Take(ctx, chatID, bots, 1, within)
	if err != nil {
		return 0, err
	}
	if len(turns) == 0 {
		return 0, &WaitError{Wait: max(next.Sub(b.now()), time.Millisecond)}
	}
	return turns[0].BotID, sleepUntil(ctx, turns[0].At)
}

// sleepUntil waits until t (this process's clock) or ctx's end.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for a send turn: %w", ctx.Err())
	}
}

// SleepUntil waits for a turn's time, or ctx's end.
func SleepUntil(ctx context.Context, t time.Time) error { return sleepUntil(ctx, t) }

// globalWait is the shortest retry_after taken as Telegram's flood control
// of the bot as a whole rather than of one chat: the per-chat limits clear
// within a minute.
const globalWait = time.Minute

// Refused records Telegram's 429 to botID's call of method in chatID
// (0: a call about no chat): the bot takes no turn in that chat before
// retry_after is over, in any process; a wait longer than a minute, or
// one about no chat, blocks the bot in every chat. The record is best
// effort: a failed write is logged.
func (b *Budget) Refused(ctx context.Context, botID, chatID int64, method string, retryAfter time.Duration) {
	if b == nil {
		return
	}
	b.metrics.refused(botID, method)
	scope := chatID
	if retryAfter >= globalWait {
		scope = 0
	}
	b.log.WarnContext(ctx, "Telegram refused a send: too many requests", "bot_id", botID, "chat_id", chatID,
		"method", method, "retry_after", retryAfter.String(), "blocks_every_chat", scope == 0)
	if err := b.d.SendBudgetBlock(context.WithoutCancel(ctx), botID, scope, b.now().Add(retryAfter)); err != nil {
		b.log.WarnContext(ctx, "send budget: record a 429", "bot_id", botID, "err", err)
	}
}

// BotBudget is what the budget knows of one bot now.
type BotBudget struct {
	BotID int64
	// Sends, Queued and Refused are counts since the budget began: turns
	// taken, turns that had to wait, and 429 answers.
	Sends, Queued, Refused int64
	// NextIn is how long until the bot's next turn in any chat; BlockedFor
	// how long a 429 keeps it from every chat.
	NextIn, BlockedFor time.Duration
	// BusyChats are the chats where its next turn is not free now, or a
	// 429 blocks it; Busiest is the one whose turn is furthest away and
	// BusiestIn how far.
	BusyChats int
	Busiest   int64
	BusiestIn time.Duration
}

// State reads every bot's budget, in bot id order.
func (b *Budget) State(ctx context.Context) ([]BotBudget, error) {
	if b == nil {
		return nil, nil
	}
	now := b.now()
	rows, err := b.d.SendBudgetList(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("send budget: %w", err)
	}
	var out []BotBudget
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].BotID != r.BotID {
			out = append(out, BotBudget{BotID: r.BotID})
		}
		s := &out[len(out)-1]
		wait := max(r.NextAt.Sub(now), r.BlockedUntil.Sub(now), 0)
		if r.ChatID == 0 {
			s.Sends, s.Queued, s.Refused = r.Sends, r.Queued, r.Refused
			s.NextIn, s.BlockedFor = max(r.NextAt.Sub(now), 0), max(r.BlockedUntil.Sub(now), 0)
			continue
		}
		if wait > 0 {
			s.BusyChats++
			if wait > s.BusiestIn {
				s.Busiest, s.BusiestIn = r.ChatID, wait
			}
		}
	}
	return out, nil
}

// book is the rows of one Take: each bot's row in the chat and its own.
type book struct {
	chat, bot map[int64]*db.SendBudget
	all       []*db.SendBudget
}

func newBook(rows []db.SendBudget, chatID int64) *book {
	k := &book{chat: map[int64]*db.SendBudget{}, bot: map[int64]*db.SendBudget{}}
	for i := range rows {
		r := &rows[i]
		k.all = append(k.all, r)
		if r.ChatID == 0 {
			k.bot[r.BotID] = r
		}
		if r.ChatID == chatID {
			k.chat[r.BotID] = r
		}
	}
	return k
}

// free is the first time the bot may send into the chat, now at the
// earliest.
func (k *book) free(botID int64, now time.Time) time.Time {
	t := now
	for _, r := range []*db.SendBudget{k.chat[botID], k.bot[botID]} {
		if r == nil {
			continue
		}
		if r.NextAt.After(t) {
			t = r.NextAt
		}
		if r.BlockedUntil.After(t) {
			t = r.BlockedUntil
		}
	}
	return t
}

func (k *book) rows() []db.SendBudget {
	out := make([]db.SendBudget, len(k.all))
	for i, r := range k.all {
		out[i] = *r
	}
	return out
}

func distinct(ids []int64) []int64 {
	out := make([]int64, 0, len(ids))
	seen := make(map[int64]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
