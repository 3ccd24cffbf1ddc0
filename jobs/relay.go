package jobs

import (
	"context"
	"errors"
	"fmt"
	"html"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/mtproto"
)

// RelayArgs re-uploads a file an admin sent the bot privately as a
// streamable video: downloaded over MTProto from the file_id's own location
// and uploaded in one pipeline, by the bot that received it (a file_id
// belongs to one bot). It is the upload job's sibling: the same queue,
// slices, resume state (key "relay/<job id>"), lease and Cancel button.
// The unique key is the message: bot, chat and message id.
type RelayArgs struct {
	BotID     int64  `json:"bot_id" river:"unique"`
	ChatID    int64  `json:"chat_id" river:"unique"`
	MessageID int    `json:"message_id" river:"unique"`
	StatusID  int    `json:"status_id"`
	FileID    string `json:"file_id"`
	Size      int64  `json:"size"`
	Name      string `json:"name"`
	MimeType  string `json:"mime_type"`
	Caption   string `json:"caption"`
}

// Kind names the job.
func (RelayArgs) Kind() string { return "relay" }

// InsertOpts: the uploads queue, unique per message.
func (RelayArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueUploads, MaxAttempts: 20, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// RelayWorker runs relays.
type RelayWorker struct {
	river.WorkerDefaults[RelayArgs]
	d *Deps
}

// Timeout covers one slice plus the probe, the final send and edits.
func (w *RelayWorker) Timeout(*river.Job[RelayArgs]) time.Duration {
	return uploadSlice + 60*time.Second
}

// videoExt reports whether a document named so is relayed as a video.
func videoExt(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".mp4", ".mkv", ".mov", ".webm", ".m4v":
		return true
	}
	return false
}

// streamTag in a caption asks for a streamable re-upload.
var streamTag = regexp.MustCompile(`(?i)(^|\s)#stream\b`)

// relayFile is what of a private message a relay needs.
type relayFile struct {
	fileID, name, mime string
	size               int64
}

// wantsRelay says whether a private message's file is re-uploaded as a
// streamable video: a video sent as a document (by MIME type or name), or
// a video or document whose caption has #stream. Anything else is copied.
func wantsRelay(m *models.Message) (relayFile, bool) {
	tagged := streamTag.MatchString(m.Caption)
	switch {
	case m.Document != nil:
		d := m.Document
		f := relayFile{fileID: d.FileID, name: d.FileName, mime: d.MimeType, size: d.FileSize}
		if f.name == "" {
			f.name = "video" + extFor(d.MimeType)
		}
		video := strings.HasPrefix(strings.ToLower(d.MimeType), "video/") || videoExt(d.FileName)
		return f, video || tagged
	case m.Video != nil && tagged:
		v := m.Video
		f := relayFile{fileID: v.FileID, name: v.FileName, mime: v.MimeType, size: v.FileSize}
		if f.name == "" {
			f.name = "video" + extFor(v.MimeType)
		}
		return f, true
	}
	return relayFile{}, false
}

func extFor(mime string) string {
	switch mime {
	case "video/quicktime":
		return ".mov"
	case "video/x-matroska":
		return ".mkv"
	case "video/webm":
		return ".webm"
	}
	return ".mp4"
}

// relayCaption is the caption without the #stream tag.
func relayCaption(c string) string {
	return strings.TrimSpace(streamTag.ReplaceAllString(c, "$1"))
}

// queueRelay answers a private video with a status message and queues its
// relay. Its size was checked by the caller: a file over the bots' limit is
// copied as it came instead.
func (w *UpdateWorker) queueRelay(ctx context.Context, b *botapi.Bot, m *models.Message, f relayFile) error {
	if err := paced(ctx, w.d, b.ID, m.Chat.ID); err != nil {
		return err
	}
	status, err := b.Client.SendMessage(ctx, &bot.SendMessageParams{
		ChatID: m.Chat.ID, ParseMode: models.ParseModeHTML, ReplyParameters: &models.ReplyParameters{MessageID: m.ID},
		Text: fmt.Sprintf("Queued <b>%s</b> (%s) for the channel as a streamable video.", html.EscapeString(f.name), index.HumanSize(f.size)),
	})
	if err != nil {
		return outcome(fmt.Errorf("send relay status: %w", botapi.Redact(err, b.Token)))
	}
	args := RelayArgs{BotID: b.ID, ChatID: m.Chat.ID, MessageID: m.ID, StatusID: status.ID, FileID: f.fileID,
		Size: f.size, Name: f.name, MimeType: f.mime, Caption: relayCaption(m.Caption)}
	if _, err := w.d.River.Insert(ctx, args, nil); err != nil {
		return fmt.Errorf("queue relay of message %d: %w", m.ID, err)
	}
	return nil
}

