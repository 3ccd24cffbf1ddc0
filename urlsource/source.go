package urlsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Errors a caller tells apart.
var (
	// ErrTooLarge: the file is over Options.MaxSize.
	ErrTooLarge = errors.New("file too large")
	// ErrChanged: the file changed on the server while it was read.
	ErrChanged = errors.New("the file changed on the server while it was read")
	// ErrEmpty: the server has an empty file.
	ErrEmpty = errors.New("the file is empty")
)

// StatusError is an HTTP answer that is not the file.
type StatusError struct {
	Code   int
	Status string
}

func (e *StatusError) Error() string { return "the server answered " + e.Status }

// Options configure Open.
type Options struct {
	// Guard checks every address dialled; nil refuses every internal one.
	Guard *Guard
	// Parallel is the number of Range requests in flight (default 4).
	Parallel int
	// ChunkSize is the bytes asked per Range request (default 2 MiB).
	ChunkSize int64
	// ReadAhead is the number of chunks fetched ahead of the reader
	// (default 2×Parallel). A chunk is freed once all its bytes were read,
	// or when it falls ReadAhead chunks behind the furthest asked for, so
	// memory held is at most 2×ReadAhead×ChunkSize.
	ReadAhead int
	// SpoolDir receives the spool file of a server without Range support
	// (deleted by Close); required for such servers.
	SpoolDir string
	// MaxSize refuses bigger files before anything is read (0: no limit);
	// it also bounds the spool of a file of unknown size.
	MaxSize int64
	// Transport replaces the guarded transport (tests of the reader alone).
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Source is an open URL. ReadAt is safe for concurrent use; reads are
// expected to go forward, as the upload pipeline's do: chunks well behind
// the furthest read are dropped (read again if asked for).
type Source struct {
	// Name is the file name from Content-Disposition, else the URL's path.
	Name string
	// Size in bytes (Content-Range or Content-Length; counted when spooled).
	Size int64
	// Ranges: read with Range requests; false: read from the spool.
	Ranges bool
	// Validator is the ETag (or Last-Modified) the file was opened with.
	Validator string

	url    string
	opts   Options
	client *http.Client
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	work   *sync.Cond // signalled when queue grows or ctx ends
	chunks map[int64]*chunk
	queue  []*chunk // waiting for a fetcher
	high   int64
	// Fetched counts Range requests that returned their bytes.
	fetched int

	spool *spool
}

type chunk struct {
	off  int64
	n    int64
	data []byte
	err  error
	done chan struct{}
	// dropped: the reader moved on before a fetcher took it (under mu).
	dropped bool
	// read counts bytes copied out (under mu); at n the chunk is freed.
	read int64
}

func (o *Options) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 2 << 20
	}
	if o.ReadAhead <= 0 {
		o.ReadAhead = 2 * o.Parallel
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Guard == nil {
		o.Guard, _ = NewGuard(nil)
	}
}

// CheckURL refuses what is not an absolute http(s) URL with a host, and a
// host that is a forbidden IP literal.
func CheckURL(raw string, g *Guard) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("only http and https URLs can be fetched, not %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("the URL has no host")
	}
	if g != nil {
		if err := g.CheckLiteral(u.Hostname()); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// Open asks the server for the file's size, name and Range support (one
// GET of its first byte) and returns a Source reading it under ctx. A
// server without Range support streams the file into a spool file the
// reads wait on; one that gives no size is spooled whole first.
func Open(ctx context.Context, raw string, opts Options) (*Source, error) {
	opts.defaults()
	if _, err := CheckURL(raw, opts.Guard); err != nil {
		return nil, err
	}
	rt := opts.Transport
	if rt == nil {
		rt = &http.Transport{
			DialContext:           opts.Guard.DialContext,
			Proxy:                 nil, // a proxy would dial for us, unchecked
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   opts.Parallel + 1,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			IdleConnTimeout:       90 * time.Second,
		}
	}
	client := &http.Client{Transport: rt, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("more than 5 redirects")
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to a %q URL", req.URL.Scheme)
		}
		return nil
	}}
	sctx, cancel := context.WithCancelCause(ctx)
	s := &Source{url: raw, opts: opts, client: client, log: opts.Logger, ctx: sctx, cancel: cancel,
		chunks: map[int64]*chunk{}}
	s.work = sync.NewCond(&s.mu)
	context.AfterFunc(sctx, func() { s.mu.Lock(); s.work.Broadcast(); s.mu.Unlock() })
	if err := s.probe(); err != nil {
		s.Close()
		return nil, err
	}
	if s.Ranges {
		for range opts.Parallel {
			go s.fetcher()
		}
	}
	return s, nil
}

