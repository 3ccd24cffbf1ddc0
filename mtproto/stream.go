package mtproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gotd/td/fileid"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// Telegram's rules for precise upload.getFile requests
// (core.telegram.org/api/files): offset and limit multiples of 1 KiB, limit
// at most 1 MiB, and no request crossing a 1 MiB boundary. Streams use them
// so that a range starting anywhere costs one request for its first block
// instead of a 512 KiB-aligned one.
const (
	// StreamBlock is the largest precise request; blocks aligned to it never
	// cross a 1 MiB boundary.
	StreamBlock   = 1 << 20
	preciseUnit   = 1 << 10
	refreshTimout = 15 * time.Second
)

// CheckPrecise reports whether (off, limit) is a request Telegram accepts
// with precise set.
func CheckPrecise(off int64, limit int) error {
	switch {
	case off < 0 || off%preciseUnit != 0:
		return fmt.Errorf("precise get file: offset %d is not a multiple of 1 KiB", off)
	case limit <= 0 || limit%preciseUnit != 0 || limit > StreamBlock:
		return fmt.Errorf("precise get file: limit %d is not a multiple of 1 KiB up to 1 MiB", limit)
	case off/StreamBlock != (off+int64(limit)-1)/StreamBlock:
		return fmt.Errorf("precise get file: [%d, %d) crosses a 1 MiB boundary", off, off+int64(limit))
	}
	return nil
}

// blockAt is the precise request that starts at off (a multiple of 1 KiB)
// and serves bytes up to end: to the next 1 MiB boundary, or less at end.
func blockAt(off, end int64) int {
	limit := StreamBlock - off%StreamBlock
	if rest := end - off; rest < limit {
		limit = (rest + preciseUnit - 1) / preciseUnit * preciseUnit
	}
	return int(limit)
}

// BlockReader reads one precise block (see CheckPrecise). It returns fewer
// than limit bytes only at the end of the file.
type BlockReader interface {
	ReadBlock(ctx context.Context, off int64, limit int) ([]byte, error)
}

// StreamPools hands out data-connection pools for streaming, one per (bot,
// DC), apart from the upload pools and without the flood-wait middleware:
// a stream facing FLOOD_WAIT moves to another bot instead of stalling.
type StreamPools struct {
	size int

	mu sync.Mutex
	m  map[poolKey]*tg.Client
}

type poolKey struct {
	c  *Client
	dc int
}

// NewStreamPools makes pools of size connections each (at least one; gotd
// multiplexes requests on a connection, the test server does not).
func NewStreamPools(size int) *StreamPools {
	return &StreamPools{size: max(size, 1), m: map[poolKey]*tg.Client{}}
}