// Work runs one slice of a relay.
func (w *RelayWorker) Work(ctx context.Context, job *river.Job[RelayArgs]) error {
	a := job.Args
	b, ok := w.d.Bots.ByID(a.BotID)
	if !ok {
		return river.JobCancel(fmt.Errorf("bot %d is no longer configured", a.BotID))
	}
	if w.d.MTProto == nil {
		return river.JobCancel(errors.New("MTProto is not configured"))
	}
	status := NewProgressMessage(b, a.ChatID, a.StatusID, CancelButton(job.ID), 3*time.Second).WithBudget(w.d.budget())
	final := func(text string, markup models.ReplyMarkup) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := status.Finish(fctx, text, markup); err != nil {
			logOf(ctx, w.d).Warn("final relay status", "job_id", job.ID, "err", err)
		}
	}
	name := a.Name
	client, err := w.d.MTProto.Client(ctx, a.BotID)
	if err != nil {
		return fmt.Errorf("mtproto client: %w", err)
	}
	pool, err := client.Pool()
	if err != nil {
		return err
	}
	meter := w.d.Metrics.uploadMeter()
	up := mtproto.NewUploader(meter.invoker(pool), w.d.UploadState).WithThreads(w.d.Config.UploadThreads).
		WithBotID(a.BotID).WithLogger(logOf(ctx, w.d))
	peer, err := mtproto.ResolveChannel(ctx, client.API(), w.d.Config.ChannelID)
	if err != nil {
		return err
	}
	src, err := mtproto.FileIDSource(ctx, client.API(), a.FileID, a.Size, a.ChatID, a.MessageID)
	if err != nil && a.ChatID > 0 {
		// A private chat's source is only the decoded file_id: it will not decode better later.
		final(fmt.Sprintf("Cannot relay <b>%s</b>: %s", html.EscapeString(name), html.EscapeString(err.Error())), nil)
		return river.JobCancel(err)
	} else if err != nil {
		return err
	}
	dl, dlPool, err := mtproto.NewRelayDownloader(client, w.d.Config.UploadThreads)
	if err != nil {
		return err
	}
	defer dlPool.Close()
	sliceCtx, cancel := context.WithTimeout(ctx, uploadSlice)
	defer cancel()
	editCtx, stopEdits := context.WithCancel(ctx)
	editsDone := make(chan struct{})
	go func() { status.Run(editCtx); close(editsDone) }()
	started := job.CreatedAt
	status.Set(fmt.Sprintf("Reading <b>%s</b> from Telegram: its format, size and a thumbnail…", html.EscapeString(name)))
	key := fmt.Sprintf("relay/%d", job.ID)
	rr := mtproto.RelayRequest{
		Key: key, Source: src, Name: name, Peer: peer, Caption: a.Caption, MimeType: a.MimeType, AsVideo: true,
		OnReady: func(info mtproto.RelayInfo) {
			status.Set(FormatProgress(ProgressView{Verb: "Relaying", Name: name, Total: info.Size, Elapsed: time.Since(started)}))
		},
		OnProgress: func(p mtproto.RelayProgress) {
			meter.progress(p.Progress, mtproto.PartSize)
			status.Set(FormatProgress(ProgressView{Verb: "Relaying", Name: name, Acked: p.Acked, Total: p.Total,
				Speed: p.Speed, ETA: p.ETA, Elapsed: time.Since(started)}) +
				fmt.Sprintf("\nDownloaded %s · uploaded %s", index.HumanSize(p.Downloaded), index.HumanSize(p.Acked)))
		},
	}
	snd := mtproto.NewSender(client.API(), w.d.UploadState).WithLogger(logOf(ctx, w.d))
	msgID, info, err := mtproto.DeliverRelay(sliceCtx, up, snd, dl, rr)
	stopEdits()
	<-editsDone
	as := " as a streamable video"
	if info.NotVideo != nil {
		as = fmt.Sprintf(" as a document (not a video: %s)", html.EscapeString(info.NotVideo.Error()))
	}
	return finishTransfer(ctx, w.d, transferEnd{
		job: job.JobRow, words: transferWords{"relay", "Relayed", "relaying"}, key: key, name: name,
		size: max(info.Size, a.Size), as: as, msgID: msgID, err: err, slice: sliceCtx, started: started,
		floodBot: a.BotID, status: status, final: final,
	})
}
