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
// channel. A video sent as a document, or a file whose caption says
// #stream, is relayed over MTProto as a streamable video (its own job,
// jobs/relay.go). Anything else is copied by reference: nothing about it
// changes, and a copy is instant whatever the size.
func (w *UpdateWorker) deliverPrivateFile(ctx context.Context, b *botapi.Bot, m *models.Message) error {
	if m.From == nil || !w.d.Config.IsAdmin(m.From.ID) {
		return w.reply(ctx, b, m.Chat.ID, refusal)
	}
	channel := w.d.Config.ChannelID
	if channel == 0 {
		return w.reply(ctx, b, m.Chat.ID, "No target channel: set CHANNEL_ID.")
	}
	note := "Posted to the channel."
	if f, ok := wantsRelay(m); ok && w.d.MTProto != nil {
		err := w.d.checkUploadSize(f.size)
		if err == nil {
			return w.queueRelay(ctx, b, m, f)
		}
		// A bot cannot re-upload it, but a copy by reference still
		// delivers it, whatever its size.
		note = fmt.Sprintf("Posted to the channel as it came, not as a streamable video: %s.", err)
	}
	// Without MTProto (no API_ID/SESSION_KEY) a video is copied as it came.
	return w.copyPrivateFile(ctx, b, m, note)
}

// copyPrivateFile copies m into the channel by reference and answers
// note with a link to the post.
func (w *UpdateWorker) copyPrivateFile(ctx context.Context, b *botapi.Bot, m *models.Message, note string) error {
	channel := w.d.Config.ChannelID
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
		Text:            note,
		ReplyParameters: &models.ReplyParameters{MessageID: m.ID},
		ReplyMarkup:     LinkButton("Open post", MessageLink(channel, id.ID)),
	})
	return outcome(botapi.Redact(err, b.Token))
}