func (s *Source) newRequest(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	// Explicit identity: no transparent gzip, whose sizes and ranges
	// would not be the file's.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "ferry (+https://github.com/ferry-dev/ferry)")
	return req, nil
}

func (s *Source) probe() error {
	req, err := s.newRequest(s.ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Range", "bytes=0-0")
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", redact(s.url), err)
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close() // a 200's body is the spool's to read and close
	}
	if res.Request != nil && res.Request.URL != nil {
		s.url = res.Request.URL.String() // after redirects: the ranges go there
	}
	s.Name = fileName(res)
	s.Validator = validator(res.Header)
	switch res.StatusCode {
	case http.StatusPartialContent:
		total, ok := contentRangeTotal(res.Header.Get("Content-Range"))
		if ok {
			s.Size, s.Ranges = total, true
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<10))
			return s.checkSize()
		}
		// A range of a file of unknown size: read it whole instead.
		res.Body.Close()
		return s.spoolFresh()
	case http.StatusOK:
		return s.startSpool(res)
	case http.StatusRequestedRangeNotSatisfiable:
		return ErrEmpty
	}
	return &StatusError{Code: res.StatusCode, Status: res.Status}
}

func (s *Source) checkSize() error {
	if s.Size == 0 {
		return ErrEmpty
	}
	if s.opts.MaxSize > 0 && s.Size > s.opts.MaxSize {
		return fmt.Errorf("%w: %d bytes, over the %d bytes limit", ErrTooLarge, s.Size, s.opts.MaxSize)
	}
	return nil
}

// spoolFresh reads the file whole with a plain GET into the spool.
func (s *Source) spoolFresh() error {
	req, err := s.newRequest(s.ctx)
	if err != nil {
		return err
	}
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", redact(s.url), err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return &StatusError{Code: res.StatusCode, Status: res.Status}
	}
	return s.startSpool(res)
}

// startSpool streams res's body into the spool file; with a known size the
// reads start at once and wait for the bytes they need, without one the
// file is spooled whole before Open returns (the upload must know its size).
// A known size over MaxSize is refused before anything is read.
func (s *Source) startSpool(res *http.Response) error {
	s.Size = res.ContentLength
	if s.Size >= 0 {
		if err := s.checkSize(); err != nil {
			res.Body.Close()
			return err
		}
	}
	if s.opts.SpoolDir == "" {
		res.Body.Close()
		return errors.New("the server does not support Range requests and no spool directory is set")
	}
	if err := os.MkdirAll(s.opts.SpoolDir, 0o700); err != nil {
		res.Body.Close()
		return fmt.Errorf("spool: %w", err)
	}
	f, err := os.CreateTemp(s.opts.SpoolDir, "url-*.part")
	if err != nil {
		res.Body.Close()
		return fmt.Errorf("spool: %w", err)
	}
	sp := &spool{f: f, limit: s.opts.MaxSize, size: s.Size}
	sp.cond = sync.NewCond(&sp.mu)
	s.spool = sp
	context.AfterFunc(s.ctx, func() { sp.mu.Lock(); sp.cond.Broadcast(); sp.mu.Unlock() })
	if s.Size >= 0 {
		go sp.fill(res.Body)
		return nil
	}
	sp.fill(res.Body)
	sp.mu.Lock()
	n, err := sp.n, sp.err
	sp.mu.Unlock()
	if err != nil {
		return err
	}
	s.Size = n
	sp.size = n
	return s.checkSize()
}

