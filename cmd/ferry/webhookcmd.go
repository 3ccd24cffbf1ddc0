package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/webhook"
)

func runWebhook(ctx context.Context, logger *slog.Logger, stdout io.Writer, sub string, args []string) error {
	fs := flag.NewFlagSet("webhook "+sub, flag.ContinueOnError)
	maxConn := fs.Int("max-connections", 40, "setWebhook max_connections (1-100)")
	drop := fs.Bool("drop-pending", false, "delete: drop updates Telegram still holds")
	fs.SetOutput(io.Discard) // the usage error below says it all, once
	help, _ := commandHelp("webhook")
	if sub != "set" && sub != "info" && sub != "delete" {
		return usageError{fmt.Sprintf("unknown webhook command %q\n%s", sub, help)}
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error() + "\n" + help}
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if err := cfg.Check(config.NeedBots); err != nil {
		return err
	}
	bots, err := botapi.New(cfg.Bots, cfg.BotAPIURL, nil, logger)
	if err != nil {
		return err
	}
	switch sub {
	case "set":
		if *maxConn < 1 || *maxConn > 100 {
			return usageError{"--max-connections must be 1..100"}
		}
		if err := webhook.Set(ctx, cfg, bots, *maxConn); err != nil {
			return err
		}
		for _, b := range bots.All() {
			fmt.Fprintf(stdout, "b_%d %d: webhook set to %s\n", b.Slot, b.ID, webhook.URLFor(cfg, b.ID))
		}
	case "info":
		infos, err := webhook.Info(ctx, bots)
		if err != nil {
			return err
		}
		for _, b := range bots.All() {
			i := infos[b.ID]
			url := i.URL
			if url == "" {
				url = "(none)"
			}
			fmt.Fprintf(stdout, "b_%d %d: url=%s pending=%d max_connections=%d allowed_updates=%s",
				b.Slot, b.ID, url, i.PendingUpdateCount, i.MaxConnections, strings.Join(i.AllowedUpdates, ","))
			if i.LastErrorMessage != "" {
				fmt.Fprintf(stdout, " last_error=%q", i.LastErrorMessage)
			}
			fmt.Fprintln(stdout)
		}
	case "delete":
		if err := webhook.Delete(ctx, bots, *drop); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "webhooks deleted for %d bots\n", len(bots.All()))
	}
	return nil
}
