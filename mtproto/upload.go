package mtproto

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/rpc"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// Telegram's upload limits (https://core.telegram.org/api/files).
const (
	// PartSize is the largest part Telegram accepts and the one we use: the
	// fewest round trips per file.
	PartSize = 512 * 1024
	// SmallFileLimit is the largest file that may (and must) go through
	// upload.saveFilePart with an md5; anything bigger uses saveBigFilePart.
	SmallFileLimit = 10 * 1024 * 1024
	// BotMaxParts and BotMaxSize bound a bot's file: 4000 parts of 512 KiB.
	BotMaxParts = 4000
	BotMaxSize  = 2000 * 1024 * 1024
	// PremiumMaxParts and PremiumMaxSize bound a premium user's file.
	PremiumMaxParts = 8000
	PremiumMaxSize  = 4000 * 1024 * 1024
)

// GCPercent is the garbage collector target (GOGC) the ferry binary runs
// with unless GOGC is set. The uploader keeps no part buffers, so its live
// heap is small (~5 MiB at 8 threads) while gotd allocates a 512 KiB
// ciphertext per part: at Go's default of 100 the collector runs every
// few parts (506 cycles for a 2000 MiB upload at 8 threads, 3× gotd's stock
// uploader, which holds a buffer pool). 200 halves the cycles and the CPU
// per MB by 9 %, and the upload still peaks at 64 MiB RSS at 8 threads and
// 76 MiB at 32, within 64 MiB + threads × 1 MiB (mtproto/BENCH.md).
const GCPercent = 200

// ErrTooLarge is returned (wrapped) before any byte is sent when a file is
// over Telegram's size or part-count limit for the session kind.
var ErrTooLarge = errors.New("file too large for Telegram")

// Progress is reported each time Telegram acknowledges a part.
type Progress struct {
	Acked   int64         // bytes acknowledged so far (resumed parts included)
	Total   int64         // file size
	Speed   float64       // bytes/s, moving average over the last few seconds
	ETA     time.Duration // remaining time at Speed; 0 when unknown
	Elapsed time.Duration // since this Upload call started
	Parts   int           // parts acknowledged
	OfParts int           // parts in the file
	Resumed int           // parts found acknowledged at start (not re-sent)
	Saves   int           // resume-state writes so far (batched acks)
}

// UploadRequest describes one file to upload. Exactly one of ReaderAt and
// Reader is set; ReaderAt is preferred because a restart after Telegram
// forgot the parts needs to read the file again.
type UploadRequest struct {
	// Key identifies the upload across processes: the same key resumes the
	// same Telegram file. It must identify the content, not just the name
	// (e.g. the job id, a path+size+mtime digest, or a file_unique_id):
	// resuming checks the size and the cut, not the bytes.
	Key  string
	Name string
	Size int64
	// ReaderAt is read by part; Reader is read once, in order.
	ReaderAt io.ReaderAt
	Reader   io.Reader
	// OnProgress is called after each acknowledged part, serially; it must
	// be quick (throttle chat edits on the caller side).
	OnProgress func(Progress)
}

// Uploader uploads files with N parts in flight over a pool of connections,
// retrying each part alone and persisting acknowledged parts so another
// process can resume. Build it with NewUploader and the With* options.
type Uploader struct {
	inv   tg.Invoker
	store *StateStore
	log   *slog.Logger

	botID         int64
	threads       int
	partSize      int
	premium       bool
	maxStateAge   time.Duration
	maxAttempts   int
	backoffBase   time.Duration
	backoffMax    time.Duration
	partTimeout   time.Duration
	flushEvery    int
	flushInterval time.Duration
	flushGap      time.Duration
}

// NewUploader returns an uploader sending parts through inv (a connection
// pool, see Client.Pool) and keeping resume state in store (nil: no resume).
func NewUploader(inv tg.Invoker, store *StateStore) *Uploader {
	return &Uploader{
		inv:           inv,
		store:         store,
		log:           slog.New(slog.DiscardHandler),
		threads:       8,
		partSize:      PartSize,
		maxStateAge:   6 * time.Hour,
		maxAttempts:   15,
		backoffBase:   200 * time.Millisecond,
		backoffMax:    5 * time.Second,
		partTimeout:   2 * time.Minute,
		flushInterval: 250 * time.Millisecond,
		flushGap:      5 * time.Millisecond,
	}
}

