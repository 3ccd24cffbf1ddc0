package mtproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// DownloadChunk is the upload.getFile request size: it divides 1 MiB, so
// aligned chunks never cross a 1 MiB boundary as Telegram requires.
const DownloadChunk = 512 * 1024

// Source is a document in a channel message. The message is how an expired
// file reference is refreshed.
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
// reference).
func (d *Downloader) Locate(ctx context.Context, src *Source) error {
	res, err := d.api.ChannelsGetMessages(ctx, &tg.ChannelsGetMessagesRequest{
		Channel: src.Channel, ID: []tg.InputMessageClass{&tg.InputMessageID{ID: src.MessageID}},
	})
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
	if err := f.d.Locate(ctx, f.src); err != nil {
		return fmt.Errorf("refresh file reference: %w", err)
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
