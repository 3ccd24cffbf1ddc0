package webhook

import (
	"context"
	"fmt"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/config"
)

// Set registers every bot's webhook at PUBLIC_URL/tg/{bot} with its derived
// secret token.
func Set(ctx context.Context, cfg *config.Config, bots *botapi.Bots, maxConnections int) error {
	if err := cfg.Check(config.NeedBots, config.NeedPublicURL, config.NeedWebhookSecret); err != nil {
		return err
	}
	for _, b := range bots.All() {
		_, err := b.Client.SetWebhook(ctx, &bot.SetWebhookParams{
			URL:            URLFor(cfg, b.ID),
			SecretToken:    cfg.WebhookSecretToken(b.ID),
			AllowedUpdates: AllowedUpdates(),
			MaxConnections: maxConnections,
		})
		if err != nil {
			return fmt.Errorf("setWebhook for bot %s: %w", b.Bot, botapi.Redact(err, b.Token))
		}
	}
	return nil
}

// URLFor is the webhook URL of one bot.
func URLFor(cfg *config.Config, botID int64) string {
	return fmt.Sprintf("%s/tg/%d", cfg.PublicURL, botID)
}

// Info returns each bot's webhook state as Telegram reports it.
func Info(ctx context.Context, bots *botapi.Bots) (map[int64]*models.WebhookInfo, error) {
	out := map[int64]*models.WebhookInfo{}
	for _, b := range bots.All() {
		info, err := b.Client.GetWebhookInfo(ctx)
		if err != nil {
			return nil, fmt.Errorf("getWebhookInfo for bot %s: %w", b.Bot, botapi.Redact(err, b.Token))
		}
		out[b.ID] = info
	}
	return out, nil
}

// Delete, for every bot, removes its webhook; pending updates are dropped
// only when asked.
func Delete(ctx context.Context, bots *botapi.Bots, dropPending bool) error {
	for _, b := range bots.All() {
		if _, err := b.Client.DeleteWebhook(ctx, &bot.DeleteWebhookParams{DropPendingUpdates: dropPending}); err != nil {
			return fmt.Errorf("deleteWebhook for bot %s: %w", b.Bot, botapi.Redact(err, b.Token))
		}
	}
	return nil
}