func (u *Uploader) clone() *Uploader { c := *u; return &c }

// WithThreads sets the number of parts in flight (UPLOAD_THREADS). The pool
// should have at least as many connections.
func (u *Uploader) WithThreads(n int) *Uploader {
	u = u.clone()
	if n > 0 {
		u.threads = n
	}
	return u
}

// WithPartSize sets the part size; it must divide 512 KiB and be a multiple
// of 1 KiB. Only tests use anything but PartSize.
func (u *Uploader) WithPartSize(n int) *Uploader {
	u = u.clone()
	u.partSize = n
	return u
}

// WithBotID records which account the parts belong to: a saved state of
// another account is not resumed (Telegram keeps parts per account).
func (u *Uploader) WithBotID(id int64) *Uploader {
	u = u.clone()
	u.botID = id
	return u
}

// WithPremium raises the limits to a premium user's 4000 MiB / 8000 parts.
func (u *Uploader) WithPremium(p bool) *Uploader {
	u = u.clone()
	u.premium = p
	return u
}

// WithLogger sets the logger.
func (u *Uploader) WithLogger(l *slog.Logger) *Uploader {
	u = u.clone()
	if l != nil {
		u.log = l
	}
	return u
}

// WithMaxStateAge sets how old saved parts may be before the file starts
// over (Telegram keeps uploaded parts only for hours). Default 6h.
func (u *Uploader) WithMaxStateAge(d time.Duration) *Uploader {
	u = u.clone()
	u.maxStateAge = d
	return u
}

// WithRetry sets attempts per part and the exponential backoff bounds.
func (u *Uploader) WithRetry(attempts int, base, max time.Duration) *Uploader {
	u = u.clone()
	u.maxAttempts, u.backoffBase, u.backoffMax = attempts, base, max
	return u
}

// WithFlush sets how acknowledged parts are batched into the database
// (group commit). Parts in flight never exceed the thread count, and parts
// acknowledged but not yet saved may run at most one thread count ahead of
// them, so a crash re-sends at most 2 × threads parts while a save is never
// on a part's critical path. A write covers every ack so far and starts
// when `every` acks are in no write yet, when a worker would otherwise
// wait for a slot, or `interval` after the first such ack; two writes may
// run at once (one slow write does not hold back the next), and they start
// at least `gap` apart (unless a worker waits), which bounds one upload to
// 1/gap writes per second whatever the part rate. Defaults: every =
// threads/2, interval = 250ms, gap = 5ms.
func (u *Uploader) WithFlush(every int, interval, gap time.Duration) *Uploader {
	u = u.clone()
	u.flushEvery, u.flushInterval, u.flushGap = every, interval, gap
	return u
}

// Limits returns the part and size limits in force.
func (u *Uploader) Limits() (maxParts int, maxSize int64) {
	if u.premium {
		return PremiumMaxParts, PremiumMaxSize
	}
	return BotMaxParts, BotMaxSize
}

// CheckSize returns a wrapped ErrTooLarge when size cannot be uploaded.
func (u *Uploader) CheckSize(size int64) error {
	if size <= 0 {
		return fmt.Errorf("upload: file is empty (size %d)", size)
	}
	maxParts, maxSize := u.Limits()
	parts := (size + int64(u.partSize) - 1) / int64(u.partSize)
	kind := "bots"
	if u.premium {
		kind = "premium accounts"
	}
	if size > maxSize || parts > int64(maxParts) {
		return fmt.Errorf("%w: %.1f MiB (%d parts) is over the %d MiB / %d parts limit for %s",
			ErrTooLarge, float64(size)/(1<<20), parts, maxSize>>20, maxParts, kind)
	}
	return nil
}

func randomInt64() (int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63)), nil
}

func validPartSize(n int) bool {
	return n > 0 && n%1024 == 0 && PartSize%n == 0
}

