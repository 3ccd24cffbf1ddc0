package index

import (
	"fmt"
	"math"
	"strings"

	"github.com/go-telegram/bot/models"
	"github.com/gotd/td/fileid"

	"github.com/ferry-dev/ferry/db"
)

// File types the index records, as stored in files.file_type and in the R2
// record's file_type.
const (
	TypeVideo     = "video"
	TypeAudio     = "audio"
	TypeDocument  = "document"
	TypeAnimation = "animation"
)

// Post is one bot's sighting of a file posted in a channel or group: what
// Index records. Slot is the bot's 1-based position in BOT_TOKENS (b_1 is
// slot 1); FileID is that bot's own file_id, which only that bot can use.
type Post = db.Post

// PostFromMessage extracts the file of a channel/group message as seen by
// the bot in slot with id botID. ok is false when the message carries no
// video, audio, document or animation, or was not posted in a channel or
// group (files sent to a bot privately are uploads, not index entries).
//
// An animation is taken before the document Telegram also attaches to it
// for old clients, so GIFs are indexed as "animation".
func PostFromMessage(slot int, botID int64, msg *models.Message) (Post, bool) {
	if msg == nil || slot < 1 {
		return Post{}, false
	}
	switch msg.Chat.Type {
	case models.ChatTypeChannel, models.ChatTypeGroup, models.ChatTypeSupergroup:
	default:
		return Post{}, false
	}
	p := Post{
		Slot:      slot,
		BotID:     botID,
		ChatID:    msg.Chat.ID,
		MessageID: int64(msg.ID),
		Caption:   msg.Caption,
	}
	switch {
	case msg.Video != nil:
		v := msg.Video
		p.Type, p.UniqueID, p.FileID = TypeVideo, v.FileUniqueID, v.FileID
		p.Name, p.Size, p.MimeType = v.FileName, v.FileSize, v.MimeType
		p.Duration, p.Width, p.Height = v.Duration, v.Width, v.Height
	case msg.Animation != nil:
		a := msg.Animation
		p.Type, p.UniqueID, p.FileID = TypeAnimation, a.FileUniqueID, a.FileID
		p.Name, p.Size, p.MimeType = a.FileName, a.FileSize, a.MimeType
		p.Duration, p.Width, p.Height = a.Duration, a.Width, a.Height
	case msg.Audio != nil:
		a := msg.Audio
		p.Type, p.UniqueID, p.FileID = TypeAudio, a.FileUniqueID, a.FileID
		p.Name, p.Size, p.MimeType = a.FileName, a.FileSize, a.MimeType
		p.Duration = a.Duration
		if p.Name == "" && a.Title != "" {
			p.Name = strings.TrimSpace(strings.TrimPrefix(a.Performer+" - "+a.Title, " - ")) + extFor(a.MimeType, ".mp3")
		}
	case msg.Document != nil:
		d := msg.Document
		p.Type, p.UniqueID, p.FileID = TypeDocument, d.FileUniqueID, d.FileID
		p.Name, p.Size, p.MimeType = d.FileName, d.FileSize, d.MimeType
	default:
		return Post{}, false
	}
	// Database text (Postgres) cannot hold NUL, which JSON can carry: one such name
	// would otherwise fail every batch it is in.
	for _, f := range []*string{&p.UniqueID, &p.FileID, &p.Name, &p.MimeType, &p.Caption} {
		*f = strings.ReplaceAll(*f, "\x00", "")
	}
	p.Duration, p.Width, p.Height = clampInt32(p.Duration), clampInt32(p.Width), clampInt32(p.Height)
	if p.UniqueID == "" || p.FileID == "" {
		return Post{}, false
	}
	if dc, err := DCFromFileID(p.FileID); err == nil {
		p.DC = dc
	}
	if p.Name == "" {
		// Telegram omits file_name for most videos; give the index and the
		// reply something to show and search.
		p.Name = fmt.Sprintf("%s_%d_%d%s", p.Type, chatShort(p.ChatID), p.MessageID, extFor(p.MimeType, defaultExt[p.Type]))
	}
	return p, true
}

// DCFromFileID decodes the data center number from a Bot API file_id (the
// same field Telegram's servers use to route downloads).
func DCFromFileID(fileID string) (int, error) {
	f, err := fileid.DecodeFileID(fileID)
	if err != nil {
		return 0, fmt.Errorf("decode file_id: %w", err)
	}
	return f.DC, nil
}

var defaultExt = map[string]string{
	TypeVideo:     ".mp4",
	TypeAnimation: ".mp4",
	TypeAudio:     ".mp3",
	TypeDocument:  "",
}

// extFor picks a file extension for a MIME type from a fixed table (the
// system's mime.types differs between machines, names must not).
func extFor(mime, fallback string) string {
	switch strings.ToLower(mime) {
	case "video/mp4":
		return ".mp4"
	case "video/x-matroska":
		return ".mkv"
	case "video/webm":
		return ".webm"
	case "video/quicktime":
		return ".mov"
	case "audio/mpeg", "audio/mp3":
		return ".mp3"
	case "audio/ogg":
		return ".ogg"
	case "audio/mp4", "audio/x-m4a", "audio/m4a":
		return ".m4a"
	case "audio/flac", "audio/x-flac":
		return ".flac"
	case "application/pdf":
		return ".pdf"
	case "application/zip":
		return ".zip"
	case "image/gif":
		return ".gif"
	}
	return fallback
}

// chatShort drops the -100 prefix of channel ids for shorter names.
func chatShort(id int64) int64 {
	if id < -1000000000000 {
		return -id - 1000000000000
	}
	if id < 0 {
		return -id
	}
	return id
}

// clampInt32 keeps a nonsense duration or dimension inside the integer
// column instead of wrapping around.
func clampInt32(v int) int { return max(min(v, math.MaxInt32), 0) }
