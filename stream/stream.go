// Package stream serves GET|HEAD /dl/{unique_id}/{name}?exp=…&sig=…: a
// signed, expiring link that streams an indexed file from Telegram over
// MTProto with HTTP Range support. The bot is one that holds a file_id for
// the file, the least loaded and not in flood wait; a bot that fails is
// replaced by the next holder, before the first byte transparently and
// mid-stream at the exact offset where it stopped.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gotd/td/tgerr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/mtproto"
)

// Files finds an indexed file; *index.Indexer is one.
type Files interface {
	GetFile(ctx context.Context, uniqueID string) (db.File, error)
}

// Holders lists the bots holding a file_id for a file, best first;
// *botpool.Pool is one.
type Holders interface {
	Holders(ctx context.Context, uniqueID string) ([]db.Holder, error)
}

// Clients gives a bot's started MTProto client; *jobs.MTProtoClients is one.
type Clients interface {
	Client(ctx context.Context, botID int64) (*mtproto.Client, error)
}

// Options configure a Handler.
type Options struct {
	Files   Files
	Holders Holders
	Clients Clients
	// Pools are the streaming connection pools (one per bot and DC).
	Pools *mtproto.StreamPools
	// Links checks signatures; nil serves nothing (links are off).
	Links *links.Signer
	// Window is the number of 1 MiB blocks in flight per stream (default
	// 4); memory per stream is Window+1 blocks.
	Window int
	// PerBot and PerIP cap concurrent streams (0: no cap).
	PerBot, PerIP int
	// MarkFloodWait records a bot's flood wait for every process (the
	// database's bot_load); optional.
	MarkFloodWait func(ctx context.Context, botID int64, until time.Time)
	// ClientIP names the client for the per-IP limit (default: the
	// connection's remote address).
	ClientIP func(*http.Request) string
	// Registerer receives the metrics; nil records none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// Handler is the /dl/ handler.
type Handler struct {
	o       Options
	log     *slog.Logger
	metrics *Metrics
	load    *load
}

// New builds the handler.
func New(o Options) *Handler {
	if o.Window <= 0 {
		o.Window = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ClientIP == nil {
		o.ClientIP = remoteIP
	}
	h := &Handler{o: o, log: o.Logger, load: newLoad(o.PerBot, o.PerIP)}
	if o.Registerer != nil {
		h.metrics = NewMetrics(o.Registerer)
	}
	return h
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// uniqueIDRE is the shape of a Bot API file_unique_id.
var uniqueIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{4,64}$`)

// ServeHTTP implements http.Handler for /dl/{unique_id}/{name}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	h.serve(rec, r, start)
	if h.metrics != nil {
		h.metrics.requests.WithLabelValues(strconv.Itoa(rec.status())).Inc()
	}
}

func (h *Handler) serve(w *recorder, r *http.Request, start time.Time) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		page(w, http.StatusMethodNotAllowed, "Method not allowed", "Streams answer GET and HEAD.")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/dl/")
	id, _, _ := strings.Cut(rest, "/")
	if !ok || !uniqueIDRE.MatchString(id) {
		page(w, http.StatusNotFound, "No such file", "This link does not name a file.")
		return
	}
	if h.o.Links == nil {
		page(w, http.StatusNotFound, "Links are off", "This server has no LINK_SECRET, so it serves no file links.")
		return
	}
	q := r.URL.Query()
	disp := links.DispositionOf(q)
	if err := h.o.Links.Verify(id, q.Get("exp"), q.Get("sig"), disp, h.o.Now()); err != nil {
		if errors.Is(err, links.ErrExpired) {
			page(w, http.StatusForbidden, "Link expired", "This link has expired. Ask the bot for a fresh one (/get).")
		} else {
			page(w, http.StatusForbidden, "Link not valid", "This link's signature does not match. Ask the bot for a fresh one (/get).")
		}
		return
	}
	ip := h.o.ClientIP(r)
	if !h.load.acquireIP(ip) {
		w.Header().Set("Retry-After", "5")
		page(w, http.StatusTooManyRequests, "Too many streams", "You have too many streams open at once. Close one and try again.")
		return
	}
	defer h.load.releaseIP(ip)

	ctx := r.Context()
	f, err := h.o.Files.GetFile(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		page(w, http.StatusNotFound, "No such file", "This file is not in the index.")
		return
	}
	if err != nil {
		h.log.WarnContext(ctx, "stream: file lookup", "unique_id", id, "err", err)
		page(w, http.StatusServiceUnavailable, "Try again", "The index is not reachable right now.")
		return
	}
	holders, err := h.o.Holders.Holders(ctx, id)
	if err != nil {
		h.log.WarnContext(ctx, "stream: holders", "unique_id", id, "err", err)
		page(w, http.StatusServiceUnavailable, "Try again", "The index is not reachable right now.")
		return
	}
	s := &session{h: h, file: f, holders: holders, tried: map[int64]bool{}}
	defer s.close()
	first, err := s.open(ctx, nil)
	if err != nil {
		if errors.Is(err, errLimited) {
			w.Header().Set("Retry-After", "10")
			page(w, http.StatusTooManyRequests, "Busy", "Every bot that holds this file is serving as many streams as it may. Try again in a few seconds.")
			return
		}
		h.log.WarnContext(ctx, "stream: no bot can serve", "unique_id", id, "err", err)
		page(w, http.StatusBadGateway, "Not available", "No bot can fetch this file from Telegram right now.")
		return
	}
	if h.metrics != nil {
		h.metrics.inFlight.Inc()
		defer h.metrics.inFlight.Dec()
	}
	src := mtproto.NewFailover(first, s.next)
	sk := &seeker{ctx: ctx, src: src, size: f.Size, window: h.o.Window, hints: rangeHints(r.Header.Get("Range"), f.Size)}
	defer sk.Close()

	name := f.Name
	if name == "" {
		name = f.UniqueID
	}
	hd := w.Header()
	ctype := f.MimeType
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	// Set, so ServeContent never sniffs (a read of 512 bytes).
	hd.Set("Content-Type", ctype)
	hd.Set("Content-Disposition", contentDisposition(string(disp), name))
	hd.Set("ETag", `"`+f.UniqueID+`"`)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "private, max-age=3600")

	w.hold = true
	w.onFirst = func() {
		if h.metrics != nil {
			h.metrics.firstByte.Observe(time.Since(start).Seconds())
		}
	}
	w.onBytes = func(n int) {
		if h.metrics != nil {
			h.metrics.bytes.Add(float64(n))
		}
	}
	// http.ServeContent owns the HTTP rules (single and multi ranges,
	// suffix and open-ended ranges, 416, If-Range against the strong ETag,
	// If-None-Match, HEAD). The seeker learns each range's end from the
	// Range header (rangeHints) only to size its prefetch: a multi-range
	// request fetches each sub-range with its own window and never reads
	// past it, and a wrong hint costs a new stream, never wrong bytes.
	http.ServeContent(w, r, name, f.CreatedAt, sk)
	if sk.err != nil && !w.wrote && ctx.Err() == nil {
		// Nothing was sent yet: the held 200/206 becomes an error page.
		h.log.WarnContext(ctx, "stream failed before the first byte", "unique_id", id, "err", sk.err)
		for _, k := range []string{"Content-Length", "Content-Range", "ETag", "Content-Disposition", "Last-Modified", "Accept-Ranges", "Cache-Control"} {
			hd.Del(k)
		}
		w.hold, w.held = false, 0
		page(w, http.StatusBadGateway, "Not available", "No bot can fetch this file from Telegram right now.")
		return
	}
	w.flushHeld()
	if sk.err != nil && ctx.Err() == nil {
		h.log.WarnContext(ctx, "stream cut", "unique_id", id, "err", sk.err)
	}
}

var errLimited = errors.New("every holder is at its stream limit")

// session is one request's bot choice: the bots tried and the one
// serving, whose stream slot it holds.
type session struct {
	h       *Handler
	file    db.File
	holders []db.Holder
	tried   map[int64]bool
	cur     int64 // bot holding a slot (0: none)
}

// open picks the next bot and opens the file through it; failed is the
// error of the bot it replaces (nil for the first).
func (s *session) open(ctx context.Context, failed error) (mtproto.BlockReader, error) {
	var errs []error
	if failed != nil {
		errs = append(errs, failed)
	}
	for {
		hd, ok, limited := s.h.load.pick(s.holders, s.tried, s.h.o.Now())
		if !ok {
			if limited && failed == nil {
				return nil, errLimited
			}
			if len(s.holders) == 0 {
				errs = append(errs, errors.New("no bot holds this file"))
			}
			return nil, errors.Join(append(errs, mtproto.ErrNoSource)...)
		}
		s.tried[hd.BotID] = true
		s.cur = hd.BotID
		c, err := s.h.o.Clients.Client(ctx, hd.BotID)
		if err == nil {
			var bf *mtproto.BotFile
			// The reference is refreshed from the post this bot saw the file
			// in: another bot's post may be in a channel it is not in.
			chat, msg := hd.ChatID, hd.MessageID
			if chat == 0 {
				chat, msg = s.file.ChatID, s.file.MessageID
			}
			bf, err = s.h.o.Pools.OpenFile(c, hd.FileID, chat, int(msg))
			if err == nil {
				bf.OnRefresh = func() {
					if s.h.metrics != nil {
						s.h.metrics.refreshes.Inc()
					}
				}
				return &botReader{BotFile: bf, s: s}, nil
			}
		}
		s.release()
		s.h.load.markBad(hd.BotID, s.h.o.Now().Add(30*time.Second))
		errs = append(errs, fmt.Errorf("bot %d: %w", hd.BotID, err))
		if ctx.Err() != nil {
			return nil, errors.Join(errs...)
		}
	}
}

// next is the Failover's next function: it notes why the current bot
// failed and moves to the next holder.
func (s *session) next(ctx context.Context, failed error) (mtproto.BlockReader, error) {
	bot := s.cur
	now := s.h.o.Now()
	if d, ok := tgerr.AsFloodWait(failed); ok {
		s.h.load.markBad(bot, now.Add(d))
		if s.h.o.MarkFloodWait != nil {
			s.h.o.MarkFloodWait(context.WithoutCancel(ctx), bot, now.Add(d))
		}
	} else {
		s.h.load.markBad(bot, now.Add(30*time.Second))
	}
	s.h.log.WarnContext(ctx, "stream: bot failed; moving to the next holder", "unique_id", s.file.UniqueID, "bot_id", bot, "err", failed)
	s.release()
	r, err := s.open(ctx, failed)
	if err == nil && s.h.metrics != nil {
		s.h.metrics.failovers.Inc()
	}
	return r, err
}

func (s *session) release() {
	if s.cur != 0 {
		s.h.load.release(s.cur)
		s.cur = 0
	}
}

func (s *session) close() { s.release() }

type botReader struct {
	*mtproto.BotFile
	s *session
}

// seeker is the io.ReadSeeker http.ServeContent reads: each Read continues
// a RangeStream at the current offset, started on first need.
type seeker struct {
	ctx    context.Context
	src    mtproto.BlockReader
	size   int64
	window int
	hints  []httpRange

	pos    int64
	cur    *mtproto.RangeStream
	curPos int64
	curEnd int64
	err    error
}

func (s *seeker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.size
	default:
		return 0, errors.New("stream: bad whence")
	}
	if off < 0 {
		return 0, errors.New("stream: negative position")
	}
	s.pos = off
	return off, nil
}

func (s *seeker) Read(p []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if s.cur == nil || s.curPos != s.pos || s.curPos >= s.curEnd {
		if s.cur != nil {
			_ = s.cur.Close()
		}
		s.curEnd = s.endFor(s.pos)
		s.cur = mtproto.NewRangeStream(s.ctx, s.src, s.size, s.pos, s.curEnd, s.window)
		s.curPos = s.pos
	}
	n, err := s.cur.Read(p)
	s.pos += int64(n)
	s.curPos += int64(n)
	if err == io.EOF && s.pos < s.size {
		err = nil // the hint ended; the next Read starts a new stream
	}
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// endFor is the end of the requested range that starts at off (the
// file's end when none does).
func (s *seeker) endFor(off int64) int64 {
	for _, r := range s.hints {
		if r.start == off {
			return r.end
		}
	}
	return s.size
}

func (s *seeker) Close() error {
	if s.cur != nil {
		return s.cur.Close()
	}
	return nil
}

// httpRange is [start, end).
type httpRange struct{ start, end int64 }

// rangeHints parses a Range header as far as the prefetch needs; anything
// odd yields no hints (ServeContent still decides the answer).
func rangeHints(h string, size int64) []httpRange {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil
	}
	var out []httpRange
	for _, part := range strings.Split(spec, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok {
			return nil
		}
		if a == "" {
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil || n <= 0 {
				return nil
			}
			out = append(out, httpRange{max(size-n, 0), size})
			continue
		}
		start, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return nil
		}
		end := size
		if b != "" {
			e, err := strconv.ParseInt(b, 10, 64)
			if err != nil {
				return nil
			}
			end = min(e+1, size)
		}
		out = append(out, httpRange{start, end})
	}
	return out
}

// contentDisposition is RFC 6266: filename* (RFC 8187, by
// mime.FormatMediaType) for any name, with an ASCII filename beside it for
// old clients when the name is not plain ASCII.
func contentDisposition(disp, name string) string {
	v := mime.FormatMediaType(disp, map[string]string{"filename": name})
	if v == "" {
		return disp
	}
	if strings.Contains(v, "filename*=") {
		fallback := []rune(name)
		for i, r := range fallback {
			if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
				fallback[i] = '_'
			}
		}
		v += `; filename="` + string(fallback) + `"`
	}
	return v
}

// recorder holds a 200/206 status until the first byte of content, so a
// stream that fails before it can still answer with an error page; it
// counts what it writes.
type recorder struct {
	http.ResponseWriter
	hold    bool
	held    int
	code    int
	wrote   bool
	onFirst func()
	onBytes func(int)
}

func (w *recorder) WriteHeader(code int) {
	if w.hold && (code == http.StatusOK || code == http.StatusPartialContent) && !w.wrote {
		w.held = code
		return
	}
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.held != 0 && !w.wrote {
		w.wrote = true
		w.code = w.held
		w.ResponseWriter.WriteHeader(w.held)
		if w.onFirst != nil {
			w.onFirst()
		}
	}
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	if w.onBytes != nil && w.held != 0 {
		w.onBytes(n)
	}
	return n, err
}

// flushHeld sends a held status that no content followed (HEAD, empty
// ranges).
func (w *recorder) flushHeld() {
	if w.held != 0 && !w.wrote {
		w.wrote = true
		w.code = w.held
		w.ResponseWriter.WriteHeader(w.held)
	}
}

func (w *recorder) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
