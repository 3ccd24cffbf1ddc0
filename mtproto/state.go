package mtproto

import (
	"context"
	"errors"
	"fmt"
	"math/bits"

	"github.com/ferry-dev/ferry/db"
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
// the parts went to, how the file was cut, which parts Telegram
// acknowledged (Acked, a Bitmap), and the random_id/message id of its post.
type UploadState = db.UploadState

// StateStore persists UploadState in the database (table mtproto_uploads).
type StateStore struct {
	db db.Executor
}

// NewStateStore returns a store on d.
func NewStateStore(d db.Executor) *StateStore { return &StateStore{db: d} }

// Load returns the state for key, or ok=false when there is none.
func (s *StateStore) Load(ctx context.Context, key string) (st *UploadState, ok bool, err error) {
	row, err := s.db.UploadStateGet(ctx, key)
	if errors.Is(err, db.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return &row, true, nil
}

// Begin records a fresh attempt (new file id, no acked parts) for st.Key.
// A random_id already chosen for the key is kept: it has not produced a post
// (or MessageID would be set), and keeping it means a crash between
// choosing and using it can never yield two posts.
func (s *StateStore) Begin(ctx context.Context, st *UploadState) error {
	created, randomID, err := s.db.UploadStateBegin(ctx, st)
	if err != nil {
		return err
	}
	st.CreatedAt, st.RandomID = created, randomID
	return nil
}

// SaveAcked overwrites the acked bitmap of the attempt with fileID. The
// file_id guard keeps a late flush of an abandoned attempt from marking parts
// of the new one. Commit is asynchronous: losing the last few milliseconds on
// a database crash only costs re-sending those parts.
func (s *StateStore) SaveAcked(ctx context.Context, key string, fileID int64, acked Bitmap) error {
	return s.db.UploadStateSaveAcked(ctx, key, fileID, []byte(acked), acked.Count())
}

// EnsureRandomID returns the random_id of key's post, choosing and storing
// gen() first when none is stored yet. It is durable before it returns, so it
// runs before the first messages.sendMedia. A file that was not uploaded
// through the pipeline (e.g. a re-post by reference) gets a row that only
// carries the post.
func (s *StateStore) EnsureRandomID(ctx context.Context, key string, gen func() (int64, error)) (int64, error) {
	id, err := gen()
	if err != nil {
		return 0, fmt.Errorf("random_id for %q: %w", key, err)
	}
	return s.db.UploadStateEnsureRandomID(ctx, key, id)
}

// MarkSent records the channel message id of key's post.
func (s *StateStore) MarkSent(ctx context.Context, key string, messageID int) error {
	return s.db.UploadStateMarkSent(ctx, key, messageID)
}

// Delete, once the caller has recorded the result elsewhere, forgets key.
func (s *StateStore) Delete(ctx context.Context, key string) error {
	return s.db.UploadStateDelete(ctx, key)
}

// Invalidate makes the next Upload of key start over with a new file id
// (the random_id is kept).
func (s *StateStore) Invalidate(ctx context.Context, key string) error {
	return s.db.UploadStateInvalidate(ctx, key)
}
