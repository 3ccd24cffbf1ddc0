// Package botapi holds one go-telegram/bot client per configured bot and the
// rules ferry applies to every Bot API answer (429 → wait, 5xx → retry).
package botapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-telegram/bot"

	"github.com/ferry-dev/ferry/config"
)

// Bots is the set of Bot API clients, addressable by bot id or slot.
type Bots struct {
	list   []*Bot
	byID   map[int64]*Bot
	logger *slog.Logger
}

// Bot is one configured bot with its client.
type Bot struct {
	config.Bot
	Client *bot.Bot
}

// New makes a client per configured bot. It makes no network call: start-up
// must not depend on Telegram being reachable.
func New(bots []config.Bot, serverURL string, httpClient *http.Client, logger *slog.Logger) (*Bots, error) {
	if httpClient == nil {
		httpClient = NewHTTPClient()
	}
	set := &Bots{byID: make(map[int64]*Bot, len(bots)), logger: logger}
	for _, cb := range bots {
		cb := cb
		c, err := bot.New(cb.Token,
			bot.WithSkipGetMe(),
			bot.WithServerURL(serverURL),
			bot.WithHTTPClient(time.Minute, bufferedBodies{httpClient}),
			bot.WithErrorsHandler(func(err error) {
				logger.Warn("bot api client", "bot", cb, "err", Redact(err, cb.Token))
			}),
		)
		if err != nil {
			return nil, fmt.Errorf("bot %s: %w", cb, err)
		}
		b := &Bot{Bot: cb, Client: c}
		set.list = append(set.list, b)
		set.byID[cb.ID] = b
	}
	return set, nil
}

// NewHTTPClient is the HTTP client New uses when given none.
func NewHTTPClient() *http.Client {
	// Every bot talks to the same host. Go's default transport keeps
	// two idle connections per host, so with more calls in flight than
	// that (replies go eight at a time) each extra connection was
	// closed after its call and dialed again, over TLS, for the next.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Timeout: 60 * time.Second, Transport: tr}
}

// ByID returns the bot with the given numeric id.
func (s *Bots) ByID(id int64) (*Bot, bool) { b, ok := s.byID[id]; return b, ok }

// All returns the bots in slot order.
func (s *Bots) All() []*Bot { return s.list }

// RetryAfter reports how long Telegram asked us to wait (a 429 answer).
func RetryAfter(err error) (time.Duration, bool) {
	var tm *bot.TooManyRequestsError
	if errors.As(err, &tm) {
		d := time.Duration(tm.RetryAfter) * time.Second
		if d <= 0 {
			d = time.Second
		}
		return d, true
	}
	return 0, false
}

// Permanent reports whether retrying the same call cannot help: Telegram
// rejected the request itself (400/403/404), e.g. a chat that is gone.
func Permanent(err error) bool {
	return errors.Is(err, bot.ErrorBadRequest) || errors.Is(err, bot.ErrorForbidden) ||
		errors.Is(err, bot.ErrorNotFound) || errors.Is(err, bot.ErrorUnauthorized)
}

// Redact removes a token from an error message (net/http errors carry the
// request URL, and Bot API URLs contain the token).
func Redact(err error, token string) error {
	if err == nil || token == "" {
		return err
	}
	return redacted{err: err, token: token}
}

type redacted struct {
	err   error
	token string
}

func (r redacted) Error() string {
	return strings.ReplaceAll(r.err.Error(), r.token, "<token>")
}
func (r redacted) Unwrap() error { return r.err }

// ErrTokenRefused is returned by CheckTokens for a token Telegram answers
// 401 to.
var ErrTokenRefused = errors.New("refused by Telegram")

// CheckTokens asks getMe for every bot until each has answered or one was
// refused: a refused token (401) is an ErrTokenRefused naming the slot,
// never the token. Network errors and 5xx are retried, with a pause that
// grows to a minute, until ctx ends, so an unreachable Telegram delays
// nothing but this check.
func (s *Bots) CheckTokens(ctx context.Context) error {
	for _, b := range s.list {
		for pause := time.Second; ; pause = min(2*pause, time.Minute) {
			_, err := b.Client.GetMe(ctx)
			if err == nil {
				break
			}
			if errors.Is(err, bot.ErrorUnauthorized) {
				return fmt.Errorf("bot token for slot b_%d was %w", b.Slot, ErrTokenRefused)
			}
			s.logger.Warn("getMe failed; trying again", "bot", b.Bot, "in", pause, "err", Redact(err, b.Token))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
		}
	}
	return nil
}