// Upload sends req's file to Telegram and returns the InputFile to attach
// to a message. A saved state for req.Key (same account, size and cut,
// younger than the max state age) is resumed: only parts not yet
// acknowledged are sent.
func (u *Uploader) Upload(ctx context.Context, req UploadRequest) (tg.InputFileClass, error) {
	if req.Key == "" {
		return nil, errors.New("upload: empty key")
	}
	if (req.ReaderAt == nil) == (req.Reader == nil) {
		return nil, fmt.Errorf("upload %q: exactly one of ReaderAt and Reader must be set", req.Key)
	}
	if !validPartSize(u.partSize) {
		return nil, fmt.Errorf("upload %q: invalid part size %d", req.Key, u.partSize)
	}
	if err := u.CheckSize(req.Size); err != nil {
		return nil, fmt.Errorf("upload %q: %w", req.Key, err)
	}
	totalParts := int((req.Size + int64(u.partSize) - 1) / int64(u.partSize))
	st := &UploadState{
		Key: req.Key, BotID: u.botID, Size: req.Size, PartSize: u.partSize,
		TotalParts: totalParts, Big: req.Size > SmallFileLimit,
	}
	resumed := false
	if u.store != nil {
		old, ok, err := u.store.Load(ctx, req.Key)
		if err != nil {
			return nil, fmt.Errorf("upload %q: %w", req.Key, err)
		}
		if ok && old.FileID != 0 && old.BotID == st.BotID && old.Size == st.Size &&
			old.PartSize == st.PartSize && old.TotalParts == st.TotalParts && old.Big == st.Big &&
			len(old.Acked) == len(NewBitmap(totalParts)) &&
			(u.maxStateAge <= 0 || time.Since(old.CreatedAt) < u.maxStateAge) {
			st = old
			resumed = true
		}
	}
	if !resumed {
		id, err := randomInt64()
		if err != nil {
			return nil, fmt.Errorf("upload %q: file id: %w", req.Key, err)
		}
		st.FileID = id
		st.Acked = NewBitmap(totalParts)
		if u.store != nil {
			if err := u.store.Begin(ctx, st); err != nil {
				return nil, fmt.Errorf("upload %q: %w", req.Key, err)
			}
		}
	}
	if resumed {
		u.log.InfoContext(ctx, "resuming upload", "key", req.Key, "acked_parts", Bitmap(st.Acked).Count(), "parts", totalParts)
	}

	run := newRun(u, req, st)
	if err := run.do(ctx); err != nil {
		return nil, fmt.Errorf("upload %q: %w", req.Key, err)
	}
	if st.Big {
		return &tg.InputFileBig{ID: st.FileID, Parts: totalParts, Name: req.Name}, nil
	}
	sum, err := run.md5sum()
	if err != nil {
		return nil, fmt.Errorf("upload %q: md5: %w", req.Key, err)
	}
	return &tg.InputFile{ID: st.FileID, Parts: totalParts, Name: req.Name, MD5Checksum: sum}, nil
}

// run is one Upload call in progress.
type run struct {
	u   *Uploader
	req UploadRequest
	st  *UploadState

	start   time.Time
	md5     hash.Hash // stream small files: hashed while read
	md5Done bool
	before  Bitmap // parts acknowledged before this run: skipped

	// slots bounds parts in flight plus parts acknowledged but not yet
	// saved to 2 × threads: what a crash can make us re-send. Workers
	// (threads of them) bound parts in flight alone, so acks may run up
	// to threads ahead of the saves before anyone waits for the database.
	slots chan struct{}

	readMu sync.Mutex // orders reads of a stream; hands out part numbers
	next   int        // next part to consider, under readMu

	mu         sync.Mutex
	acked      Bitmap
	ackedBytes int64
	// Acks of this run, counted: each holds a slot until a save covering
	// it commits. snapped acks are in a snapshot handed to a save,
	// released ones are saved and their slots given back.
	ackSeq, snapped, released int
	dirtyAt                   time.Time // first ack not yet snapped

	samples    []sample
	resumed    int
	saves      int
	flushKick  chan struct{}
	starved    atomic.Bool // a worker waits for a slot
	progressMu sync.Mutex
	flushEvery int
}

type sample struct {
	t     time.Time
	bytes int64
}

