package jobs

import (
	"context"
	"fmt"
	"html"
	"strings"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/botapi"
)

// MessageLink is the t.me link of a message in a channel or supergroup
// (Bot API ids -100XXXXXXXXXX become t.me/c/XXXXXXXXXX/N).
func MessageLink(chatID int64, messageID int) string {
	s := fmt.Sprint(chatID)
	if short, ok := strings.CutPrefix(s, "-100"); ok {
		return fmt.Sprintf("https://t.me/c/%s/%d", short, messageID)
	}
	return ""
}

// LinkButton is a one-button keyboard opening url.
func LinkButton(label, url string) models.ReplyMarkup {
	if url == "" {
		return nil
	}
	return &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: label, URL: url}}}}
}

// deliverPrivateFile posts a file an admin sent privately to the target
// channel. Nothing about the file changes, so it is copied by reference:
// instant, whatever its size.
func (w *UpdateWorker) deliverPrivateFile(ctx context.Context, b *botapi.Bot, m *models.Message) error {
	if m.From == nil || !w.d.Config.IsAdmin(m.From.ID) {
		return w.reply(ctx, b, m.Chat.ID, refusal)
	}
	channel := w.d.Config.ChannelID
	if channel == 0 {
		return w.reply(ctx, b, m.Chat.ID, "No target channel: set CHANNEL_ID.")
	}
	if err := paced(ctx, w.d, b.ID, channel); err != nil {
		return err
	}
	id, err := b.Client.CopyMessage(ctx, &bot.CopyMessageParams{ChatID: channel, FromChatID: m.Chat.ID, MessageID: m.ID})
	if err = floodCheck(ctx, w.d, b.ID, channel, "copyMessage", err); err != nil {
		if botapi.Permanent(err) {
			// The reason (e.g. the bot is not an admin of the channel) is
			// Telegram's description, safe and useful to show.
			text := fmt.Sprintf("Could not post to the channel: %s", html.EscapeString(botapi.Redact(err, b.Token).Error()))
			if rerr := w.reply(ctx, b, m.Chat.ID, text); rerr != nil {
				return rerr
			}
		}
		return outcome(fmt.Errorf("copy message %d to channel: %w", m.ID, botapi.Redact(err, b.Token)))
	}
	if err := pacedAfter(ctx, w.d, b.ID, m.Chat.ID); err != nil {
		return err
	}
	_, err = b.Client.SendMessage(ctx, &bot.SendMessageParams{
		ChatID:          m.Chat.ID,
		Text:            "Posted to the channel.",
		ReplyParameters: &models.ReplyParameters{MessageID: m.ID},
		ReplyMarkup:     LinkButton("Open post", MessageLink(channel, id.ID)),
	})
	return outcome(botapi.Redact(err, b.Token))
}
