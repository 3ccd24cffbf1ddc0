package mtproto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotd/td/fileid"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// DownloadChunk is the upload.getFile request size: it divides 1 MiB, so
// aligned chunks never cross a 1 MiB boundary as Telegram requires.
const DownloadChunk = 512 * 1024

// Source is a document in a message. The message is how an expired file
// reference is refreshed: channels.getMessages when Channel is set,
// messages.getMessages (the bot's private chats) when it is nil.
type Source struct {
	Channel   *tg.InputChannel
	MessageID int
	// Document is filled by Locate (or by the caller from a sendMedia
	// answer); Download refreshes it when its file reference expires.
	Document *tg.Document
}

// Downloader fetches documents with parallel upload.getFile calls over a
// connection pool of the DC that holds each document.
type Downloader struct {
	api     *tg.Client
	pool    func(ctx context.Context, dc int) (tg.Invoker, error)
	threads int
	log     *slog.Logger
	tries   int
}

// NewDownloader returns a downloader using c's main connection (for message
// look-ups) and its per-DC pools.
func NewDownloader(c *Client) *Downloader {
	return &Downloader{api: c.API(), pool: c.DCPool, threads: 4, log: c.log, tries: 10}
}

// WithThreads sets the number of chunks in flight (memory: threads+1
// chunks of 512 KiB).
func (d *Downloader) WithThreads(n int) *Downloader {
	c := *d
	if n > 0 {
		c.threads = n
	}
	return &c
}

// ChannelFromPeer turns a resolved channel peer into the InputChannel that
// channels.getMessages takes.
func ChannelFromPeer(p *tg.InputPeerChannel) *tg.InputChannel {
	return &tg.InputChannel{ChannelID: p.ChannelID, AccessHash: p.AccessHash}
}

// Locate reads the message and fills src.Document (with a fresh file
// reference). A private chat's message (Channel nil) is read with
// messages.getMessages: channels.getMessages only knows channels.
func (d *Downloader) Locate(ctx context.Context, src *Source) error {
	ids := []tg.InputMessageClass{&tg.InputMessageID{ID: src.MessageID}}
	var (
		res tg.MessagesMessagesClass
		err error
	)
	if src.Channel == nil {
		res, err = d.api.MessagesGetMessages(ctx, ids)
	} else {
		res, err = d.api.ChannelsGetMessages(ctx, &tg.ChannelsGetMessagesRequest{Channel: src.Channel, ID: ids})
	}
	if err != nil {
		return fmt.Errorf("get message %d: %w", src.MessageID, err)
	}
	msgs, ok := res.(interface{ GetMessages() []tg.MessageClass })
	if !ok {
		return fmt.Errorf("get message %d: unexpected answer %T", src.MessageID, res)
	}
	for _, m := range msgs.GetMessages() {
		msg, ok := m.(*tg.Message)
		if !ok || msg.ID != src.MessageID {
			continue
		}
		media, ok := msg.Media.(*tg.MessageMediaDocument)
		if !ok {
			return fmt.Errorf("message %d has no document", src.MessageID)
		}
		doc, ok := media.Document.(*tg.Document)
		if !ok {
			return fmt.Errorf("message %d: document is gone", src.MessageID)
		}
		src.Document = doc
		return nil
	}
	return fmt.Errorf("message %d not found", src.MessageID)
}

// fetcher gets chunks of one document, refreshing its reference once per
// expiry for all goroutines.
type fetcher struct {
	d   *Downloader
	src *Source
	inv *tg.Client
	mu  sync.Mutex
	loc *tg.InputDocumentFileLocation
	gen int
}

func (d *Downloader) newFetcher(ctx context.Context, src *Source) (*fetcher, error) {
	if src.Document == nil {
		if err := d.Locate(ctx, src); err != nil {
			return nil, err
		}
	}
	inv, err := d.pool(ctx, src.Document.DCID)
	if err != nil {
		return nil, err
	}
	f := &fetcher{d: d, src: src, inv: tg.NewClient(inv)}
	f.setLoc(src.Document)
	return f, nil
}

func (f *fetcher) setLoc(doc *tg.Document) {
	f.loc = &tg.InputDocumentFileLocation{ID: doc.ID, AccessHash: doc.AccessHash, FileReference: doc.FileReference}
	f.gen++
}

