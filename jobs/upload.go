package jobs

import (
	"context"
	"errors"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/mtproto"
)

// uploadSlice bounds one attempt of an upload job. River's stuck-job rescue
// horizon is one value for every job kind; a long upload therefore runs as a
// series of short attempts that each resume from the parts Telegram has
// acknowledged, and the horizon can stay short enough that a reply job lost
// in a crash is rescued within minutes.
const uploadSlice = 90 * time.Second

// UploadArgs uploads one file from the server's disk (Path) or from an
// http(s) URL to the target channel (/upload). The admin's status message
// shows progress; its id is set when the job is queued. The unique key is
// the command: bot, chat and message (a message id is unique per chat
// only).
type UploadArgs struct {
	BotID    int64  `json:"bot_id" river:"unique"`
	UpdateID int64  `json:"update_id" river:"unique"`
	ChatID   int64  `json:"chat_id" river:"unique"`
	StatusID int    `json:"status_id"`
	Path     string `json:"path,omitempty"`
	URL      string `json:"url,omitempty"`
	Caption  string `json:"caption"`
	// UploaderID is the bot whose MTProto session uploads and posts (the
	// least busy when queued); 0 means BotID. BotID keeps the chat.
	UploaderID int64 `json:"uploader_id,omitempty"`
}

// uploader is the bot that moves the bytes.
func (a UploadArgs) uploader() int64 {
	if a.UploaderID != 0 {
		return a.UploaderID
	}
	return a.BotID
}

// Kind names the job.
func (UploadArgs) Kind() string { return "upload" }

