package mtproto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// ErrStreamRestart is returned when Telegram forgot the parts of an upload
// read from a stream: it cannot be read again here, the job must start over.
var ErrStreamRestart = errors.New("uploaded parts expired and the source is a stream")

// ErrAlreadyPosted is returned when Telegram answers RANDOM_ID_DUPLICATE:
// an earlier attempt with this key's random_id was posted (the process died
// before recording its message id). The post exists; its id is unknown.
var ErrAlreadyPosted = errors.New("already posted (RANDOM_ID_DUPLICATE)")

// BotAPIChannelID converts a Bot API chat id (-100xxxxxxxxxx) to the MTProto
// channel id.
func BotAPIChannelID(chatID int64) (int64, error) {
	const base = -1000000000000
	if chatID >= base {
		return 0, fmt.Errorf("chat id %d is not a channel id (-100...)", chatID)
	}
	return base - chatID, nil
}

// ResolveChannel finds a channel's access hash from its Bot API id with
// channels.getChannels and access_hash 0, which Telegram accepts from bots
// that are members of the channel.
func ResolveChannel(ctx context.Context, api *tg.Client, chatID int64) (*tg.InputPeerChannel, error) {
	id, err := BotAPIChannelID(chatID)
	if err != nil {
		return nil, err
	}
	res, err := api.ChannelsGetChannels(ctx, []tg.InputChannelClass{&tg.InputChannel{ChannelID: id}})
	if err != nil {
		return nil, fmt.Errorf("resolve channel %d: %w", chatID, err)
	}
	for _, c := range res.GetChats() {
		if ch, ok := c.(*tg.Channel); ok && ch.ID == id {
			return &tg.InputPeerChannel{ChannelID: ch.ID, AccessHash: ch.AccessHash}, nil
		}
	}
	return nil, fmt.Errorf("resolve channel %d: not in getChannels answer (is the bot a member?)", chatID)
}

// VideoMeta is what Telegram needs to show a video as streamable.
type VideoMeta struct {
	Duration float64 // seconds
	Width    int
	Height   int
}

// Post is one message to send with an uploaded file.
type Post struct {
	// Key is the upload key; it keys the persisted random_id, so a retry
	// after a crash reuses it and Telegram posts once.
	Key      string
	Peer     tg.InputPeerClass
	File     tg.InputFileClass
	Name     string
	MimeType string
	Caption  string
	// Video, when set, sends the file as a streamable video.
	Video *VideoMeta
	// Thumb is an uploaded JPEG thumbnail (optional).
	Thumb tg.InputFileClass
}

// Sender posts uploaded files with messages.sendMedia, exactly once per key.
type Sender struct {
	api   *tg.Client
	store *StateStore
	log   *slog.Logger
	tries int
}

// NewSender returns a sender on api (the client's main connection) keeping
// random_ids in store.
func NewSender(api *tg.Client, store *StateStore) *Sender {
	return &Sender{api: api, store: store, log: slog.New(slog.DiscardHandler), tries: 5}
}

// WithLogger sets the logger.
func (s *Sender) WithLogger(l *slog.Logger) *Sender {
	c := *s
	if l != nil {
		c.log = l
	}
	return &c
}

// IsPartsInvalid reports whether err says Telegram no longer has (all) the
// parts of a file: the upload must start over.
func IsPartsInvalid(err error) bool {
	rpcErr, ok := tgerr.As(err)
	if !ok {
		return false
	}
	return rpcErr.IsType("FILE_PARTS_INVALID") ||
		(strings.HasPrefix(rpcErr.Type, "FILE_PART_") && strings.HasSuffix(rpcErr.Type, "_MISSING")) ||
		rpcErr.IsType("MD5_CHECKSUM_INVALID")
}