func (f *fetcher) location() (*tg.InputDocumentFileLocation, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loc, f.gen
}

func (f *fetcher) refresh(ctx context.Context, gen int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gen != gen {
		return nil // another goroutine already refreshed it
	}
	old := f.src.Document
	if err := f.d.Locate(ctx, f.src); err != nil {
		return fmt.Errorf("refresh file reference: %w", err)
	}
	if old != nil && f.src.Document.ID != old.ID {
		return fmt.Errorf("refresh file reference: message %d now holds another document", f.src.MessageID)
	}
	f.setLoc(f.src.Document)
	return nil
}

// chunk fetches [off, off+DownloadChunk) into buf and returns the bytes.
func (f *fetcher) chunk(ctx context.Context, off int64, buf []byte) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		loc, gen := f.location()
		res, err := f.inv.UploadGetFile(ctx, &tg.UploadGetFileRequest{Location: loc, Offset: off, Limit: DownloadChunk, Precise: false})
		if err == nil {
			file, ok := res.(*tg.UploadFile)
			if !ok {
				return nil, fmt.Errorf("get file at %d: CDN redirect not supported", off)
			}
			return append(buf[:0], file.Bytes...), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if tgerr.Is(err, "FILE_REFERENCE_EXPIRED", "FILE_REFERENCE_INVALID") && attempt < f.d.tries {
			if rerr := f.refresh(ctx, gen); rerr != nil {
				return nil, rerr
			}
			continue
		}
		rpcErr, isRPC := tgerr.As(err)
		if (isRPC && rpcErr.Code < 500 && rpcErr.Code != 420) || attempt >= f.d.tries {
			return nil, fmt.Errorf("get file at %d (attempt %d): %w", off, attempt, err)
		}
		back := min(100*time.Millisecond<<min(attempt-1, 6), 5*time.Second)
		select {
		case <-time.After(back):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Stream writes the document to w in order, with up to threads chunks in
// flight and at most threads+1 chunks in memory.
func (d *Downloader) Stream(ctx context.Context, src *Source, w io.Writer) error {
	f, err := d.newFetcher(ctx, src)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	size := src.Document.Size
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	bufs := make(chan []byte, d.threads+1)
	for range d.threads + 1 {
		bufs <- make([]byte, 0, DownloadChunk)
	}
	order := make(chan chan result, d.threads)
	go func() {
		defer close(order)
		for off := int64(0); off < size; off += DownloadChunk {
			var buf []byte
			select {
			case buf = <-bufs:
			case <-ctx.Done():
				return
			}
			ch := make(chan result, 1)
			select {
			case order <- ch:
			case <-ctx.Done():
				return
			}
			go func(off int64) {
				data, err := f.chunk(ctx, off, buf)
				ch <- result{data, err}
			}(off)
		}
	}()
	var written int64
	for ch := range order {
		r := <-ch
		if r.err != nil {
			return fmt.Errorf("download: %w", r.err)
		}
		want := min(int64(DownloadChunk), size-written)
		if int64(len(r.data)) != want {
			return fmt.Errorf("download: chunk at %d has %d bytes, want %d", written, len(r.data), want)
		}
		if _, err := w.Write(r.data); err != nil {
			return fmt.Errorf("download: write at %d: %w", written, err)
		}
		written += int64(len(r.data))
		bufs <- r.data
	}
	if written != size {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("download: %w", err)
		}
		return fmt.Errorf("download: got %d of %d bytes", written, size)
	}
	return nil
}

// Download writes the document into w (a file) with chunks in parallel.
func (d *Downloader) Download(ctx context.Context, src *Source, w io.WriterAt) error {
	return d.Stream(ctx, src, &offsetWriter{w: w})
}

type offsetWriter struct {
	w   io.WriterAt
	off int64
}

func (o *offsetWriter) Write(p []byte) (int, error) {
	n, err := o.w.WriteAt(p, o.off)
	o.off += int64(n)
	return n, err
}

// Relay pipes a download into an upload with bounded memory and no
// temporary file: the document of src is streamed into up as req's Reader
// (req.Size and req.Reader are set here). Used to re-send a file as a
// streamable video.
func Relay(ctx context.Context, d *Downloader, src *Source, up *Uploader, req UploadRequest) (tg.InputFileClass, error) {
	if src.Document == nil {
		if err := d.Locate(ctx, src); err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dlErr := make(chan error, 1)
	go func() {
		err := d.Stream(ctx, src, pw)
		pw.CloseWithError(errors.Join(err, nil))
		dlErr <- err
	}()
	req.Size = src.Document.Size
	req.Reader, req.ReaderAt = pr, nil
	file, err := up.Upload(ctx, req)
	_ = pr.CloseWithError(errors.New("relay: upload ended"))
	cancel()
	derr := <-dlErr
	if err != nil {
		if derr != nil && !errors.Is(derr, context.Canceled) && !errors.Is(derr, io.ErrClosedPipe) {
			return nil, fmt.Errorf("relay: download: %w", derr)
		}
		return nil, fmt.Errorf("relay: %w", err)
	}
	return file, nil
}

// FileIDSource is the document behind a Bot API file_id that bot received
// as message messageID of Bot API chat chatID: the location, file reference
// and DC are decoded from the file_id itself, so no request is needed until
// the reference expires (then the message is read again: messages.getMessages
// for a private chat, channels.getMessages for a channel). size is the Bot
// API's file_size; 0 makes Open read the message to learn it.
func FileIDSource(ctx context.Context, api *tg.Client, fileID string, size, chatID int64, messageID int) (*Source, error) {
	f, err := fileid.DecodeFileID(fileID)
	if err != nil {
		return nil, fmt.Errorf("file_id source: %w", err)
	}
	loc, err := DecodeDocumentFileID(fileID)
	if err != nil {
		return nil, fmt.Errorf("file_id source: %w", err)
	}
	src := &Source{MessageID: messageID, Document: &tg.Document{
		ID: loc.ID, AccessHash: loc.AccessHash, FileReference: loc.FileReference, DCID: f.DC, Size: size,
	}}
	if chatID < 0 {
		peer, err := ResolveChannel(ctx, api, chatID)
		if err != nil {
			return nil, fmt.Errorf("file_id source: %w", err)
		}
		src.Channel = ChannelFromPeer(peer)
	}
	return src, nil
}

// remoteCacheChunks is how many chunks a RemoteFile keeps for reads that
// are not whole aligned chunks (probes, ffmpeg): a few, so that box headers
// and an index read in small pieces cost one request per chunk.
const remoteCacheChunks = 8

// RemoteFile reads a document at any offset through upload.getFile, in
// 512 KiB aligned chunks: it is the io.ReaderAt that feeds an upload
// straight from a download (no temporary file). A read of exactly one
// aligned chunk (an upload part) goes straight into the caller's buffer;
// other reads go through a small cache.
type RemoteFile struct {
	ctx  context.Context
	f    *fetcher
	size int64

	fetched  atomic.Int64
	requests atomic.Int64

	mu    sync.Mutex
	cache []cachedChunk // most recent last

	// Read-ahead of whole chunks: an upload reads its parts in order, so
	// while a part goes up the next ones are already coming down.
	ahead   int
	pmu     sync.Mutex
	pending map[int64]*pendingChunk
	high    int64 // highest chunk offset claimed or scheduled
}

type pendingChunk struct {
	done chan struct{}
	data []byte
	err  error
}

type cachedChunk struct {
	off  int64
	data []byte
}

// Open prepares reads of src (reading its message first only when the
// document or its size is unknown). Reads end when ctx does.
func (d *Downloader) Open(ctx context.Context, src *Source) (*RemoteFile, error) {
	if src.Document == nil || src.Document.Size <= 0 {
		if err := d.Locate(ctx, src); err != nil {
			return nil, fmt.Errorf("open remote file: %w", err)
		}
	}
	f, err := d.newFetcher(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("open remote file: %w", err)
	}
	return &RemoteFile{ctx: ctx, f: f, size: src.Document.Size, ahead: d.threads, pending: map[int64]*pendingChunk{}, high: -1}, nil
}

// whole reads the aligned chunk at off into buf: from the read-ahead when
// it was fetched (or is being fetched) already, and schedules the next
// chunks no one has claimed yet.
func (r *RemoteFile) whole(off int64, buf []byte) ([]byte, error) {
	r.pmu.Lock()
	pc, ok := r.pending[off]
	if ok {
		delete(r.pending, off)
	}
	r.high = max(r.high, off)
	for o := r.high + DownloadChunk; o <= off+int64(r.ahead)*DownloadChunk && o < r.size; o += DownloadChunk {
		p := &pendingChunk{done: make(chan struct{})}
		r.pending[o] = p
		r.high = o
		go func() {
			defer close(p.done)
			p.data, p.err = r.fetch(o, make([]byte, 0, DownloadChunk))
		}()
	}
	// Chunks fetched ahead that no one read (parts acknowledged before a
	// resume) are dropped once the reads have moved past them.
	for o, p := range r.pending {
		if o < off-2*int64(r.ahead)*DownloadChunk {
			select {
			case <-p.done:
				delete(r.pending, o)
			default:
			}
		}
	}
	r.pmu.Unlock()
	if !ok {
		return r.fetch(off, buf)
	}
	select {
	case <-pc.done:
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	}
	if pc.err != nil {
		// The read-ahead gave up: the part's own read tries again.
		return r.fetch(off, buf)
	}
	return append(buf[:0], pc.data...), nil
}

// Size is the document's size in bytes.
func (r *RemoteFile) Size() int64 { return r.size }

// Fetched is the number of bytes downloaded so far (cache hits excluded).
func (r *RemoteFile) Fetched() int64 { return r.fetched.Load() }

// Requests is the number of upload.getFile chunks fetched so far.
func (r *RemoteFile) Requests() int64 { return r.requests.Load() }

func (r *RemoteFile) fetch(off int64, buf []byte) ([]byte, error) {
	data, err := r.f.chunk(r.ctx, off, buf)
	if err != nil {
		return nil, err
	}
	if want := min(int64(DownloadChunk), r.size-off); int64(len(data)) != want {
		return nil, fmt.Errorf("get file at %d: got %d bytes, want %d", off, len(data), want)
	}
	r.fetched.Add(int64(len(data)))
	r.requests.Add(1)
	return data, nil
}

func (r *RemoteFile) cached(off int64) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.cache {
		if c.off == off {
			r.cache = append(append(r.cache[:i:i], r.cache[i+1:]...), c)
			return c.data, nil
		}
	}
	// Under the lock: concurrent small reads of one chunk fetch it once.
	data, err := r.fetch(off, make([]byte, 0, DownloadChunk))
	if err != nil {
		return nil, err
	}
	if len(r.cache) >= remoteCacheChunks {
		r.cache = r.cache[1:]
	}
	r.cache = append(r.cache, cachedChunk{off: off, data: data})
	return data, nil
}

// ReadAt implements io.ReaderAt.
func (r *RemoteFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("remote file: negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		base := pos - pos%DownloadChunk
		want := min(int64(DownloadChunk), r.size-base)
		if pos == base && int64(len(p)-n) >= want {
			// A whole chunk: fetched into p, no copy, no cache.
			data, err := r.whole(base, p[n:n:n+int(want)])
			if err != nil {
				return n, err
			}
			n += copy(p[n:], data) // data is p[n:] itself: no bytes move
			continue
		}
		data, err := r.cached(base)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[pos-base:])
	}
	return n, nil
}