// InsertOpts: the uploads queue; unique per command so a retried update job
// does not queue the upload twice.
func (UploadArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueUploads, MaxAttempts: 20, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// UploadWorker runs uploads over MTProto.
type UploadWorker struct {
	river.WorkerDefaults[UploadArgs]
	d *Deps
}

// Timeout covers one slice plus the final send and edits.
func (w *UploadWorker) Timeout(*river.Job[UploadArgs]) time.Duration {
	return uploadSlice + 30*time.Second
}

// upload answers /upload <path> [caption]: the path is checked now, so a
// bad one is answered at once; the transfer itself is its own job.
func (w *UpdateWorker) upload(ctx context.Context, b *botapi.Bot, m *models.Message, args string) error {
	path, caption := splitPathArg(args)
	if path == "" {
		return w.reply(ctx, b, m.Chat.ID, "Usage: /upload &lt;path or http(s) URL&gt; [caption]")
	}
	if w.d.MTProto == nil {
		return w.reply(ctx, b, m.Chat.ID, "Uploads are not enabled: set API_ID, API_HASH and SESSION_KEY.")
	}
	if w.d.Config.ChannelID == 0 {
		return w.reply(ctx, b, m.Chat.ID, "No target channel: set CHANNEL_ID.")
	}
	args2 := UploadArgs{BotID: b.ID, UpdateID: int64(m.ID), ChatID: m.Chat.ID, Caption: caption}
	var queued string
	if isURL(path) {
		if err := w.d.checkURL(path); err != nil {
			return w.reply(ctx, b, m.Chat.ID, urlError(path, err))
		}
		args2.URL = path
		queued = fmt.Sprintf("Queued <code>%s</code>", html.EscapeString(redactURL(path)))
	} else {
		_, info, err := ResolveUploadPath(w.d.Config.UploadRoots, path)
		if err != nil {
			return w.reply(ctx, b, m.Chat.ID, pathError(path, err))
		}
		// A premium session that cannot be reached now is checked again
		// by the upload job.
		if err := w.d.checkUploadLimit(ctx, info.Size()); err != nil && !errors.Is(err, errPremiumUnavailable) {
			return w.reply(ctx, b, m.Chat.ID, fmt.Sprintf("Cannot upload <b>%s</b>: %s", html.EscapeString(filepath.Base(path)), html.EscapeString(err.Error())))
		}
		args2.Path = path
		queued = fmt.Sprintf("Queued <b>%s</b> (%s)", html.EscapeString(filepath.Base(path)), index.HumanSize(info.Size()))
	}
	args2.UploaderID = pickUploader(ctx, w.d, b.ID)
	if err := paced(ctx, w.d, b.ID, m.Chat.ID); err != nil {
		return err
	}
	status, err := b.Client.SendMessage(ctx, &bot.SendMessageParams{
		ChatID: m.Chat.ID, ParseMode: models.ParseModeHTML, Text: queued,
	})
	if err != nil {
		return outcome(fmt.Errorf("send status message: %w", botapi.Redact(err, b.Token)))
	}
	args2.StatusID = status.ID
	_, err = w.d.River.Insert(ctx, args2, nil)
	if err != nil {
		return fmt.Errorf("queue upload of %s: %w", path, err)
	}
	return nil
}

// splitPathArg takes a path (quoted when it has spaces) and the caption after it.
func splitPathArg(args string) (path, caption string) {
	args = strings.TrimSpace(args)
	if rest, ok := strings.CutPrefix(args, `"`); ok {
		if i := strings.Index(rest, `"`); i >= 0 {
			return rest[:i], strings.TrimSpace(rest[i+1:])
		}
	}
	path, caption, _ = strings.Cut(args, " ")
	return path, strings.TrimSpace(caption)
}

// pathError is the admin-facing text for a refused path; it names only what
// the admin typed.
func pathError(path string, err error) string {
	switch {
	case errors.Is(err, ErrFileNotFound):
		return fmt.Sprintf("File not found: <code>%s</code>", html.EscapeString(path))
	case errors.Is(err, ErrOutsideRoots), errors.Is(err, ErrNoRoots), errors.Is(err, ErrNotRegular):
		return fmt.Sprintf("Cannot upload <code>%s</code>: %s.", html.EscapeString(path), html.EscapeString(err.Error()))
	}
	return fmt.Sprintf("Cannot read <code>%s</code>.", html.EscapeString(path))
}

// Work runs one slice of an upload.
func (w *UploadWorker) Work(ctx context.Context, job *river.Job[UploadArgs]) error {
	a := job.Args
	b, ok := w.d.Bots.ByID(a.BotID)
	if !ok {
		return river.JobCancel(fmt.Errorf("bot %d is no longer configured", a.BotID))
	}
	status := NewProgressMessage(b, a.ChatID, a.StatusID, CancelButton(job.ID), 3*time.Second).WithBudget(w.d.budget())
	final := func(text string, markup models.ReplyMarkup) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := status.Finish(fctx, text, markup); err != nil {
			logOf(ctx, w.d).Warn("final upload status", "job_id", job.ID, "err", err)
		}
	}
	name := filepath.Base(a.Path)
	var (
		real string
		size int64
		src  *urlSource
	)
	if a.URL != "" {
		name = urlName(a.URL)
		var err error
		src, err = w.d.openURL(ctx, a.URL)
		if err != nil {
			if ctx.Err() == nil && permanentURLError(err) {
				final(urlError(a.URL, err), nil)
				return river.JobCancel(err)
			}
			final(fmt.Sprintf("Upload of <b>%s</b> failed (attempt %d of %d), retrying: %s", html.EscapeString(name),
				job.Attempt, job.MaxAttempts, html.EscapeString(err.Error())), CancelButton(job.ID))
			return fmt.Errorf("open %s: %w", redactURL(a.URL), err)
		}
		defer src.Close()
		name, size = src.Name, src.Size
	} else {
		r, info, err := ResolveUploadPath(w.d.Config.UploadRoots, a.Path)
		if err != nil {
			final(pathError(a.Path, err), nil)
			return river.JobCancel(err)
		}
		real, size = r, info.Size()
	}
	if err := w.d.checkUploadLimit(ctx, size); err != nil && !errors.Is(err, errPremiumUnavailable) {
		// Before any part is sent.
		final(fmt.Sprintf("Cannot upload <b>%s</b>: %s", html.EscapeString(name), html.EscapeString(err.Error())), nil)
		return river.JobCancel(err)
	}
	// Over the bots' limit the premium user session uploads and posts.
	client, premium, err := w.d.MTProto.ForUpload(ctx, a.uploader(), size)
	if errors.Is(err, mtproto.ErrTooLarge) {
		final(fmt.Sprintf("Cannot upload <b>%s</b>: %s", html.EscapeString(name), html.EscapeString(err.Error())), nil)
		return river.JobCancel(err)
	}
	if err != nil {
		return fmt.Errorf("mtproto client: %w", err)
	}
	account := a.uploader()
	if premium {
		account = client.Self().ID
	}
	pool, err := client.Pool()
	if err != nil {
		return err
	}
	meter := w.d.Metrics.uploadMeter()
	up := mtproto.NewUploader(meter.invoker(pool), w.d.UploadState).WithThreads(w.d.Config.UploadThreads).WithBotID(account).WithPremium(premium).WithLogger(logOf(ctx, w.d))
	if err := up.CheckSize(size); err != nil {
		final(fmt.Sprintf("Cannot upload <b>%s</b>: %s", html.EscapeString(name), html.EscapeString(err.Error())), nil)
		return river.JobCancel(err)
	}
	peer, err := mtproto.ResolveChannel(ctx, client.API(), w.d.Config.ChannelID)
	if err != nil {
		return err
	}
	sliceCtx, cancel := context.WithTimeout(ctx, uploadSlice)
	defer cancel()
	editCtx, stopEdits := context.WithCancel(ctx)
	editsDone := make(chan struct{})
	go func() { status.Run(editCtx); close(editsDone) }()
	started := job.CreatedAt
	// Temporary files (the thumbnail) live in DATA_DIR and are removed by
	// DeliverFile once sent.
	tmp := filepath.Join(w.d.Config.DataDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		tmp = ""
	}
	key := fmt.Sprintf("upload/%d", job.ID)
	onProgress := func(p mtproto.Progress) {
		meter.progress(p, mtproto.PartSize)
		status.Set(FormatProgress(ProgressView{Verb: "Uploading", Name: name, Acked: p.Acked, Total: p.Total,
			Speed: p.Speed, ETA: p.ETA, Elapsed: time.Since(started)}))
	}
	snd := mtproto.NewSender(client.API(), w.d.UploadState).WithLogger(logOf(ctx, w.d))
	var msgID int
	if src != nil {
		// Straight from the URL into the pipeline: no video probe (it
		// reads a file on disk), the file goes as a document.
		msgID, err = mtproto.Deliver(sliceCtx, up, snd,
			mtproto.UploadRequest{Key: key, Name: name, Size: size, ReaderAt: src, OnProgress: onProgress},
			mtproto.Post{Peer: peer, Name: name, MimeType: mtproto.MimeByExt(name), Caption: a.Caption})
	} else {
		msgID, err = mtproto.DeliverFile(sliceCtx, up, snd, mtproto.FileRequest{
			Key: key, Path: real, Peer: peer, Caption: a.Caption, TempDir: tmp,
			AsVideo: strings.HasPrefix(mtproto.MimeByExt(name), "video/"), OnProgress: onProgress,
		})
	}
	stopEdits()
	<-editsDone
	flooded := a.uploader()
	if premium { // the user session's wait says nothing of the bot
		flooded = 0
	}
	return finishTransfer(ctx, w.d, transferEnd{
		job: job.JobRow, words: transferWords{"upload", "Uploaded", "uploading"}, key: key, name: name, size: size,
		msgID: msgID, err: err, slice: sliceCtx, started: started, floodBot: flooded, status: status, final: final,
	})
}
