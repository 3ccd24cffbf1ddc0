package telegramtest

import (
	"math"
	"time"

	"github.com/go-telegram/bot/models"
)

// Rate is N calls in any Per; N 0 is no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// Limits are the flood limits the server enforces on every bot, counting
// every call that sends or edits a message (sendMessage, sendDocument,
// sendVideo, sendAudio, sendAnimation, copyMessage, editMessageText):
// per private chat, per group, supergroup or channel, and per bot across
// all chats. A call over a limit fails with 429 and a retry_after that
// tells, in whole seconds rounded up (at least 1), when it would pass, as
// Telegram's does; refused calls do not count.
type Limits struct {
	Private Rate
	Group   Rate
	Bot     Rate
}

// TelegramLimits are Telegram's published limits (Bot API FAQ): one
// message a second into a private chat, 20 a minute into a group or
// channel, 30 a second overall. NewServer enforces them unless told
// otherwise.
func TelegramLimits() Limits {
	return Limits{Private: Rate{1, time.Second}, Group: Rate{20, time.Minute}, Bot: Rate{30, time.Second}}
}

// WithLimits enforces l instead of TelegramLimits (e.g. scaled down in
// time, 20 per 6 s, so a test of a minute's traffic takes six seconds).
func WithLimits(l Limits) Option { return func(c *config) { c.limits = l } }

// WithoutLimits enforces no flood limit: for tests that send more than
// Telegram would take and are not about pacing.
func WithoutLimits() Option { return func(c *config) { c.limits = Limits{} } }

// LimitRefusals returns the calls the server answered 429 because of its
// limits (not injected with FailNext), oldest first.
func (s *Server) LimitRefusals() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if c.ErrorCode == 429 && c.Injected == "" {
			out = append(out, c)
		}
	}
	return out
}

// botWide is the rateHistory key of a bot's calls in every chat.
const botWide = 0

// rateLimitLocked counts a send or edit of r's bot into cs against the
// limits, or refuses it with 429.
func (s *Server) rateLimitLocked(r *request, cs *chatState, _ bool) *apiError {
	l := s.cfg.limits
	chat := l.Group
	if cs.chat.Type == models.ChatTypePrivate {
		chat = l.Private
	}
	now := time.Now()
	hist := r.bot.rateHistory
	wait := max(over(hist, cs.chat.ID, chat, now), over(hist, botWide, l.Bot, now))
	if wait > 0 {
		return tooMany(max(1, int(math.Ceil(wait.Seconds()))))
	}
	if chat.N > 0 {
		hist[cs.chat.ID] = append(hist[cs.chat.ID], now)
	}
	if l.Bot.N > 0 {
		hist[botWide] = append(hist[botWide], now)
	}
	return nil
}

// over drops hist[key]'s calls older than r's window and returns how long
// until one more call would fit in it (0: it fits now).
func over(hist map[int64][]time.Time, key int64, r Rate, now time.Time) time.Duration {
	if r.N <= 0 || r.Per <= 0 {
		return 0
	}
	h := hist[key]
	i := 0
	for i < len(h) && now.Sub(h[i]) >= r.Per {
		i++
	}
	h = h[i:]
	hist[key] = h
	if len(h) < r.N {
		return 0
	}
	return h[len(h)-r.N].Add(r.Per).Sub(now)
}

// SetLimits changes the limits the server enforces from now on (Limits{}:
// none), for a test whose server another helper built.
func (s *Server) SetLimits(l Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.limits = l
}