func newRun(u *Uploader, req UploadRequest, st *UploadState) *run {
	r := &run{u: u, req: req, st: st, start: time.Now(), flushKick: make(chan struct{}, 1)}
	r.acked = slices.Clone(Bitmap(st.Acked))
	r.before = slices.Clone(r.acked)
	r.resumed = r.acked.Count()
	for i := 0; i < st.TotalParts; i++ {
		if r.acked.Has(i) {
			r.ackedBytes += int64(r.partLen(i))
		}
	}
	r.samples = []sample{{t: r.start, bytes: r.ackedBytes}}
	r.flushEvery = u.flushEvery
	if r.flushEvery <= 0 {
		r.flushEvery = max(1, u.threads/2)
	}
	r.flushEvery = min(r.flushEvery, u.threads)
	return r
}

func (r *run) partLen(i int) int {
	off := int64(i) * int64(r.st.PartSize)
	return int(min(int64(r.st.PartSize), r.st.Size-off))
}

func (r *run) md5sum() (string, error) {
	if r.md5Done {
		return hex.EncodeToString(r.md5.Sum(nil)), nil
	}
	if r.req.ReaderAt == nil {
		return "", errors.New("stream was not read to the end")
	}
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(r.req.ReaderAt, 0, r.st.Size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (r *run) do(ctx context.Context) error {
	if !r.st.Big && r.req.Reader != nil {
		r.md5 = md5.New()
	}
	missing := r.st.TotalParts - r.resumed
	if missing == 0 && r.md5 == nil {
		r.report()
		return nil
	}
	threads := max(1, min(r.u.threads, missing))
	r.slots = make(chan struct{}, 2*threads)
	for range 2 * threads {
		r.slots <- struct{}{}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Flusher: saves the acked bitmap in batches and gives the slots back.
	flushDone := make(chan error, 1)
	stopFlush := make(chan struct{})
	go func() {
		err := r.flusher(ctx, stopFlush)
		if err != nil {
			cancel(err) // unblock workers waiting for slots
		}
		flushDone <- err
	}()

	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			if err := r.worker(ctx); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	close(stopFlush)
	flushErr := <-flushDone

	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	if flushErr != nil {
		return flushErr
	}
	if n := r.acked.Count(); n != r.st.TotalParts {
		return fmt.Errorf("only %d of %d parts acknowledged", n, r.st.TotalParts)
	}
	return nil
}

// worker sends parts until there are none left. A part of a ReaderAt is
// read by its request's encoder straight into gotd's send buffer (see
// partRequest): no part buffer, no copy of ours. A stream is read in order
// into one buffer per worker, reused for every part.
func (r *run) worker(ctx context.Context) error {
	var buf []byte
	if r.req.ReaderAt == nil {
		buf = make([]byte, r.st.PartSize)
	}
	for {
		select {
		case <-r.slots:
		default:
			// Out of slots: ask for a save now rather than at the batch
			// size, so throughput does not wait on batching.
			r.starved.Store(true)
			r.kickFlush()
			select {
			case <-r.slots:
			case <-ctx.Done():
				return nil
			}
		}
		part, n, err := r.read(buf)
		if err != nil {
			return err
		}
		if part < 0 {
			r.slots <- struct{}{}
			return nil
		}
		var data []byte
		if buf != nil {
			data = buf[:n]
		}
		if err := r.sendPart(ctx, part, n, data); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// read returns the next part not acknowledged before this run, or -1 when
// none is left. A stream is read in order into buf under readMu (and hashed
// for a small file); for a ReaderAt only the part number is taken here and
// the encoder reads it.
func (r *run) read(buf []byte) (part, n int, err error) {
	r.readMu.Lock()
	defer r.readMu.Unlock()
	for r.next < r.st.TotalParts && r.before.Has(r.next) {
		if r.req.Reader != nil {
			// A stream must be read through; hash it for small files.
			n := r.partLen(r.next)
			if _, err := io.ReadFull(r.req.Reader, buf[:n]); err != nil {
				return 0, 0, fmt.Errorf("read part %d: %w", r.next, err)
			}
			if r.md5 != nil {
				r.md5.Write(buf[:n])
			}
		}
		r.next++
	}
	if r.next >= r.st.TotalParts {
		if r.md5 != nil {
			r.md5Done = true
		}
		return -1, 0, nil
	}
	part = r.next
	r.next++
	n = r.partLen(part)
	if r.req.ReaderAt != nil {
		return part, n, nil
	}
	if _, err := io.ReadFull(r.req.Reader, buf[:n]); err != nil {
		return 0, 0, fmt.Errorf("read part %d: %w", part, err)
	}
	if r.md5 != nil {
		r.md5.Write(buf[:n])
		if r.next >= r.st.TotalParts {
			r.md5Done = true
		}
	}
	return part, n, nil
}

// sendPart uploads one part of n bytes (data, or read from the ReaderAt
// when data is nil), retrying it alone on transient errors.
func (r *run) sendPart(ctx context.Context, part, n int, data []byte) error {
	req := partRequest{
		big: r.st.Big, fileID: r.st.FileID, part: part, totalParts: r.st.TotalParts,
		data: data, n: n, src: r.req.ReaderAt, off: int64(part) * int64(r.st.PartSize),
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, r.u.partTimeout)
		var res tg.BoolBox
		err := r.u.inv.Invoke(actx, &req, &res)
		cancel()
		if rerr := req.readError(); rerr != nil {
			// The file, not the network, failed: retrying will not help.
			return fmt.Errorf("read part %d: %w", part, rerr)
		}
		if err == nil {
			if _, ok := res.Bool.(*tg.BoolTrue); ok {
				r.ack(part, n)
				return nil
			}
			// Telegram answered false: the part was not saved; send it again.
			err = errors.New("server did not save the part")
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		wait, retry := r.classify(err, attempt)
		if !retry || attempt >= r.u.maxAttempts {
			return fmt.Errorf("upload part %d (attempt %d): %w", part, attempt, err)
		}
		r.u.log.DebugContext(ctx, "retrying part", "key", r.req.Key, "part", part, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
	}
}

// partRequest is upload.saveBigFilePart (big) or upload.saveFilePart with
// the part's bytes either in data or read from src at off by Encode itself,
// straight into gotd's (pooled) send buffer. The generated request types
// need the bytes in a slice of ours that bin.PutBytes then copies: that is
// a 512 KiB buffer per part in flight and one more pass over every byte.
// gotd encodes again on each resend, so every attempt re-reads the part.
type partRequest struct {
	big        bool
	fileID     int64
	part       int
	totalParts int
	data       []byte // the part, or nil to read n bytes from src at off
	n          int
	src        io.ReaderAt
	off        int64

	mu      sync.Mutex
	readErr error
}

// encodeSlack is spare capacity left after the part for what gotd appends
// to the same buffer (up to 267 bytes of MTProto padding, then the 24-byte
// header of the encrypted message and the 4-byte frame length), so none of
// it reallocates and copies the part.
const encodeSlack = 512

// TypeID and TypeName are those of the TL method (logs and Metrics).
func (p *partRequest) TypeID() uint32 {
	if p.big {
		return tg.UploadSaveBigFilePartRequestTypeID
	}
	return tg.UploadSaveFilePartRequestTypeID
}

func (p *partRequest) TypeName() string {
	if p.big {
		return "upload.saveBigFilePart"
	}
	return "upload.saveFilePart"
}

// FilePartRequest is an upload part request as a middleware sees it: the
// generated tg.UploadSave(Big)FilePartRequest, or the uploader's own.
type FilePartRequest interface {
	FilePart() (fileID int64, part int)
}

// FilePart names the file and part (FilePartRequest).
func (p *partRequest) FilePart() (int64, int) { return p.fileID, p.part }

// Encode writes the request exactly as the generated type would.
func (p *partRequest) Encode(b *bin.Buffer) error {
	b.PutID(p.TypeID())
	b.PutLong(p.fileID)
	b.PutInt(p.part)
	if p.big {
		b.PutInt(p.totalParts)
	}
	if p.data != nil || p.n <= 253 {
		// Short TL bytes (only a tiny last part) or bytes we hold already.
		data := p.data
		if data == nil {
			data = make([]byte, p.n)
			if err := p.readAt(data); err != nil {
				return err
			}
		}
		b.PutBytes(data)
		return nil
	}
	// Long TL bytes: 0xfe, 3-byte length, data, zeros to a multiple of 4.
	pad := (4 - (4+p.n)%4) % 4
	b.Buf = slices.Grow(b.Buf, 4+p.n+pad+encodeSlack)
	b.Buf = append(b.Buf, 254, byte(p.n), byte(p.n>>8), byte(p.n>>16))
	start := len(b.Buf)
	b.Buf = b.Buf[:start+p.n+pad]
	clear(b.Buf[start+p.n:]) // a pooled buffer holds old bytes
	return p.readAt(b.Buf[start : start+p.n])
}

func (p *partRequest) readAt(dst []byte) error {
	n, err := p.src.ReadAt(dst, p.off)
	if n == len(dst) {
		err = nil // a full read may still say io.EOF at the end of the file
	} else if err == nil {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		p.mu.Lock()
		p.readErr = err
		p.mu.Unlock()
	}
	return err
}

func (p *partRequest) readError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readErr
}

// classify says whether err is worth retrying and after how long.
func (r *run) classify(err error, attempt int) (time.Duration, bool) {
	if d, ok := tgerr.AsFloodWait(err); ok {
		// Waits short enough were already obeyed by the flood-wait
		// middleware; a long one fails the upload so the job can be
		// rescheduled instead of holding a worker for hours.
		return d + 100*time.Millisecond, d <= 5*time.Minute
	}
	back := r.u.backoffBase << min(attempt-1, 16)
	if back > r.u.backoffMax || back <= 0 {
		back = r.u.backoffMax
	}
	// Full jitter keeps parallel retries from hitting the server in step.
	back = back/2 + time.Duration(mrand.Int64N(int64(back/2)+1))
	if rpcErr, ok := tgerr.As(err); ok {
		switch {
		case rpcErr.Code >= 500, rpcErr.Code == 420, rpcErr.Code == -503:
			return back, true
		default:
			// 400s (bad part, size changed, ...) will not get better.
			return 0, false
		}
	}
	if errors.Is(err, rpc.ErrEngineClosed) || errors.Is(err, context.DeadlineExceeded) {
		return back, true
	}
	// Connection-level failures (dropped socket, reconnecting pool): retry.
	return back, true
}

func (r *run) ack(part, n int) {
	r.mu.Lock()
	r.acked.Set(part)
	r.ackedBytes += int64(n)
	if r.u.store == nil {
		// Nothing to save: the slot is free now.
		r.mu.Unlock()
		r.slots <- struct{}{}
		r.report()
		return
	}
	r.ackSeq++
	unsnapped := r.ackSeq - r.snapped
	if unsnapped == 1 {
		r.dirtyAt = time.Now()
	}
	kick := unsnapped >= r.flushEvery
	r.mu.Unlock()
	if kick {
		r.kickFlush()
	}
	r.report()
}

func (r *run) kickFlush() {
	select {
	case r.flushKick <- struct{}{}:
	default:
	}
}

func (r *run) report() {
	if r.req.OnProgress == nil {
		return
	}
	r.progressMu.Lock()
	defer r.progressMu.Unlock()
	r.mu.Lock()
	now := time.Now()
	acked := r.ackedBytes
	parts := r.acked.Count()
	saves := r.saves
	r.samples = append(r.samples, sample{t: now, bytes: acked})
	// Moving window: the last 3 seconds (at least two samples).
	cut := 0
	for cut < len(r.samples)-2 && now.Sub(r.samples[cut+1].t) > 3*time.Second {
		cut++
	}
	if cut > 0 {
		// Shift in place: the slice keeps its array instead of growing one
		// sample per part for the whole upload.
		r.samples = r.samples[:copy(r.samples, r.samples[cut:])]
	}
	first := r.samples[0]
	r.mu.Unlock()
	p := Progress{Acked: acked, Total: r.st.Size, Elapsed: now.Sub(r.start), Parts: parts, OfParts: r.st.TotalParts, Resumed: r.resumed, Saves: saves}
	if dt := now.Sub(first.t).Seconds(); dt > 0 {
		p.Speed = float64(acked-first.bytes) / dt
	}
	if p.Speed > 0 {
		p.ETA = time.Duration(float64(p.Total-p.Acked) / p.Speed * float64(time.Second))
		if p.ETA < 0 || p.ETA > math.MaxInt64/2 {
			p.ETA = 0
		}
	}
	r.req.OnProgress(p)
}

// savesInFlight is how many resume-state saves may run at once. One save
// stalled by a loaded database or machine (p90 6-8 ms, p99 up to 20 ms on
// a busy 2-core host, against ~1.7 ms between acks at 300 MB/s) then no
// longer holds back the next snapshot, so workers wait for a slot only when
// both are slow. Two, not more: each is a write the database must do.
const savesInFlight = 2

// savedSnapshot is a save that returned: it covered the first upto acks
// of the run.
type savedSnapshot struct {
	upto int
	snap Bitmap
	err  error
}

// flusher saves the acked bitmap (see WithFlush for when), up to
// savesInFlight snapshots at a time, and frees the slots of the parts a
// committed save covered. It is off the parts' critical path: a worker
// waits for it only when acks ran a whole thread count ahead of the saves.
// Saves may land out of order; the database keeps the larger bitmap (see
// db.Executor.UploadStateSaveAcked), and an older save landing after a
// newer one frees nothing.
func (r *run) flusher(ctx context.Context, stop <-chan struct{}) error {
	tick := time.NewTicker(max(r.u.flushInterval/4, 10*time.Millisecond))
	defer tick.Stop()
	gapTimer := time.NewTimer(time.Hour)
	gapTimer.Stop()
	defer gapTimer.Stop()

	done := make(chan savedSnapshot, savesInFlight)
	free := make([]Bitmap, savesInFlight) // snapshot buffers, reused
	for i := range free {
		free[i] = NewBitmap(r.st.TotalParts)
	}
	inflight, committed := 0, 0
	var lastStart time.Time

	due := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		n := r.ackSeq - r.snapped
		return n > 0 && (n >= r.flushEvery || r.starved.Load() || time.Since(r.dirtyAt) >= r.u.flushInterval)
	}
	// start hands a snapshot of every ack so far to a save of its own;
	// force: even when every ack is in a snapshot already (one whose save
	// failed).
	start := func(sctx context.Context, force bool) {
		r.mu.Lock()
		if r.ackSeq == r.snapped && !force {
			r.mu.Unlock()
			return
		}
		r.starved.Store(false)
		snap := free[len(free)-1]
		free = free[:len(free)-1]
		copy(snap, r.acked)
		upto := r.ackSeq
		r.snapped = upto
		r.mu.Unlock()
		inflight++
		lastStart = time.Now()
		go func() {
			err := r.u.store.SaveAcked(sctx, r.st.Key, r.st.FileID, snap)
			done <- savedSnapshot{upto: upto, snap: snap, err: err}
		}()
	}
	land := func(s savedSnapshot) error {
		inflight--
		free = append(free, s.snap)
		if s.err != nil {
			return s.err
		}
		committed = max(committed, s.upto)
		r.mu.Lock()
		n := committed - r.released
		r.released = committed
		r.saves++
		r.mu.Unlock()
		for range n {
			r.slots <- struct{}{}
		}
		return nil
	}
	// drain waits for the saves in flight; their errors are dropped (the
	// final save covers a failed one, or the upload fails already).
	drain := func() {
		for inflight > 0 {
			_ = land(<-done)
		}
	}
	final := func() error {
		// Save what landed even when the upload failed or was cancelled:
		// wait for the saves in flight, then cover whatever they did not.
		drain()
		r.mu.Lock()
		all := r.ackSeq
		r.mu.Unlock()
		if all == committed {
			return nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		start(fctx, true)
		return land(<-done)
	}
	for {
		select {
		case <-stop:
			return final()
		case s := <-done:
			if err := land(s); err != nil {
				if ctx.Err() != nil {
					<-stop
					return final()
				}
				drain()
				return fmt.Errorf("save progress: %w", err)
			}
		case <-r.flushKick:
		case <-tick.C:
		case <-gapTimer.C:
		}
		if inflight == savesInFlight || !due() {
			continue
		}
		// The gap bounds the write rate; a starved worker skips it.
		if wait := r.u.flushGap - time.Since(lastStart); wait > 0 && !r.starved.Load() {
			gapTimer.Reset(wait)
			continue
		}
		start(ctx, false)
	}
}
