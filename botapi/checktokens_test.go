package botapi_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/telegramtest"
)

// CheckTokens rides out a Telegram that answers 502 (it asks again, with a
// growing pause) and stops at a token answered 401, naming its slot and
// never the token.
func TestCheckTokensRetriesThenRefuses(t *testing.T) {
	const good, refused = "700500:AAH-good-token-0123456789abcdefghijk", "700501:AAH-SECRETREFUSED-0123456789abcdefg"
	tg := telegramtest.NewServer(t)
	tg.AddBot(good)
	newBots := func(tokens string) *botapi.Bots {
		cfg, err := config.FromMap(map[string]string{"BOT_TOKENS": tokens})
		if err != nil {
			t.Fatal(err)
		}
		b, err := botapi.New(cfg.Bots, tg.URL(), nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tg.FailNext("getMe", 2, telegramtest.ServerError(502))
	start := time.Now()
	if err := newBots(good).CheckTokens(context.Background()); err != nil {
		t.Fatalf("after two 502s: %v", err)
	}
	if took, n := time.Since(start), len(tg.CallsTo("getMe")); n != 3 || took < 2900*time.Millisecond {
		t.Fatalf("%d getMe calls in %s, want 3 after pauses of 1 s and 2 s", n, took)
	}
	err := newBots(good + "," + refused).CheckTokens(context.Background())
	if !errors.Is(err, botapi.ErrTokenRefused) || err.Error() != "bot token for slot b_2 was refused by Telegram" ||
		strings.Contains(err.Error(), "SECRETREFUSED") {
		t.Fatalf("a refused token: %v", err)
	}
	// An unreachable Telegram keeps it trying until the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	tg.FailNext("getMe", 10, telegramtest.DropConnection())
	if err := newBots(good).CheckTokens(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unreachable: %v, want the context's end", err)
	}
}
