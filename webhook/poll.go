package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-telegram/bot"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/jobs"
)

// AllowedUpdates returns the types of updates ferry acts on, for setWebhook
// and getUpdates alike.
func AllowedUpdates() []string {
	return []string{"message", "channel_post", "callback_query", "my_chat_member"}
}

// Poller receives updates with getUpdates, for machines with no public URL.
// It confirms updates to Telegram (by advancing the offset) only after the
// intake committed them, so a crash re-reads rather than loses updates.
type Poller struct {
	bots    *botapi.Bots
	apiURL  string
	intake  Submitter
	http    *http.Client
	logger  *slog.Logger
	timeout time.Duration
}

// NewPoller makes a poller over every configured bot. timeout is the long-poll
// wait Telegram may hold a request open (25 s is a good value).
func NewPoller(bots *botapi.Bots, apiURL string, intake Submitter, logger *slog.Logger, timeout time.Duration) *Poller {
	return &Poller{bots: bots, apiURL: apiURL, intake: intake, logger: logger, timeout: timeout,
		http: &http.Client{Timeout: timeout + 30*time.Second}}
}

// Run polls every bot until ctx is done. A webhook left registered would make
// getUpdates fail, so it is removed first (pending updates are kept).
func (p *Poller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range p.bots.All() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.runBot(ctx, b)
		}()
	}
	wg.Wait()
}

func (p *Poller) runBot(ctx context.Context, b *botapi.Bot) {
	log := p.logger.With("bot", b.Bot)
	if _, err := b.Client.DeleteWebhook(ctx, &bot.DeleteWebhookParams{DropPendingUpdates: false}); err != nil && ctx.Err() == nil {
		log.Warn("deleteWebhook before polling", "err", botapi.Redact(err, b.Token))
	}
	var offset int64
	backoff := time.Second
	for ctx.Err() == nil {
		updates, err := p.getUpdates(ctx, b, offset)
		if err == nil {
			err = p.submitAll(ctx, b, updates)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff
			if d, ok := botapi.RetryAfter(err); ok {
				wait = d
			} else {
				backoff = min(backoff*2, 30*time.Second)
			}
			log.Warn("poll updates", "err", botapi.Redact(err, b.Token), "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = time.Second
		for _, u := range updates {
			offset = max(offset, u.UpdateID+1)
		}
	}
}

// submitAll commits a batch in parallel (one group commit) and fails if any
// of its updates failed, so the offset is not advanced past it.
func (p *Poller) submitAll(ctx context.Context, b *botapi.Bot, updates []jobs.Update) error {
	errs := make([]error, len(updates))
	var wg sync.WaitGroup
	for i, u := range updates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.intake.Submit(ctx, u)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("commit polled updates: %w", err)
	}
	return nil
}

// getUpdates is called directly rather than through go-telegram/bot, which
// does not expose it and would re-encode updates: the raw bytes are kept.
func (p *Poller) getUpdates(ctx context.Context, b *botapi.Bot, offset int64) ([]jobs.Update, error) {
	req := map[string]any{"offset": offset, "timeout": int(p.timeout.Seconds()), "allowed_updates": AllowedUpdates()}
	body, _ := json.Marshal(req)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, p.apiURL+"/bot"+b.Token+"/getUpdates", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("getUpdates request: %w", err)
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(r)
	if err != nil {
		return nil, fmt.Errorf("getUpdates: %w", err)
	}
	defer resp.Body.Close()
	var ans struct {
		OK          bool              `json:"ok"`
		Result      []json.RawMessage `json:"result"`
		ErrorCode   int               `json:"error_code"`
		Description string            `json:"description"`
		Parameters  struct {
			RetryAfter int `json:"retry_after"`
		} `json:"parameters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return nil, fmt.Errorf("getUpdates: decode answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if !ans.OK {
		if ans.ErrorCode == http.StatusTooManyRequests {
			return nil, &bot.TooManyRequestsError{Message: ans.Description, RetryAfter: ans.Parameters.RetryAfter}
		}
		return nil, fmt.Errorf("getUpdates: %d %s", ans.ErrorCode, ans.Description)
	}
	out := make([]jobs.Update, 0, len(ans.Result))
	for _, raw := range ans.Result {
		id, sighting, kind, err := ParseUpdateKind(raw)
		if err != nil {
			// Telegram sent it, so it is of a type we do not know yet;
			// skip it rather than stall the bot forever.
			p.logger.Warn("skip undecodable update", "bot", b.Bot, "err", err)
			continue
		}
		out = append(out, jobs.Update{BotID: b.ID, UpdateID: id, Raw: []byte(raw), Sighting: sighting, Kind: kind})
	}
	return out, nil
}
