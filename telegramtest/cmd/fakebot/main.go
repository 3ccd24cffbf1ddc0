// Command fakebot runs the telegramtest Bot API stand-in as its own
// process, so that a real ferry (make run, the image, the notebook) can be
// tried without Telegram: point BOT_API_URL at it and use one of its
// tokens. It prints one JSON line on stdout once it listens:
// {"url":"http://127.0.0.1:8081","tokens":["…"],"control":"http://127.0.0.1:8081/fakebot"}.
//
//	go run ./telegramtest/cmd/fakebot [-addr 127.0.0.1:8081] [-tokens ID:SECRET,...] [-start]
//
// Inject a message and read what the bot called (see
// telegramtest.Server.ControlHandler for every endpoint):
//
//	curl -X POST 'http://127.0.0.1:8081/fakebot/message?text=/start'
//	curl 'http://127.0.0.1:8081/fakebot/calls?method=sendMessage&min=1&timeout=30s'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/telegramtest"
)

// defaultToken passes ferry's token check (digits, ':', 30+ of [A-Za-z0-9_-]).
const defaultToken = "1234567890:fakebot-local-token-not-a-secret"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "fakebot:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakebot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address (port 0: any free port)")
	tokens := fs.String("tokens", defaultToken, "comma-separated bot tokens to register")
	start := fs.Bool("start", false, "once listening, queue a /start from user "+fmt.Sprint(telegramtest.DefaultUserID)+" for the first bot")
	noLimits := fs.Bool("no-limits", false, "do not enforce Telegram's flood limits on sends and edits (enforced by default: 429)")
	latency := fs.Duration("latency", 0, "delay every Bot API call by this much")
	dc := fs.Int("dc", 4, "data centre encoded in generated file_ids")
	verbose := fs.Bool("v", false, "log every Bot API call to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	// Local webhooks are plain http on any port: Telegram's https rule
	// would make `ferry webhook set` against a laptop impossible.
	opts := []telegramtest.Option{telegramtest.WithInsecureWebhooks(), telegramtest.WithDC(*dc), telegramtest.WithLatency(*latency)}
	if *noLimits {
		opts = append(opts, telegramtest.WithoutLimits())
	}
	var registered []string
	for _, t := range strings.Split(*tokens, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		idPart, _, ok := strings.Cut(t, ":")
		if id, err := strconv.ParseInt(idPart, 10, 64); !ok || err != nil || id <= 0 {
			return fmt.Errorf("token %d does not look like ID:SECRET", len(registered)+1)
		}
		registered = append(registered, t)
	}
	if len(registered) == 0 {
		return fmt.Errorf("no tokens given")
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv := telegramtest.Serve(l, logger, opts...)
	defer srv.Close()
	for _, t := range registered {
		srv.AddBot(t)
	}
	if *start { // before the line below, so that whoever reads it finds the update queued
		srv.PushMessage(registered[0], telegramtest.DefaultUserID, telegramtest.DefaultUserID, "/start")
	}
	line, err := json.Marshal(map[string]any{"url": srv.URL(), "tokens": registered, "control": srv.URL() + "/fakebot"})
	if err != nil {
		return fmt.Errorf("encode start line: %w", err)
	}
	fmt.Fprintln(stdout, string(line))
	if *verbose {
		go logCalls(ctx, srv, logger)
	}
	<-ctx.Done()
	logger.Info("fakebot stopping", "calls", len(srv.Calls()))
	return nil
}

// logCalls logs each call as it is recorded (method, bot, outcome; no token).
func logCalls(ctx context.Context, srv *telegramtest.Server, logger *slog.Logger) {
	seen := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		calls := srv.Calls()
		if len(calls) < seen { // Reset
			seen = 0
		}
		for _, c := range calls[seen:] {
			logger.Info("call", "bot", c.BotID, "method", c.Method, "status", c.HTTPStatus, "error", c.Description)
		}
		seen = len(calls)
	}
}
