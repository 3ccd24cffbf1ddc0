// Command ferry moves big files into Telegram and keeps an index of them.
//
//	ferry [serve]                   webhook (or polling) + workers in one process
//	ferry web                       HTTP only: webhook intake, health, metrics, River UI
//	ferry worker                    workers only (plus health and metrics)
//	ferry migrate                   apply River's and ferry's migrations and exit
//	ferry webhook {set,info,delete} register each bot's webhook with Telegram
//	ferry r2 sync                   rewrite every indexed file to the R2 bucket
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

const usage = `usage: ferry [serve|web|worker|migrate|webhook set|webhook info|webhook delete|r2 sync]`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	logger := newLogger(stderr)
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServer(ctx, logger, modeServe)
	case "web":
		return runServer(ctx, logger, modeWeb)
	case "worker":
		return runServer(ctx, logger, modeWorker)
	case "migrate":
		return runMigrate(ctx, logger)
	case "webhook":
		if len(args) == 0 {
			return usageError{usage}
		}
		return runWebhook(ctx, logger, stdout, args[0], args[1:])
	case "r2":
		return runR2(ctx, logger, stdout, args)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q\n%s", cmd, usage)}
}

func newLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(os.Getenv("LOG_LEVEL")) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
