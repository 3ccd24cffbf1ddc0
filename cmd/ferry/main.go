// Command ferry moves big files into Telegram and keeps an index of them.
//
//	ferry [serve]                   webhook (or polling) + workers in one process
//	ferry web                       HTTP only: webhook intake, health, metrics, River UI
//	ferry worker                    workers only (plus health and metrics)
//	ferry migrate                   apply River's and ferry's migrations and exit
//	ferry webhook {set,info,delete} register each bot's webhook with Telegram
//	ferry r2 sync                   copy local records, then every indexed file, to the R2 bucket
//	ferry login                     sign a (premium) user account in for files over 2000 MiB
//	ferry version                   the version and VCS revision
//	ferry <command> --help          what a command does; changes nothing
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/mtproto"
)

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(mtproto.GCPercent) // see mtproto.GCPercent
	}
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

const usage = `usage: ferry <command> [flags]

commands:
  serve            webhook (or long polling) and workers in one process (the default)
  web              HTTP only: the webhook intake, health, metrics, River UI
  worker           workers only (plus /healthz and /metrics)
  migrate          apply River's and ferry's migrations and exit
  webhook set      register PUBLIC_URL/tg/{bot id} with each bot's secret token
  webhook info     show what Telegram has registered for each bot
  webhook delete   remove each bot's webhook
  r2 sync          copy local records, then every indexed file, to the R2 bucket
  login            sign a (premium) user account in on the terminal, for files over 2000 MiB
  version          print the version and VCS revision
  help             this text

ferry <command> --help (or ferry help <command>) describes a command and changes nothing.`

// serverEnv is what the server commands read from the environment (and
// .env), for their --help: generated from config's struct tags.
func serverEnv() string { return "\n" + config.HelpText() }

// commandHelp is a command's --help; ok is false for an unknown command.
func commandHelp(name string) (help string, ok bool) {
	switch name {
	case "serve":
		return "usage: ferry serve\n\nRuns the webhook (or long polling) and the workers in one process: the\ndefault command. Migrates the database at start-up.\n" + serverEnv(), true
	case "web":
		return "usage: ferry web\n\nRuns HTTP only: the webhook intake, /healthz, /readyz, /metrics, the River\nUI. Jobs wait for a `ferry worker` (Postgres only: SQLite admits one process).\n" + serverEnv(), true
	case "worker":
		return "usage: ferry worker\n\nRuns the workers only, with /healthz and /metrics (Postgres only beside a\n`ferry web`: SQLite admits one process).\n" + serverEnv(), true
	case "migrate":
		return "usage: ferry migrate\n\nApplies River's and ferry's migrations to DATABASE_URL (or the embedded\ndatabase in DATA_DIR) and exits.", true
	case "webhook":
		return "usage: ferry webhook set [--max-connections N] | info | delete [--drop-pending]\n\nset     registers PUBLIC_URL/tg/{bot id} for every bot, with its secret token\n        derived from WEBHOOK_SECRET and --max-connections (1-100, default 40)\ninfo    shows what Telegram has registered (never the secret)\ndelete  removes every bot's webhook; --drop-pending also drops the updates\n        Telegram still holds", true
	case "r2":
		return "usage: ferry r2 sync\n\nCopies the records kept in DATA_DIR/r2 while no bucket was configured to the\nR2 bucket, then rewrites every indexed file there (create, or merge into an\nobject that exists). Needs R2_BUCKET and R2_ENDPOINT (or R2_ACCOUNT_ID).", true
	case "login":
		return loginHelp, true
	case "version":
		return "usage: ferry version\n\nPrints ferry's module version and the VCS revision it was built from.", true
	case "help":
		return usage, true
	}
	return "", false
}

// wantsHelp reports whether args ask for a command's help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if cmd == "-h" || cmd == "--help" || cmd == "-help" {
		cmd = "help"
	}
	help, known := commandHelp(cmd)
	if !known {
		return usageError{fmt.Sprintf("unknown command %q\n%s", cmd, usage)}
	}
	if cmd == "help" && len(args) > 0 { // ferry help <command>
		if help, known = commandHelp(args[0]); !known {
			return usageError{fmt.Sprintf("unknown command %q\n%s", args[0], usage)}
		}
	}
	if cmd == "help" || wantsHelp(args) {
		fmt.Fprintln(stdout, help)
		return nil
	}
	logger, err := newLogger(stderr)
	if err != nil {
		return err
	}
	switch cmd {
	case "serve", "web", "worker", "migrate", "version":
		if len(args) > 0 {
			return usageError{fmt.Sprintf("ferry %s takes no arguments, got %q\n%s", cmd, args, help)}
		}
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
	case "version":
		fmt.Fprintln(stdout, version())
		return nil
	case "webhook":
		if len(args) == 0 {
			return usageError{help}
		}
		return runWebhook(ctx, logger, stdout, args[0], args[1:])
	}
	if cmd == "login" {
		return runLogin(ctx, logger, os.Stdin, stdout, stderr, args)
	}
	return runR2(ctx, logger, stdout, args)
}

// version is the module version and VCS revision the binary was built
// from, as Go records them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "ferry (no build information)"
	}
	v := "ferry " + bi.Main.Version
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" (revision %s, %s%s)", rev, at, dirty)
	}
	return v + " " + bi.GoVersion
}

// newLogger is the process's log on w: LOG_LEVEL (debug, info, warn,
// error; default info) and LOG_FORMAT (text or json; default text on a
// terminal, JSON otherwise), from the environment or .env.
func newLogger(w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{ReplaceAttr: readableDurations}
	switch v := strings.ToLower(config.Getenv(".env", "LOG_LEVEL")); v {
	case "", "info":
		opts.Level = slog.LevelInfo
	case "debug":
		opts.Level = slog.LevelDebug
	case "warn":
		opts.Level = slog.LevelWarn
	case "error":
		opts.Level = slog.LevelError
	default:
		return nil, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", v)
	}
	switch v := strings.ToLower(config.Getenv(".env", "LOG_FORMAT")); v {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("LOG_FORMAT must be text or json, got %q", v)
	}
}

// readableDurations logs a time.Duration as "1.5s", not as nanoseconds.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