func (p Post) media() *tg.InputMediaUploadedDocument {
	m := &tg.InputMediaUploadedDocument{File: p.File, MimeType: p.MimeType}
	if m.MimeType == "" {
		m.MimeType = "application/octet-stream"
	}
	if p.Video != nil {
		m.Attributes = append(m.Attributes, &tg.DocumentAttributeVideo{
			SupportsStreaming: true, Duration: p.Video.Duration, W: p.Video.Width, H: p.Video.Height,
		})
		m.NosoundVideo = true // keep it a video even without an audio track
	} else {
		m.ForceFile = true
	}
	if p.Name != "" {
		m.Attributes = append(m.Attributes, &tg.DocumentAttributeFilename{FileName: p.Name})
	}
	if p.Thumb != nil {
		m.Thumb = p.Thumb
	}
	return m
}

// Send posts p and returns the channel message id. A key that was already
// posted returns its message id without sending; otherwise the random_id
// stored for the key (chosen and saved now if none) makes a retried send
// after a crash return the first post instead of a second one.
func (s *Sender) Send(ctx context.Context, p Post) (int, error) {
	if p.Key == "" || p.Peer == nil || p.File == nil {
		return 0, errors.New("send media: key, peer and file are required")
	}
	if st, ok, err := s.store.Load(ctx, p.Key); err != nil {
		return 0, fmt.Errorf("send media %q: %w", p.Key, err)
	} else if ok && st.MessageID != 0 {
		return st.MessageID, nil
	}
	randomID, err := s.store.EnsureRandomID(ctx, p.Key, randomInt64)
	if err != nil {
		return 0, fmt.Errorf("send media %q: %w", p.Key, err)
	}
	req := &tg.MessagesSendMediaRequest{Peer: p.Peer, Media: p.media(), Message: p.Caption, RandomID: randomID}
	var res tg.UpdatesClass
	for attempt := 1; ; attempt++ {
		res, err = s.api.MessagesSendMedia(ctx, req)
		if err == nil {
			break
		}
		if tgerr.Is(err, "RANDOM_ID_DUPLICATE") {
			return 0, fmt.Errorf("send media %q: %w", p.Key, ErrAlreadyPosted)
		}
		rpcErr, isRPC := tgerr.As(err)
		transient := !isRPC || rpcErr.Code >= 500
		if !transient || attempt >= s.tries || ctx.Err() != nil {
			return 0, fmt.Errorf("send media %q (attempt %d): %w", p.Key, attempt, err)
		}
		s.log.WarnContext(ctx, "sendMedia failed, retrying with the same random_id", "key", p.Key, "attempt", attempt, "err", err)
		select {
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		case <-ctx.Done():
			return 0, fmt.Errorf("send media %q: %w", p.Key, ctx.Err())
		}
	}
	msgID := messageIDFromUpdates(res, randomID)
	if msgID == 0 {
		return 0, fmt.Errorf("send media %q: no message id in answer %T", p.Key, res)
	}
	if err := s.store.MarkSent(ctx, p.Key, msgID); err != nil {
		return msgID, fmt.Errorf("send media %q: %w", p.Key, err)
	}
	return msgID, nil
}

func messageIDFromUpdates(u tg.UpdatesClass, randomID int64) int {
	var list []tg.UpdateClass
	switch u := u.(type) {
	case *tg.Updates:
		list = u.Updates
	case *tg.UpdatesCombined:
		list = u.Updates
	case *tg.UpdateShort:
		list = []tg.UpdateClass{u.Update}
	}
	fallback := 0
	for _, up := range list {
		switch up := up.(type) {
		case *tg.UpdateMessageID:
			if up.RandomID == randomID {
				return up.ID
			}
		case *tg.UpdateNewChannelMessage:
			if m, ok := up.Message.(*tg.Message); ok {
				fallback = m.ID
			}
		case *tg.UpdateNewMessage:
			if m, ok := up.Message.(*tg.Message); ok {
				fallback = m.ID
			}
		}
	}
	return fallback
}

