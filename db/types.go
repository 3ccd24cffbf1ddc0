package db

import "time"

// Post is one bot's sighting of a file posted in a channel or group. Slot
// is the bot's 1-based position in BOT_TOKENS; FileID is that bot's own
// file_id. (Package index calls it index.Post.)
type Post struct {
	Slot      int
	BotID     int64
	ChatID    int64
	MessageID int64

	UniqueID string // file_unique_id, the same for every bot
	FileID   string // this bot's file_id
	Type     string // video, audio, document or animation
	Name     string
	Size     int64
	MimeType string
	DC       int // data center holding the file (0 when unknown)
	Caption  string

	Duration int // seconds; video, audio, animation
	Width    int // video, animation
	Height   int // video, animation
}

// PostRef names a channel post.
type PostRef struct {
	ChatID    int64 `json:"chat_id"`
	MessageID int64 `json:"message_id"`
}

// File is a files row: a file's metadata as first seen.
type File struct {
	UniqueID  string
	Name      string
	Size      int64
	MimeType  string
	Type      string
	DC        int
	Caption   string
	Duration  int
	Width     int
	Height    int
	ChatID    int64 // first post's chat
	MessageID int64 // first post's message
	// Origin is "local" (first seen by this deployment) or "r2" (another
	// deployment sharing the bucket had it first).
	Origin    string
	CreatedAt time.Time
}

// UpdateKey names an update: the bot that received it and its update_id.
type UpdateKey struct{ BotID, UpdateID int64 }

// UpdateAcceptManyParams is one commit of the intake.
type UpdateAcceptManyParams struct {
	// Counter is the committing flusher's own update_counts row key.
	Counter int32
	// Updates become jobs: received_updates guards them against
	// re-delivery. In (bot, update) order.
	Updates []UpdateKey
	// Sightings are channel-file sightings (BotID: the bot that received
	// it; Slot is not stored).
	Sightings []Post
	// DrainKind is the job kind that drains sightings; with Sightings,
	// the result tells whether one is waiting or running.
	DrainKind string
}

// UpdateAcceptManyResult is what a commit of the intake found.
type UpdateAcceptManyResult struct {
	// New are the Updates not seen before: insert their jobs.
	New []UpdateKey
	// DrainQueued: a DrainKind job is waiting or running (it will take
	// the sightings being committed), so no other is needed.
	DrainQueued bool
}

// SightingFailure is a sighting the index refused, and why.
type SightingFailure struct {
	Post     Post
	Error    string
	FailedAt time.Time
}

// PostClaimManyParams are claims to insert, one element per post.
type PostClaimManyParams struct {
	ChatID, MessageID []int64
	UniqueID          []string
	Slot              []int32
	BotID             []int64
}

// PostClaim is a claim PostClaimMany made.
type PostClaim struct {
	PostRef
	Slot     int
	Existing bool
}

// FileInsertManyParams are files rows to insert, one element per file, and
// the posts claimed as new whose decision the insert settles.
type FileInsertManyParams struct {
	UniqueID, Name, MimeType, Type, Caption, Origin []string
	Size, ChatID, MessageID                         []int64
	DC, Duration, Width, Height                     []int32
	NewChatID, NewMessageID                         []int64
}

// FileBotIDUpsertManyParams are file_ids to write, one element per
// sighting, and (CreatedUniqueID, CreatedSlot, CreatedFileID) the file_ids
// already in an R2 object the caller created.
type FileBotIDUpsertManyParams struct {
	UniqueID, FileID  []string
	Slot              []int32
	BotID             []int64
	ChatID, MessageID []int64
	CreatedUniqueID   []string
	CreatedSlot       []int32
	CreatedFileID     []string
}

// PostOutcomeManyParams are (post, file) pairs, one element each.
type PostOutcomeManyParams struct {
	ChatID, MessageID []int64
	UniqueID          []string
}

// PostOutcome is a post's claim and its file's row.
type PostOutcome struct {
	PostRef
	File          File
	Existing      bool
	ClaimedBySlot int
	// ReplyMessageID is the reply's message once recorded as sent (0
	// before; PostPendingReplyMany leaves it 0).
	ReplyMessageID int64
}

// PostReplied is a post whose reply was sent, and the reply's message.
type PostReplied struct {
	PostRef
	ReplyMessageID int64
}

// FileFindParams is one page of a name search.
type FileFindParams struct {
	Words  []string // lower-cased; each must occur in the name
	Limit  int
	Offset int
}

// FileSync is a file as an R2 write needs it.
type FileSync struct {
	File    File
	FileIDs map[int]string // by slot
	Gen     int64          // r2_pending generation; 0 when nothing is pending
}

// R2Written is a file written to R2 with the generation read before.
type R2Written struct {
	UniqueID string
	Gen      int64
}

// Holder is a bot holding its own file_id for a file.
type Holder struct {
	Slot           int
	BotID          int64
	FileID         string
	InFlight       int
	FloodWaitUntil time.Time // zero when not in flood wait
	// ChatID and MessageID are the post this bot saw the file in: where
	// its own file reference is refreshed from.
	ChatID    int64
	MessageID int64
}

// BotSendReleaseParams ends a send lease.
type BotSendReleaseParams struct {
	BotID int64
	Lease int64 // 0: none was taken
	OK    bool
	// FloodWaitUntil, when set, puts the bot in flood wait until then.
	FloodWaitUntil time.Time
}

// BotLoad is a bot's send counters.
type BotLoad struct {
	BotID          int64
	Sends          int64
	Failures       int64
	FloodWaitUntil time.Time // zero when none was set
	LastUsedAt     time.Time // zero when never used
}

// Stats are the counts /stats shows of ferry's tables.
type Stats struct {
	Updates, UpdatesDay int64 // accepted, in all and in the current hour and the 23 before
	Files               int64
	PostsReplied        int64 // channel posts whose reply is recorded
	R2Pending           int64 // files whose record waits for a write
	SightingsWaiting    int64
	SightingsFailed     int64
}

// UploadState is an upload's resume state (mtproto_uploads).
type UploadState struct {
	Key        string
	BotID      int64
	FileID     int64
	Size       int64
	PartSize   int
	TotalParts int
	Big        bool
	Acked      []byte // bitmap, one bit per part
	RandomID   int64  // 0 until chosen
	MessageID  int    // 0 until posted
	CreatedAt  time.Time
}

// Session is a bot's MTProto session, sealed by its caller.
type Session struct {
	BotID int64
	Nonce []byte
	Data  []byte
}
