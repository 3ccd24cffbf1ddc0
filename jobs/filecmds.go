package jobs

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strings"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
)

// find answers /find <text> [page].
func (w *UpdateWorker) find(ctx context.Context, args string) (string, error) {
	if w.d.Index == nil {
		return "The file index is not enabled.", nil
	}
	text, page := args, 1
	if i := strings.LastIndex(args, " "); i > 0 {
		if _, err := fmt.Sscanf(args[i+1:], "%d", &page); err == nil && page > 0 {
			text = strings.TrimSpace(args[:i])
		} else {
			page = 1
		}
	}
	if text == "" {
		return "Usage: /find &lt;text&gt; [page]", nil
	}
	const pageSize = 10
	files, total, err := w.d.Index.Find(ctx, text, page-1, pageSize) // Find pages from 0
	if err != nil {
		return "", err
	}
	if total == 0 {
		return fmt.Sprintf("No file matches “%s”.", html.EscapeString(text)), nil
	}
	var sb strings.Builder
	pages := (total + pageSize - 1) / pageSize
	fmt.Fprintf(&sb, "<b>%d files</b> match “%s” (page %d of %d)\n\n", total, html.EscapeString(text), page, pages)
	for _, f := range files {
		fmt.Fprintf(&sb, "%s — %s\n<code>/get %s</code>\n", html.EscapeString(f.Name), index.HumanSize(f.Size), html.EscapeString(f.UniqueID))
	}
	if page < pages {
		fmt.Fprintf(&sb, "\nNext: <code>/find %s %d</code>", html.EscapeString(text), page+1)
	}
	return sb.String(), nil
}

// get answers /get <unique_id>: the file is sent to the admin by a bot that
// holds a file_id for it, least loaded first, failing over to the next. It
// returns "" once the file is sent (the file is the answer).
func (w *UpdateWorker) get(ctx context.Context, chatID int64, uniqueID string) (string, error) {
	if w.d.Index == nil || w.d.Senders == nil {
		return "The file index is not enabled.", nil
	}
	if uniqueID == "" {
		return "Usage: /get &lt;unique_id&gt;", nil
	}
	f, err := w.d.Index.GetFile(ctx, uniqueID)
	if errors.Is(err, db.ErrNotFound) {
		return fmt.Sprintf("No file %s in the index.", html.EscapeString(uniqueID)), nil
	}
	if err != nil {
		return "", err
	}
	holders, err := w.d.Senders.Holders(ctx, uniqueID)
	if err != nil {
		return "", err
	}
	_, err = w.d.Senders.SendTo(ctx, chatID, sendMethod(f.Type), holders, func(ctx context.Context, h botpool.Holder) error {
		b, ok := w.d.Bots.ByID(h.BotID)
		if !ok {
			return fmt.Errorf("bot %d is not configured here", h.BotID)
		}
		return botapi.Redact(sendFileID(ctx, b, chatID, f.Type, h.FileID, f.Caption), b.Token)
	})
	if wait, ok := botpool.AsWait(err); ok {
		return "", river.JobSnooze(wait)
	}
	if errors.Is(err, botpool.ErrNoHolder) {
		if d, ok := botapi.RetryAfter(err); ok {
			return "", river.JobSnooze(d)
		}
		return fmt.Sprintf("No bot could send %s right now.", html.EscapeString(f.Name)) + fileLink(w.d.Index, f), nil
	}
	if err != nil {
		return "", err
	}
	if l := fileLink(w.d.Index, f); l != "" {
		return strings.TrimPrefix(l, "\n\n"), nil
	}
	return "", nil
}

// fileLink is a fresh signed link to the file's page (which plays and
// downloads it), or "" when links are off.
func fileLink(ix *index.Indexer, f index.File) string {
	u := ix.SignedPageURL(f.UniqueID)
	if u == "" {
		return ""
	}
	return fmt.Sprintf("\n\n<a href=\"%s\">%s</a>: %s", html.EscapeString(u), index.ViewButtonLabel, html.EscapeString(f.Name))
}

// sendFileID sends a file by one bot's file_id with the method of its type.
func sendFileID(ctx context.Context, b *botapi.Bot, chatID int64, typ, fileID, caption string) error {
	in := &models.InputFileString{Data: fileID}
	var err error
	switch typ {
	case index.TypeVideo:
		_, err = b.Client.SendVideo(ctx, &bot.SendVideoParams{ChatID: chatID, Video: in, Caption: caption, SupportsStreaming: true})
	case index.TypeAudio:
		_, err = b.Client.SendAudio(ctx, &bot.SendAudioParams{ChatID: chatID, Audio: in, Caption: caption})
	case index.TypeAnimation:
		_, err = b.Client.SendAnimation(ctx, &bot.SendAnimationParams{ChatID: chatID, Animation: in, Caption: caption})
	default:
		_, err = b.Client.SendDocument(ctx, &bot.SendDocumentParams{ChatID: chatID, Document: in, Caption: caption})
	}
	return err
}