// Close stops every fetch and deletes the spool file.
func (s *Source) Close() error {
	s.cancel(errors.New("source closed"))
	if s.spool != nil {
		s.spool.mu.Lock()
		for !s.spool.done {
			s.spool.cond.Wait()
		}
		s.spool.mu.Unlock()
		name := s.spool.f.Name()
		s.spool.f.Close()
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove spool: %w", err)
		}
	}
	return nil
}

// RangeRequests is how many Range requests returned their bytes.
func (s *Source) RangeRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetched
}

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the end).
func (s *Source) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= s.Size {
		return 0, io.EOF
	}
	if !s.Ranges {
		return s.spool.readAt(s.ctx, p, off)
	}
	n := 0
	for n < len(p) && off < s.Size {
		c := s.chunkAt(off / s.opts.ChunkSize)
		select {
		case <-c.done:
		case <-s.ctx.Done():
			return n, context.Cause(s.ctx)
		}
		if errors.Is(c.err, errDropped) {
			continue // asked again after the reader moved on: fetch it anew
		}
		if c.err != nil {
			return n, c.err
		}
		m := copy(p[n:], c.data[off-c.off:])
		s.consumed(c, m)
		n += m
		off += int64(m)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// consumed frees c once every byte of it was read: parallel readers finish
// a chunk out of order, so freeing by position alone would drop a chunk a
// slow reader still needs and fetch it twice.
func (s *Source) consumed(c *chunk, m int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.read += int64(m)
	if idx := c.off / s.opts.ChunkSize; c.read >= c.n && s.chunks[idx] == c {
		delete(s.chunks, idx)
	}
}

// chunkAt returns chunk idx, queueing it and the read-ahead after it, and
// drops chunks ReadAhead behind the furthest asked for (a reader gave up on
// them, or reads went backwards).
func (s *Source) chunkAt(idx int64) *chunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idx > s.high {
		s.high = idx
		for k, c := range s.chunks {
			if k < s.high-int64(s.opts.ReadAhead) {
				c.dropped = true
				delete(s.chunks, k)
			}
		}
	}
	for i := idx; i < idx+int64(s.opts.ReadAhead) && i*s.opts.ChunkSize < s.Size; i++ {
		if _, ok := s.chunks[i]; !ok {
			off := i * s.opts.ChunkSize
			c := &chunk{off: off, n: min(s.opts.ChunkSize, s.Size-off), done: make(chan struct{})}
			s.chunks[i] = c
			s.queue = append(s.queue, c)
			s.work.Signal()
		}
	}
	return s.chunks[idx]
}

// fetcher takes the lowest queued chunk, so the one a reader waits for
// goes before the read-ahead behind it.
func (s *Source) fetcher() {
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && s.ctx.Err() == nil {
			s.work.Wait()
		}
		if s.ctx.Err() != nil {
			for _, c := range s.queue {
				c.err = context.Cause(s.ctx)
				close(c.done)
			}
			s.queue = nil
			s.mu.Unlock()
			return
		}
		lo := 0
		for i, c := range s.queue {
			if c.off < s.queue[lo].off {
				lo = i
			}
		}
		c := s.queue[lo]
		s.queue = append(s.queue[:lo], s.queue[lo+1:]...)
		dropped := c.dropped
		s.mu.Unlock()
		if dropped {
			c.err = errDropped
			close(c.done)
			continue
		}
		s.fetch(c)
	}
}

var errDropped = errors.New("chunk dropped before it was read")

func (s *Source) fetch(c *chunk) {
	defer close(c.done)
	for attempt := 1; ; attempt++ {
		data, err := s.getRange(c.off, c.n)
		if err == nil {
			c.data = data
			s.mu.Lock()
			s.fetched++
			s.mu.Unlock()
			return
		}
		if s.ctx.Err() != nil {
			c.err = context.Cause(s.ctx)
			return
		}
		if !retryable(err) || attempt >= 5 {
			c.err = fmt.Errorf("bytes %d-%d (attempt %d): %w", c.off, c.off+c.n-1, attempt, err)
			return
		}
		s.log.Debug("retrying a range", "offset", c.off, "attempt", attempt, "err", err)
		t := time.NewTimer(time.Duration(attempt*attempt) * 250 * time.Millisecond)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			c.err = context.Cause(s.ctx)
			return
		}
	}
}

