package jobs

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/index"
)

// ProgressView is what a progress message shows.
type ProgressView struct {
	Verb    string // "Uploading", "Downloading"
	Name    string
	Acked   int64
	Total   int64
	Speed   float64 // bytes/s
	ETA     time.Duration
	Elapsed time.Duration
}

// FormatProgress renders a progress message in Telegram HTML.
func FormatProgress(v ProgressView) string {
	pct := 0.0
	if v.Total > 0 {
		pct = float64(v.Acked) * 100 / float64(v.Total)
	}
	const width = 16
	filled := int(pct / 100 * width)
	filled = min(max(filled, 0), width)
	eta := "—"
	if v.ETA > 0 {
		eta = roundDur(v.ETA)
	}
	return fmt.Sprintf("<b>%s</b> %s\n<code>[%s%s]</code> %.1f%%\n%s of %s\nSpeed: %s/s · ETA: %s · Elapsed: %s",
		html.EscapeString(v.Verb), html.EscapeString(v.Name),
		strings.Repeat("█", filled), strings.Repeat("░", width-filled), pct,
		index.HumanSize(v.Acked), index.HumanSize(v.Total), index.HumanSize(int64(v.Speed)), eta, roundDur(v.Elapsed))
}

func roundDur(d time.Duration) string { return d.Round(time.Second).String() }

// ProgressMessage keeps one status message up to date without exceeding the
// rate Telegram accepts: Set only records the newest text (it never blocks the
// upload), and Run edits the message at most once per interval, waiting out
// any 429's retry_after. With a send budget (WithBudget) an edit is made
// only when the chat's budget is idle, so progress yields to replies: an
// edit is skipped (the next one shows the newer text), a reply never
// waits for one; the final message (Finish) waits for its turn.
type ProgressMessage struct {
	bot       *botapi.Bot
	chatID    int64
	messageID int
	markup    models.ReplyMarkup
	interval  time.Duration
	budget    *botpool.Budget

	mu     sync.Mutex
	latest string
	wake   chan struct{}
}

// NewProgressMessage edits message messageID in chatID; markup (e.g. a
// Cancel button) is kept on every edit. Telegram allows roughly one edit per
// second per chat; interval should be ≥ that.
func NewProgressMessage(b *botapi.Bot, chatID int64, messageID int, markup models.ReplyMarkup, interval time.Duration) *ProgressMessage {
	return &ProgressMessage{bot: b, chatID: chatID, messageID: messageID, markup: markup, interval: interval, wake: make(chan struct{}, 1)}
}

// WithBudget makes p take its turns from b (nil: none).
func (p *ProgressMessage) WithBudget(b *botpool.Budget) *ProgressMessage {
	p.budget = b
	return p
}

// Set records the text to show next.
func (p *ProgressMessage) Set(text string) {
	p.mu.Lock()
	p.latest = text
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run edits the message until ctx is done.
func (p *ProgressMessage) Run(ctx context.Context) {
	var shown string
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		p.mu.Lock()
		text := p.latest
		p.mu.Unlock()
		if text == shown {
			continue
		}
		wait := p.interval
		if ok, err := p.budget.TakeIdle(ctx, p.chatID, p.bot.ID); err != nil || !ok {
			// The chat is busy (or the budget unreadable): skip this
			// edit, and try the newest text again after the interval.
			p.rewake()
		} else if err := p.edit(ctx, text, p.markup); err != nil {
			if d, ok := botapi.RetryAfter(err); ok {
				p.budget.Refused(ctx, p.bot.ID, p.chatID, "editMessageText", d)
				wait = d
			}
			// Other errors: progress is best effort; the final edit retries.
			p.rewake()
		} else {
			shown = text
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// rewake makes Run look at the latest text again after its wait.
func (p *ProgressMessage) rewake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Finish shows the final text (with markup, e.g. a link button), retrying on
// 429 and 5xx until ctx ends: the result must reach the admin. It waits for
// its turn in the send budget, however busy the chat.
func (p *ProgressMessage) Finish(ctx context.Context, text string, markup models.ReplyMarkup) error {
	for {
		err := p.budget.Wait(ctx, p.chatID, p.bot.ID, finishWithin)
		if err == nil {
			err = p.edit(ctx, text, markup)
		}
		if err == nil || botapi.Permanent(err) {
			return err
		}
		wait := 2 * time.Second
		if d, ok := botpool.AsWait(err); ok {
			wait = d
		} else if d, ok := botapi.RetryAfter(err); ok {
			p.budget.Refused(ctx, p.bot.ID, p.chatID, "editMessageText", d)
			wait = d
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("final progress edit: %w", errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
	}
}

// finishWithin is how far ahead the final message takes its turn; a turn
// further away is waited for, then asked again.
const finishWithin = 10 * time.Second

func (p *ProgressMessage) edit(ctx context.Context, text string, markup models.ReplyMarkup) error {
	_, err := p.bot.Client.EditMessageText(ctx, &bot.EditMessageTextParams{
		ChatID: p.chatID, MessageID: p.messageID, Text: text, ParseMode: models.ParseModeHTML, ReplyMarkup: markup,
	})
	if err != nil && strings.Contains(err.Error(), "message is not modified") {
		return nil
	}
	if err != nil {
		return botapi.Redact(err, p.bot.Token)
	}
	return nil
}

// CancelButton is the inline keyboard of a running job's status message.
func CancelButton(jobID int64) models.ReplyMarkup {
	return &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{
		{Text: "Cancel", CallbackData: fmt.Sprintf("cancel:%d", jobID)},
	}}}
}