func (p *StreamPools) pool(ctx context.Context, c *Client, dc int) (*tg.Client, error) {
	if dc == 0 {
		dc = c.opts.DC
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := poolKey{c, dc}
	if inv, ok := p.m[k]; ok {
		return inv, nil
	}
	var inv tg.Invoker
	var err error
	if dc == c.opts.DC {
		inv, err = c.tg.Pool(int64(p.size))
	} else {
		// gotd exports the bot's authorization to the other DC.
		inv, err = c.tg.DC(ctx, dc, int64(p.size))
	}
	if err != nil {
		return nil, fmt.Errorf("bot %d: stream pool for DC %d: %w", c.opts.BotID, dc, err)
	}
	cl := tg.NewClient(inv)
	p.m[k] = cl
	return cl, nil
}

// BotFile is one bot's way to one document: the location from the bot's own
// file_id, the DC that holds it, and the message (channel or private chat) that refreshes an
// expired file reference.
type BotFile struct {
	c         *Client
	pools     *StreamPools
	chatID    int64
	messageID int
	// OnRefresh, when set, is called after each file reference refresh.
	OnRefresh func()

	mu      sync.Mutex
	loc     *tg.InputDocumentFileLocation
	dc      int
	gen     int
	channel *tg.InputChannel
}

// OpenFile prepares reads of the document behind a Bot API file_id of bot
// c, posted as message messageID of Bot API chat chatID. Nothing is sent.
func (p *StreamPools) OpenFile(c *Client, fileID string, chatID int64, messageID int) (*BotFile, error) {
	f, err := fileid.DecodeFileID(fileID)
	if err != nil {
		return nil, fmt.Errorf("open file: decode file_id: %w", err)
	}
	doc, err := DecodeDocumentFileID(fileID)
	if err != nil {
		return nil, fmt.Errorf("open file: %w", err)
	}
	return &BotFile{c: c, pools: p, chatID: chatID, messageID: messageID, loc: doc, dc: f.DC}, nil
}

// BotID is the bot that reads.
func (f *BotFile) BotID() int64 { return f.c.BotID() }

func (f *BotFile) current() (*tg.InputDocumentFileLocation, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loc, f.dc, f.gen
}

// ReadBlock implements BlockReader: a precise upload.getFile on the
// document's DC. An expired reference is refreshed (once for all blocks in
// flight) and the block retried; FILE_MIGRATE moves to the DC named; a
// server error or a dropped connection is retried once. Anything else, and
// FLOOD_WAIT, is returned at once for the caller to fail over.
func (f *BotFile) ReadBlock(ctx context.Context, off int64, limit int) ([]byte, error) {
	if err := CheckPrecise(off, limit); err != nil {
		return nil, err
	}
	var refreshes, migrations, retries int
	for {
		loc, dc, gen := f.current()
		inv, err := f.pools.pool(ctx, f.c, dc)
		if err != nil {
			return nil, err
		}
		res, err := inv.UploadGetFile(ctx, &tg.UploadGetFileRequest{Precise: true, Location: loc, Offset: off, Limit: limit})
		if err == nil {
			file, ok := res.(*tg.UploadFile)
			if !ok {
				return nil, fmt.Errorf("bot %d: get file at %d: CDN redirect not supported", f.c.BotID(), off)
			}
			return file.Bytes, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rpc, isRPC := tgerr.As(err)
		switch {
		case isRPC && rpc.IsOneOf("FILE_REFERENCE_EXPIRED", "FILE_REFERENCE_INVALID") && refreshes < 2:
			refreshes++
			if err := f.refresh(ctx, gen); err != nil {
				return nil, err
			}
			continue
		case isRPC && rpc.Type == "FILE_MIGRATE" && rpc.Argument > 0 && migrations < 2:
			migrations++
			f.mu.Lock()
			f.dc = rpc.Argument
			f.mu.Unlock()
			continue
		case (!isRPC || rpc.Code >= 500) && retries < 1:
			retries++
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		return nil, fmt.Errorf("bot %d: get file at %d: %w", f.c.BotID(), off, err)
	}
}

// refresh re-reads the message for a fresh file reference, unless another
// block already did since gen.
func (f *BotFile) refresh(ctx context.Context, gen int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gen != gen {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimout)
	defer cancel()
	// A private chat (positive Bot API id) has no channel: the message is
	// read with messages.getMessages (Source without Channel).
	if f.channel == nil && f.chatID < 0 {
		peer, err := ResolveChannel(ctx, f.c.API(), f.chatID)
		if err != nil {
			return fmt.Errorf("bot %d: refresh file reference: %w", f.c.BotID(), err)
		}
		f.channel = ChannelFromPeer(peer)
	}
	d := Downloader{api: f.c.API()}
	src := &Source{Channel: f.channel, MessageID: f.messageID}
	if err := d.Locate(ctx, src); err != nil {
		return fmt.Errorf("bot %d: refresh file reference: %w", f.c.BotID(), err)
	}
	if src.Document.ID != f.loc.ID {
		return fmt.Errorf("bot %d: refresh file reference: message %d now holds another document", f.c.BotID(), f.messageID)
	}
	f.loc = &tg.InputDocumentFileLocation{ID: src.Document.ID, AccessHash: src.Document.AccessHash, FileReference: src.Document.FileReference}
	if src.Document.DCID > 0 {
		f.dc = src.Document.DCID
	}
	f.gen++
	if f.OnRefresh != nil {
		f.OnRefresh()
	}
	return nil
}

// Failover reads through one source at a time and moves to the next when
// the current one fails: blocks in flight on a failed source are retried
// on the next at their own offsets, so a stream continues at the exact
// byte where the failed bot stopped.
type Failover struct {
	next func(ctx context.Context, failed error) (BlockReader, error)

	mu   sync.Mutex
	cur  BlockReader
	gen  int
	dead error
}

// NewFailover starts with first; next is called (one at a time) with the
// error of the source that failed and returns the source to use instead,
// or an error when there is none left.
func NewFailover(first BlockReader, next func(ctx context.Context, failed error) (BlockReader, error)) *Failover {
	return &Failover{cur: first, next: next}
}

// ReadBlock implements BlockReader.
func (f *Failover) ReadBlock(ctx context.Context, off int64, limit int) ([]byte, error) {
	for {
		f.mu.Lock()
		cur, gen, dead := f.cur, f.gen, f.dead
		f.mu.Unlock()
		if dead != nil {
			return nil, dead
		}
		data, err := cur.ReadBlock(ctx, off, limit)
		if err == nil || ctx.Err() != nil {
			return data, err
		}
		if ferr := f.fail(ctx, gen, err); ferr != nil {
			return nil, ferr
		}
	}
}

func (f *Failover) fail(ctx context.Context, gen int, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead != nil {
		return f.dead
	}
	if gen != f.gen {
		return nil // another block already moved on
	}
	nxt, nerr := f.next(ctx, err)
	if nerr != nil {
		if ctx.Err() == nil {
			f.dead = fmt.Errorf("%w (and no other bot: %w)", err, nerr)
		}
		return fmt.Errorf("%w (and no other bot: %w)", err, nerr)
	}
	f.cur = nxt
	f.gen++
	return nil
}

// Current is the source in use.
func (f *Failover) Current() BlockReader {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

// RangeStream reads bytes [start, end) of a file of size bytes in order,
// with window precise blocks in flight ahead of the reader: a seek costs one
// round trip and one block, and memory stays at window+1 blocks. Close (or
// the context ending) cancels every fetch at once.
type RangeStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	r      BlockReader
	size   int64
	end    int64
	window int

	next  int64 // offset of the next block to launch
	queue []*pendingBlock
	wg    sync.WaitGroup

	pos int64  // offset of cur[0]
	cur []byte // unread part of the head block
	err error
}

type pendingBlock struct {
	off   int64
	limit int
	done  chan struct{}
	data  []byte
	err   error
}

// NewRangeStream starts fetching [start, end) of a file of size bytes.
func NewRangeStream(ctx context.Context, r BlockReader, size, start, end int64, window int) *RangeStream {
	ctx, cancel := context.WithCancel(ctx)
	end = min(end, size)
	s := &RangeStream{ctx: ctx, cancel: cancel, r: r, size: size, end: end, window: max(window, 1),
		next: start &^ (preciseUnit - 1), pos: start}
	for range s.window {
		s.launch()
	}
	return s
}

func (s *RangeStream) launch() {
	if s.next >= s.end {
		return
	}
	b := &pendingBlock{off: s.next, limit: blockAt(s.next, s.end), done: make(chan struct{})}
	s.next += int64(b.limit)
	s.queue = append(s.queue, b)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(b.done)
		b.data, b.err = s.r.ReadBlock(s.ctx, b.off, b.limit)
	}()
}

// Read implements io.Reader.
func (s *RangeStream) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.pos >= s.end {
			return 0, io.EOF
		}
		if s.err != nil {
			return 0, s.err
		}
		b := s.queue[0]
		s.queue = s.queue[1:]
		select {
		case <-b.done:
		case <-s.ctx.Done():
			s.err = fmt.Errorf("stream at %d: %w", s.pos, s.ctx.Err())
			return 0, s.err
		}
		if b.err != nil {
			s.err = fmt.Errorf("stream block at %d: %w", b.off, b.err)
			return 0, s.err
		}
		if want := min(int64(b.limit), s.size-b.off); int64(len(b.data)) != want {
			s.err = fmt.Errorf("stream block at %d: got %d bytes, want %d", b.off, len(b.data), want)
			return 0, s.err
		}
		s.cur = b.data[s.pos-b.off : min(int64(len(b.data)), s.end-b.off)]
		s.launch()
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	s.pos += int64(n)
	return n, nil
}

// Close cancels the fetches in flight and waits for them to return.
func (s *RangeStream) Close() error {
	s.cancel()
	s.wg.Wait()
	s.queue, s.cur = nil, nil
	return nil
}

// ErrNoSource is what a Failover's next function returns when it has no
// other source.
var ErrNoSource = errors.New("no other source")

// DecodeDocumentFileID returns the document location in a Bot API file_id.
func DecodeDocumentFileID(fileID string) (*tg.InputDocumentFileLocation, error) {
	f, err := fileid.DecodeFileID(fileID)
	if err != nil {
		return nil, fmt.Errorf("decode file_id: %w", err)
	}
	loc, ok := f.AsInputFileLocation()
	doc, isDoc := loc.(*tg.InputDocumentFileLocation)
	if !ok || !isDoc {
		return nil, fmt.Errorf("file_id of type %v is not a document", f.Type)
	}
	return doc, nil
}