func (s *Source) getRange(off, n int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	req, err := s.newRequest(ctx)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	if s.Validator != "" {
		req.Header.Set("If-Range", s.Validator)
	}
	res, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusOK:
		// If-Range failed (or Range was ignored): not the file we opened.
		return nil, ErrChanged
	case res.StatusCode != http.StatusPartialContent:
		return nil, &StatusError{Code: res.StatusCode, Status: res.Status}
	}
	start, total, ok := contentRange(res.Header.Get("Content-Range"))
	if !ok || start != off || (total >= 0 && total != s.Size) {
		return nil, fmt.Errorf("%w (Content-Range %q)", ErrChanged, res.Header.Get("Content-Range"))
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return buf, nil
}

// retryable: a network error, a 5xx or 429; not a changed file nor a 4xx.
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests
	}
	return !errors.Is(err, ErrChanged)
}

// spool is a file being written in order while readers wait for the bytes
// they need.
type spool struct {
	f     *os.File
	limit int64
	size  int64 // -1 until known

	mu   sync.Mutex
	cond *sync.Cond
	n    int64
	done bool
	err  error
}

func (sp *spool) fill(body io.ReadCloser) {
	defer body.Close()
	buf := make([]byte, 1<<20)
	var err error
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			sp.mu.Lock()
			off := sp.n
			sp.mu.Unlock()
			if sp.limit > 0 && off+int64(m) > sp.limit {
				err = fmt.Errorf("%w: over the %d bytes limit", ErrTooLarge, sp.limit)
				break
			}
			if _, werr := sp.f.WriteAt(buf[:m], off); werr != nil {
				err = fmt.Errorf("spool: %w", werr)
				break
			}
			sp.mu.Lock()
			sp.n += int64(m)
			sp.cond.Broadcast()
			sp.mu.Unlock()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = fmt.Errorf("read body: %w", rerr)
			break
		}
	}
	sp.mu.Lock()
	if err == nil && sp.size >= 0 && sp.n != sp.size {
		err = fmt.Errorf("%w: got %d of %d bytes", ErrChanged, sp.n, sp.size)
	}
	sp.err, sp.done = err, true
	sp.cond.Broadcast()
	sp.mu.Unlock()
}

func (sp *spool) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	want := off + int64(len(p))
	sp.mu.Lock()
	for sp.n < want && !sp.done && ctx.Err() == nil {
		sp.cond.Wait()
	}
	n, err := sp.n, sp.err
	sp.mu.Unlock()
	if ctx.Err() != nil {
		return 0, context.Cause(ctx)
	}
	if n < want && err != nil {
		return 0, err
	}
	return sp.f.ReadAt(p[:min(int64(len(p)), max(n-off, 0))], off)
}

// contentRange parses "bytes START-END/TOTAL" (TOTAL -1 for "*").
func contentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	span, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(tot, 10, 64)
	return start, total, err == nil
}

func contentRangeTotal(v string) (int64, bool) {
	_, total, ok := contentRange(v)
	return total, ok && total >= 0
}

// validator is a strong ETag, else Last-Modified, for If-Range.
func validator(h http.Header) string {
	if e := h.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") {
		return e
	}
	return h.Get("Last-Modified")
}

// fileName is Content-Disposition's filename, else the last segment of the
// URL's path, else "download"; reduced to a plain base name.
func fileName(res *http.Response) string {
	var name string
	if _, params, err := mime.ParseMediaType(res.Header.Get("Content-Disposition")); err == nil {
		name = params["filename"]
	}
	if name == "" && res.Request != nil && res.Request.URL != nil {
		name = path.Base(res.Request.URL.Path)
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '/' || r == '\\' {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(path.Base("/" + name))
	if name == "" || name == "/" || name == "." || name == ".." {
		return "download"
	}
	return name
}

// redact drops a URL's user info and query from error messages (they may
// carry credentials).
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the URL"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