// Deliver uploads req and posts it, the whole durable path: an upload that
// was already posted returns its message id; a resumed upload sends only
// missing parts; when Telegram has forgotten the parts (FILE_PARTS_INVALID,
// FILE_PART_N_MISSING) the file starts over automatically, keeping the
// random_id so the channel still gets exactly one post.
func Deliver(ctx context.Context, up *Uploader, snd *Sender, req UploadRequest, p Post) (int, error) {
	if up.store == nil || snd.store == nil {
		return 0, errors.New("deliver: uploader and sender need a state store")
	}
	if st, ok, err := snd.store.Load(ctx, req.Key); err != nil {
		return 0, fmt.Errorf("deliver %q: %w", req.Key, err)
	} else if ok && st.MessageID != 0 {
		return st.MessageID, nil
	}
	p.Key = req.Key
	if p.Name == "" {
		p.Name = req.Name
	}
	for attempt := 1; ; attempt++ {
		file, err := up.Upload(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("deliver %q: %w", req.Key, err)
		}
		p.File = file
		id, err := snd.Send(ctx, p)
		if err == nil {
			return id, nil
		}
		if !IsPartsInvalid(err) || attempt >= 2 {
			return 0, fmt.Errorf("deliver %q: %w", req.Key, err)
		}
		snd.log.WarnContext(ctx, "telegram forgot the uploaded parts, starting the file over", "key", req.Key, "err", err)
		if req.ReaderAt == nil {
			return 0, fmt.Errorf("deliver %q: %w", req.Key, ErrStreamRestart)
		}
		if err := up.store.Invalidate(ctx, req.Key); err != nil {
			return 0, fmt.Errorf("deliver %q: %w", req.Key, err)
		}
	}
}

// FileRequest is a file on disk to post (the /upload command's case).
type FileRequest struct {
	Key     string
	Path    string
	Peer    tg.InputPeerClass
	Caption string
	// AsVideo probes the file and sends it as a streamable video; a file
	// that cannot be probed goes as a document.
	AsVideo bool
	// TempDir receives the thumbnail (deleted after sending); default os.TempDir().
	TempDir    string
	OnProgress func(Progress)
}

// DeliverFile uploads and posts a file from disk, with video attributes and
// (when ffmpeg is installed) a thumbnail for videos.
func DeliverFile(ctx context.Context, up *Uploader, snd *Sender, fr FileRequest) (int, error) {
	f, err := os.Open(fr.Path)
	if err != nil {
		return 0, fmt.Errorf("deliver file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("deliver file: %w", err)
	}
	name := filepath.Base(fr.Path)
	p := Post{Peer: fr.Peer, Name: name, MimeType: MimeByExt(name), Caption: fr.Caption}
	if fr.AsVideo {
		meta, err := ProbeVideo(ctx, fr.Path)
		switch {
		case err == nil:
			p.Video = meta
		default:
			snd.log.InfoContext(ctx, "not sent as a video", "key", fr.Key, "reason", err)
		}
		if p.Video != nil {
			if thumb, err := uploadThumb(ctx, up, fr); err == nil {
				p.Thumb = thumb
			} else if !errors.Is(err, ErrNoFFmpeg) {
				snd.log.WarnContext(ctx, "no thumbnail", "key", fr.Key, "err", err)
			}
		}
	}
	return Deliver(ctx, up, snd, UploadRequest{Key: fr.Key, Name: name, Size: fi.Size(), ReaderAt: f, OnProgress: fr.OnProgress}, p)
}

func uploadThumb(ctx context.Context, up *Uploader, fr FileRequest) (tg.InputFileClass, error) {
	dir := fr.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	path, err := Thumbnail(ctx, fr.Path, dir)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read thumbnail: %w", err)
	}
	return up.Upload(ctx, UploadRequest{Key: fr.Key + ":thumb", Name: "thumb.jpg", Size: int64(len(data)), ReaderAt: bytes.NewReader(data)})
}