// RelayRequest is a document to re-upload and post (a private video
// relayed as a streamable video).
type RelayRequest struct {
	// Key identifies the upload and its post across attempts (resume
	// state, random_id).
	Key     string
	Source  *Source
	Name    string
	Peer    tg.InputPeerClass
	Caption string
	// MimeType of the document; empty guesses it from Name.
	MimeType string
	// AsVideo probes the bytes and, when they are a video, posts it as a
	// streamable video with a thumbnail (ffmpeg, when installed).
	AsVideo    bool
	OnProgress func(RelayProgress)
	// OnReady is called once the file is open and probed, before any part
	// is sent (the size is known then).
	OnReady func(RelayInfo)
}

// RelayProgress is an upload's progress plus what the download fetched.
type RelayProgress struct {
	Progress
	Downloaded int64
}

// RelayInfo says how a relayed file was posted.
type RelayInfo struct {
	Size  int64
	Video *VideoMeta // nil: posted as a document
	// NotVideo is why it was not posted as a video (AsVideo set).
	NotVideo error
	Thumb    bool
	// Downloaded and GetFiles are the bytes and upload.getFile chunks
	// fetched in this attempt.
	Downloaded int64
	GetFiles   int64
}

// DeliverRelay re-uploads a document from Telegram and posts it, as one
// pipeline: every upload part is read from upload.getFile as the uploader
// asks for it (a RemoteFile is its io.ReaderAt), so no byte touches the
// disk. A key already posted returns its message id at once; a resumed key
// sends (and so downloads) only the parts Telegram has not acknowledged.
// The probe reads the first and, for an MP4 indexed at its end, the last
// chunks through the same reader; the thumbnail is ffmpeg's, fed over a
// loopback HTTP stream of the same reader (see ThumbnailFromReader).
func DeliverRelay(ctx context.Context, up *Uploader, snd *Sender, dl *Downloader, rr RelayRequest) (int, RelayInfo, error) {
	var info RelayInfo
	if st, ok, err := snd.store.Load(ctx, rr.Key); err != nil {
		return 0, info, fmt.Errorf("relay %q: %w", rr.Key, err)
	} else if ok && st.MessageID != 0 {
		info.Size = st.Size
		return st.MessageID, info, nil
	}
	rf, err := dl.Open(ctx, rr.Source)
	if err != nil {
		return 0, info, fmt.Errorf("relay %q: %w", rr.Key, err)
	}
	info.Size = rf.Size()
	if err := up.CheckSize(info.Size); err != nil {
		return 0, info, fmt.Errorf("relay %q: %w", rr.Key, err)
	}
	mime := rr.MimeType
	if mime == "" || mime == "application/octet-stream" {
		mime = MimeByExt(rr.Name)
	}
	p := Post{Peer: rr.Peer, Name: rr.Name, MimeType: mime, Caption: rr.Caption}
	if rr.AsVideo {
		meta, err := ProbeVideoReader(ctx, rf, rf.Size(), rr.Name, mime)
		if err != nil {
			info.NotVideo = err
			snd.log.InfoContext(ctx, "relayed as a document", "key", rr.Key, "reason", err)
		} else {
			p.Video, info.Video = meta, meta
			if !strings.HasPrefix(p.MimeType, "video/") {
				p.MimeType = "video/mp4"
			}
			jpeg, err := ThumbnailFromReader(ctx, rf, rf.Size(), rr.Name)
			if err == nil {
				p.Thumb, err = up.Upload(ctx, UploadRequest{Key: rr.Key + ":thumb", Name: "thumb.jpg", Size: int64(len(jpeg)), ReaderAt: bytes.NewReader(jpeg)})
			}
			switch {
			case err == nil:
				info.Thumb = true
			case errors.Is(err, ErrNoFFmpeg):
			case ctx.Err() != nil:
				return 0, info, fmt.Errorf("relay %q: %w", rr.Key, ctx.Err())
			default:
				snd.log.WarnContext(ctx, "relay without a thumbnail", "key", rr.Key, "err", err)
			}
		}
	}
	if rr.OnReady != nil {
		rr.OnReady(info)
	}
	req := UploadRequest{Key: rr.Key, Name: rr.Name, Size: rf.Size(), ReaderAt: rf}
	if rr.OnProgress != nil {
		req.OnProgress = func(pr Progress) { rr.OnProgress(RelayProgress{Progress: pr, Downloaded: rf.Fetched()}) }
	}
	id, err := Deliver(ctx, up, snd, req, p)
	info.Downloaded, info.GetFiles = rf.Fetched(), rf.Requests()
	return id, info, err
}

// NewRelayDownloader is a downloader whose home-DC chunks go over a pool
// of its own (threads connections, with the same rate and flood-wait
// middlewares as the upload pool): a relay's getFile calls then do not
// queue behind its own upload parts. Other DCs use c's DC pools. Close
// stops the pool's connections.
func NewRelayDownloader(c *Client, threads int) (*Downloader, io.Closer, error) {
	threads = max(threads, 1)
	raw, err := c.tg.Pool(int64(threads))
	if err != nil {
		return nil, nil, fmt.Errorf("bot %d: download pool: %w", c.opts.BotID, err)
	}
	inv := wrap(raw, c.middlewares(c.opts.PoolRate, 4*threads))
	d := NewDownloader(c).WithThreads(threads)
	d.pool = func(ctx context.Context, dc int) (tg.Invoker, error) {
		if dc == 0 || dc == c.opts.DC {
			return inv, nil
		}
		return c.DCPool(ctx, dc)
	}
	return d, raw, nil
}
