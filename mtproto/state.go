package mtproto

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Bitmap is a set of part numbers, one bit per part, stored as bytea. It is
// how acknowledged parts survive a crash in a few hundred bytes per file.
type Bitmap []byte

// NewBitmap returns an empty bitmap for n parts.
func NewBitmap(n int) Bitmap { return make(Bitmap, (n+7)/8) }

// Has reports whether part i is set.
func (b Bitmap) Has(i int) bool { return i/8 < len(b) && b[i/8]&(1<<(uint(i)%8)) != 0 }

// Set marks part i.
func (b Bitmap) Set(i int) { b[i/8] |= 1 << (uint(i) % 8) }

// Count returns how many parts are set.
func (b Bitmap) Count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// UploadState is the durable record of one upload: which Telegram file id
// the parts went to, how the file was cut, which parts Telegram acknowledged,
// and the random_id/message id of its post.
type UploadState struct {
	Key        string
	BotID      int64
	FileID     int64
	Size       int64
	PartSize   int
	TotalParts int
	Big        bool
	Acked      Bitmap
	RandomID   int64 // 0 until chosen
	MessageID  int   // 0 until posted
	CreatedAt  time.Time
}

// StateStore persists UploadState in Postgres (table mtproto_uploads).
type StateStore struct {
	db *pgxpool.Pool
}

// NewStateStore returns a store on db.
func NewStateStore(db *pgxpool.Pool) *StateStore { return &StateStore{db: db} }

// Load returns the state for key, or ok=false when there is none.
func (s *StateStore) Load(ctx context.Context, key string) (st *UploadState, ok bool, err error) {
	st = &UploadState{Key: key}
	var randomID *int64
	var msgID *int32
	err = s.db.QueryRow(ctx, `
SELECT bot_id, file_id, size, part_size, total_parts, big, acked, random_id, message_id, created_at
FROM mtproto_uploads WHERE key = $1`, key).Scan(
		&st.BotID, &st.FileID, &st.Size, &st.PartSize, &st.TotalParts, &st.Big, (*[]byte)(&st.Acked), &randomID, &msgID, &st.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load upload state %q: %w", key, err)
	}
	if randomID != nil {
		st.RandomID = *randomID
	}
	if msgID != nil {
		st.MessageID = int(*msgID)
	}
	return st, true, nil
}

// Begin records a fresh attempt (new file id, no acked parts) for st.Key.
// A random_id already chosen for the key is kept: it has not produced a post
// (or MessageID would be set), and keeping it means a crash between
// choosing and using it can never yield two posts.
func (s *StateStore) Begin(ctx context.Context, st *UploadState) error {
	err := s.db.QueryRow(ctx, `
INSERT INTO mtproto_uploads (key, bot_id, file_id, size, part_size, total_parts, big, acked, acked_count, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, now(), now())
ON CONFLICT (key) DO UPDATE SET bot_id = EXCLUDED.bot_id, file_id = EXCLUDED.file_id, size = EXCLUDED.size,
  part_size = EXCLUDED.part_size, total_parts = EXCLUDED.total_parts, big = EXCLUDED.big,
  acked = EXCLUDED.acked, acked_count = 0, created_at = now(), updated_at = now()
RETURNING created_at, coalesce(random_id, 0)`,
		st.Key, st.BotID, st.FileID, st.Size, st.PartSize, st.TotalParts, st.Big, []byte(st.Acked)).Scan(&st.CreatedAt, &st.RandomID)
	if err != nil {
		return fmt.Errorf("begin upload state %q: %w", st.Key, err)
	}
	return nil
}

// SaveAcked overwrites the acked bitmap of the attempt with fileID. The
// file_id guard keeps a late flush of an abandoned attempt from marking parts
// of the new one. Commit is asynchronous: losing the last few milliseconds on
// a database crash only costs re-sending those parts.
func (s *StateStore) SaveAcked(ctx context.Context, key string, fileID int64, acked Bitmap) error {
	// One round trip: the flush sits on the upload's critical path.
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(`UPDATE mtproto_uploads SET acked = $3, acked_count = $4, updated_at = now()
WHERE key = $1 AND file_id = $2`, key, fileID, []byte(acked), acked.Count())
	b.Queue(`COMMIT`)
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save acked parts of %q: %w", key, err)
	}
	return nil
}

// EnsureRandomID returns the random_id of key's post, choosing and storing
// gen() first when none is stored yet. It is durable before it returns, so it
// runs before the first messages.sendMedia.
func (s *StateStore) EnsureRandomID(ctx context.Context, key string, gen func() (int64, error)) (int64, error) {
	id, err := gen()
	if err != nil {
		return 0, fmt.Errorf("random_id for %q: %w", key, err)
	}
	var got int64
	err = s.db.QueryRow(ctx, `UPDATE mtproto_uploads SET random_id = coalesce(random_id, $2), updated_at = now()
WHERE key = $1 RETURNING random_id`, key, id).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		// Sending a file that was not uploaded through the pipeline (e.g. a
		// re-post by reference): make a row that only carries the post.
		err = s.db.QueryRow(ctx, `
INSERT INTO mtproto_uploads (key, bot_id, file_id, size, part_size, total_parts, big, acked, random_id)
VALUES ($1, 0, 0, 0, 0, 0, false, ''::bytea, $2)
ON CONFLICT (key) DO UPDATE SET random_id = coalesce(mtproto_uploads.random_id, EXCLUDED.random_id)
RETURNING random_id`, key, id).Scan(&got)
	}
	if err != nil {
		return 0, fmt.Errorf("store random_id for %q: %w", key, err)
	}
	return got, nil
}

// MarkSent records the channel message id of key's post.
func (s *StateStore) MarkSent(ctx context.Context, key string, messageID int) error {
	if _, err := s.db.Exec(ctx, `UPDATE mtproto_uploads SET message_id = $2, updated_at = now() WHERE key = $1`, key, messageID); err != nil {
		return fmt.Errorf("mark %q sent as message %d: %w", key, messageID, err)
	}
	return nil
}

// Delete forgets key (after the caller has recorded the result elsewhere).
func (s *StateStore) Delete(ctx context.Context, key string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM mtproto_uploads WHERE key = $1`, key); err != nil {
		return fmt.Errorf("delete upload state %q: %w", key, err)
	}
	return nil
}

// Invalidate makes the next Upload of key start over with a new file id
// (the random_id is kept).
func (s *StateStore) Invalidate(ctx context.Context, key string) error {
	if _, err := s.db.Exec(ctx, `UPDATE mtproto_uploads SET file_id = 0, updated_at = now() WHERE key = $1`, key); err != nil {
		return fmt.Errorf("invalidate upload state %q: %w", key, err)
	}
	return nil
}
