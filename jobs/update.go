package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
)

// UpdateWorker classifies one update and either answers it or hands it to the
// job kind that does the real work.
type UpdateWorker struct {
	river.WorkerDefaults[UpdateArgs]
	d *Deps
}

// Timeout bounds one attempt; replies are quick, slow work has its own jobs.
func (w *UpdateWorker) Timeout(*river.Job[UpdateArgs]) time.Duration { return updateJobTimeout }

// Kind of update, as the worker sees it.
type Kind string

// The kinds Classify tells apart.
const (
	KindCommand     Kind = "command"
	KindPrivateFile Kind = "private_file"
	KindChannelFile Kind = "channel_file"
	KindCallback    Kind = "callback"
	KindMembership  Kind = "membership"
	KindOther       Kind = "other"
)

// Classify says what an update is about. Media posted in channels and groups
// is indexed; media sent privately is a delivery request.
func Classify(u *models.Update) Kind {
	switch {
	case u.CallbackQuery != nil:
		return KindCallback
	case u.MyChatMember != nil:
		return KindMembership
	case u.ChannelPost != nil && hasMedia(u.ChannelPost):
		return KindChannelFile
	case u.Message != nil:
		m := u.Message
		if strings.HasPrefix(m.Text, "/") {
			return KindCommand
		}
		if hasMedia(m) {
			if m.Chat.Type == models.ChatTypePrivate {
				return KindPrivateFile
			}
			return KindChannelFile
		}
	}
	return KindOther
}

func hasMedia(m *models.Message) bool {
	return m.Document != nil || m.Video != nil || m.Audio != nil || m.Animation != nil
}

// Work runs one update.
func (w *UpdateWorker) Work(ctx context.Context, job *river.Job[UpdateArgs]) error {
	b, ok := w.d.Bots.ByID(job.Args.BotID)
	if !ok {
		// The bot was removed from the config after the update arrived.
		return river.JobCancel(fmt.Errorf("bot %d is no longer configured", job.Args.BotID))
	}
	var u models.Update
	if err := json.Unmarshal(job.Args.Update, &u); err != nil {
		return river.JobCancel(fmt.Errorf("decode update %d: %w", job.Args.UpdateID, err))
	}
	log := logOf(ctx, w.d).With("bot", b.Bot, "update_id", u.ID)
	ctx = context.WithValue(ctx, logKey{}, log) // every line below names the update too
	kind := Classify(&u)
	log.Debug("update", "kind", kind)
	switch kind {
	case KindCommand:
		return w.command(ctx, b, u.Message, job.Attempt == 1)
	case KindPrivateFile:
		return w.deliverPrivateFile(ctx, b, u.Message)
	case KindChannelFile:
		if u.ChannelPost != nil {
			return w.indexPost(ctx, b, u.ChannelPost)
		}
		return w.indexPost(ctx, b, u.Message)
	case KindCallback:
		return w.callback(ctx, b, u.CallbackQuery)
	case KindMembership:
		w.membership(log, u.MyChatMember)
	}
	return nil
}

// membership logs a change of the bot's status in a chat. Nothing acts on
// it: the index learns which bots see a channel from their sightings.
func (w *UpdateWorker) membership(log *slog.Logger, m *models.ChatMemberUpdated) {
	log.Debug("membership", "chat_id", m.Chat.ID, "chat_type", m.Chat.Type, "status", m.NewChatMember.Type)
}

// reply sends an HTML message from bot b.
func (w *UpdateWorker) reply(ctx context.Context, b *botapi.Bot, chatID int64, html string) error {
	if err := pacedAfter(ctx, w.d, b.ID, chatID); err != nil {
		return err
	}
	_, err := b.Client.SendMessage(ctx, &bot.SendMessageParams{
		ChatID:             chatID,
		Text:               html,
		ParseMode:          models.ParseModeHTML,
		LinkPreviewOptions: &models.LinkPreviewOptions{IsDisabled: bot.True()},
	})
	if err != nil {
		err = floodCheck(ctx, w.d, b.ID, chatID, "sendMessage", err)
		return outcome(fmt.Errorf("send message to chat %d: %w", chatID, botapi.Redact(err, b.Token)))
	}
	return nil
}

// callback answers an inline button. "cancel:<job id>" cancels a running
// upload; River cancels the job's context, and its worker cleans up.
func (w *UpdateWorker) callback(ctx context.Context, b *botapi.Bot, q *models.CallbackQuery) error {
	answer := ""
	if idText, ok := strings.CutPrefix(q.Data, "cancel:"); ok {
		switch id, err := strconv.ParseInt(idText, 10, 64); {
		case err != nil:
			answer = "Unknown button."
		case !w.d.Config.IsAdmin(q.From.ID):
			answer = refusal
		default:
			answer = fmt.Sprintf("Cancelling job #%d…", id)
			if _, err := w.d.River.JobCancel(ctx, id); errors.Is(err, rivertype.ErrNotFound) {
				answer = fmt.Sprintf("No job #%d.", id)
			} else if err != nil {
				return fmt.Errorf("cancel job %d: %w", id, err)
			}
		}
	}
	_, err := b.Client.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: q.ID, Text: answer})
	return outcome(err)
}
