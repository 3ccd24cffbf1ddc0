package r2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Local keeps the records in a directory when no bucket is configured, so
// the index still has them: the same bytes the S3 store PUTs, at the same
// key layout, {dir}/{folder}/{unique_id}.json. `ferry r2 sync` later copies
// them to a real bucket with CopyLocal.
//
// Readers never see a partial file: every write goes to a temp file in the
// same directory, is fsynced, and is then linked (Create) or renamed (Merge)
// into place, and the directory is fsynced after, because the index treats a
// created record as written.
//
// Create is race-free across processes (link fails if the name exists), but
// Merge's read-merge-write is serialised only by a mutex in this Local: one
// process must own the directory. ferry keeps it under DATA_DIR, which the
// embedded database's lock already gives to a single process.
type Local struct {
	dir    string // the folder's directory: the records are dir/{id}.json
	folder string // the key prefix, as Store's, for Key
	mu     sync.Mutex
}

// tempPrefix starts every temp file's name; Each skips such names (and no
// checked id can start with a dot).
const tempPrefix = ".tmp-"

// NewLocal creates (if needed) dir/folder and returns a Local writing there.
// folder follows Store's rules: "" is DefaultFolder, slashes around it are
// trimmed; it may not climb out of dir.
func NewLocal(dir, folder string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("r2: local: empty directory")
	}
	if folder == "" {
		folder = DefaultFolder
	}
	folder = strings.Trim(folder, "/")
	path := dir
	if folder != "" {
		if !filepath.IsLocal(filepath.FromSlash(folder)) {
			return nil, fmt.Errorf("r2: local: folder %q escapes the directory", folder)
		}
		path = filepath.Join(dir, filepath.FromSlash(folder))
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("r2: local: %w", err)
	}
	return &Local{dir: path, folder: folder}, nil
}

// Dir is the directory holding the records: each is Dir()/{unique_id}.json.
func (l *Local) Dir() string { return l.dir }

// Key is the record's key, the same as Store.Key, so a synced object lands
// where a bucket-backed deployment would have written it.
func (l *Local) Key(uniqueID string) string {
	if l.folder == "" {
		return uniqueID + ".json"
	}
	return l.folder + "/" + uniqueID + ".json"
}

// PublicURL is always "": a local record has no public address.
func (l *Local) PublicURL(string) string { return "" }

func (l *Local) path(uniqueID string) string { return filepath.Join(l.dir, uniqueID+".json") }

// Get reads a record and an etag (a hash of its bytes). A missing file is
// ErrNotFound.
func (l *Local) Get(ctx context.Context, uniqueID string) (Record, string, error) {
	body, err := l.GetRaw(ctx, uniqueID)
	if err != nil {
		return Record{}, "", err
	}
	rec, err := UnmarshalRecord(body)
	if err != nil {
		return Record{}, "", fmt.Errorf("r2: local %s: %w", l.Key(uniqueID), err)
	}
	sum := sha256.Sum256(body)
	return rec, hex.EncodeToString(sum[:16]), nil
}

// GetRaw returns a record file's exact bytes; a missing file is ErrNotFound.
func (l *Local) GetRaw(ctx context.Context, uniqueID string) ([]byte, error) {
	if err := checkID(uniqueID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	body, err := os.ReadFile(l.path(uniqueID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("r2: local: %w", err)
	}
	return body, nil
}

// Create writes a new record only if none exists for its id; ErrExists means
// someone else got there first. The file is hard-linked into place, which
// fails when the name exists, so of any number of concurrent creators
// exactly one wins and the file is never half written.
func (l *Local) Create(ctx context.Context, rec Record) error {
	tmp, err := l.writeTemp(ctx, rec)
	if err != nil {
		return err
	}
	err = os.Link(tmp, l.path(rec.UniqueID))
	os.Remove(tmp) // the record (if linked) lives on under its final name
	if errors.Is(err, fs.ErrExist) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("r2: local create %s: %w", l.Key(rec.UniqueID), err)
	}
	return l.syncDir()
}

// Merge adds rec's bot file ids (and metadata the stored record lacks) to the
// stored record by Store.Merge's rules (first writer of a key wins), creating
// it when there is none, and returns the record as stored. Merges are
// serialised by the Local's mutex, so concurrent ones never lose each other's
// keys; a Create cannot interfere, as it never replaces a file.
func (l *Local) Merge(ctx context.Context, rec Record) (Record, error) {
	if err := checkID(rec.UniqueID); err != nil {
		return Record{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, _, err := l.Get(ctx, rec.UniqueID)
	if errors.Is(err, ErrNotFound) {
		err = l.Create(ctx, rec)
		if !errors.Is(err, ErrExists) {
			if err != nil {
				return Record{}, err
			}
			return rec, nil
		}
		// A Create (which takes no lock) won meanwhile; Delete takes the
		// lock, so the file is there now: merge into it.
		cur, _, err = l.Get(ctx, rec.UniqueID)
	}
	if err != nil {
		return Record{}, fmt.Errorf("r2: local merge %s: %w", rec.UniqueID, err)
	}
	if !mergeInto(&cur, rec) {
		return cur, nil // nothing new: no write
	}
	tmp, err := l.writeTemp(ctx, cur)
	if err != nil {
		return Record{}, err
	}
	if err := os.Rename(tmp, l.path(rec.UniqueID)); err != nil {
		os.Remove(tmp)
		return Record{}, fmt.Errorf("r2: local merge %s: %w", l.Key(rec.UniqueID), err)
	}
	if err := l.syncDir(); err != nil {
		return Record{}, err
	}
	return cur, nil
}

// Delete removes a record; a missing one is not an error (as S3's delete).
func (l *Local) Delete(ctx context.Context, uniqueID string) error {
	if err := checkID(uniqueID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock() // so a Merge never sees its record vanish mid-way
	defer l.mu.Unlock()
	if err := os.Remove(l.path(uniqueID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("r2: local delete %s: %w", l.Key(uniqueID), err)
	}
	return l.syncDir()
}

// Each calls fn with every record's id, in name order, stopping at fn's
// first error. Temp files and names that are not valid ids are skipped.
func (l *Local) Each(ctx context.Context, fn func(uniqueID string) error) error {
	entries, err := os.ReadDir(l.dir) // sorted by name
	if err != nil {
		return fmt.Errorf("r2: local: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || checkID(id) != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

// writeTemp writes rec's bytes to a fsynced temp file next to its final
// name (same directory, so link and rename stay on one filesystem) and
// returns the temp file's path.
func (l *Local) writeTemp(ctx context.Context, rec Record) (string, error) {
	if err := checkID(rec.UniqueID); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	body, err := rec.Marshal()
	if err != nil {
		return "", fmt.Errorf("r2: %w", err)
	}
	f, err := os.CreateTemp(l.dir, tempPrefix+rec.UniqueID+"-*")
	if err != nil {
		return "", fmt.Errorf("r2: local: %w", err)
	}
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("r2: local write %s: %w", l.Key(rec.UniqueID), err)
	}
	return f.Name(), nil
}

// syncDir makes a link, rename or remove in the directory durable.
func (l *Local) syncDir() error {
	d, err := os.Open(l.dir)
	if err != nil {
		return fmt.Errorf("r2: local: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("r2: local: sync %s: %w", l.dir, err)
	}
	return nil
}
