// Package streamtest is a multi-DC MTProto file server for streaming tests
// and benchmarks, on gotd's tgtest/cluster: several DCs, each serving the
// documents it holds with upload.getFile under Telegram's request rules
// (precise: 1 KiB multiples, at most 1 MiB, never across a 1 MiB boundary;
// otherwise 4 KiB multiples dividing 1 MiB), FILE_MIGRATE_X for a document
// of another DC, a file reference per bot and document that expires on
// demand (refreshed by channels.getMessages), auth export/import between
// DCs, per-bot faults and per-request latency. Documents are files on disk
// or generated content (any size, nothing stored), and every getFile is
// counted per bot.
package streamtest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotd/td/fileid"
	"github.com/gotd/td/telegram/dcs"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"github.com/gotd/td/tgtest"
	"github.com/gotd/td/tgtest/cluster"
)

// Options configure a server.
type Options struct {
	// DCs served (default 2 and 4); the first is every bot's home DC.
	DCs []int
	// Latency is added before answering each upload.getFile.
	Latency time.Duration
}

// FaultKind is what a bot's fault answers to getFile.
type FaultKind int

const (
	// Internal answers 500 INTERNAL.
	Internal FaultKind = iota + 1
	// FloodWait answers 420 FLOOD_WAIT_<Seconds>.
	FloodWait
	// Revoked answers 401 AUTH_KEY_UNREGISTERED (a bot logged out).
	Revoked
)

// Fault makes a bot's getFile requests fail after After of them succeeded.
type Fault struct {
	Kind    FaultKind
	After   int64
	Seconds int
}

// Document is a file posted in a channel.
type Document struct {
	ID        int64
	DC        int
	ChannelID int64 // MTProto channel id (no -100 prefix)
	MessageID int
	Name      string
	MimeType  string
	Size      int64
	Content   io.ReaderAt
	Attrs     []tg.DocumentAttributeClass
}

// Server is a running cluster.
type Server struct {
	opts    Options
	cluster *cluster.Cluster
	cancel  context.CancelFunc
	done    chan struct{}
	latency atomic.Int64

	mu       sync.Mutex
	auth     map[[8]byte]int64 // auth key id -> bot user id (auth keys are per DC)
	exported map[string]int64
	docs     map[int64]*Document
	refs     map[[2]int64][]byte // (bot, doc) -> file reference
	faults   map[int64]Fault
	calls    map[int64]int64 // getFile requests per bot
	okCalls  map[int64]int64
	methods  map[string]int
	inFlight int
	nextID   int64
}

// New starts a cluster for the test and stops it when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start runs a cluster until Close.
func Start(opts Options) (*Server, error) {
	if len(opts.DCs) == 0 {
		opts.DCs = []int{2, 4}
	}
	s := &Server{opts: opts, done: make(chan struct{}),
		auth: map[[8]byte]int64{}, exported: map[string]int64{}, docs: map[int64]*Document{},
		refs: map[[2]int64][]byte{}, faults: map[int64]Fault{}, calls: map[int64]int64{},
		okCalls: map[int64]int64{}, methods: map[string]int{}, nextID: 1000}
	s.latency.Store(int64(opts.Latency))
	c := cluster.NewCluster(cluster.Options{Config: tg.Config{
		Date: int(time.Now().Unix()), Expires: int(time.Now().Add(time.Hour).Unix()),
		DCTxtDomainName: "localhost", ChatSizeMax: 200, MegagroupSizeMax: 200000,
		MeURLPrefix: "https://t.me/", CaptionLengthMax: 1024, MessageLengthMax: 4096,
	}})
	for _, dc := range opts.DCs {
		s.register(dc, c.Dispatch(dc, fmt.Sprintf("dc%d", dc)))
	}
	s.cluster = c
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	errc := make(chan error, 1)
	go func() {
		defer close(s.done)
		if err := c.Up(ctx); err != nil && ctx.Err() == nil {
			errc <- err
		}
	}()
	select {
	case <-c.Ready():
		return s, nil
	case err := <-errc:
		cancel()
		return nil, fmt.Errorf("streamtest: up: %w", err)
	case <-time.After(10 * time.Second):
		cancel()
		return nil, errors.New("streamtest: cluster not ready in 10s")
	}
}

// Close stops the cluster.
func (s *Server) Close() {
	s.cancel()
	<-s.done
}

// HomeDC is the DC bots log in to.
func (s *Server) HomeDC() int { return s.opts.DCs[0] }

// Addr is the host:port of dc (MTPROTO_DC_ADDR for the home DC).
func (s *Server) Addr(dc int) string {
	for _, o := range s.cluster.List().Options {
		if o.ID == dc {
			return fmt.Sprintf("%s:%d", o.IPAddress, o.Port)
		}
	}
	return ""
}

// List is the DC list (for clients built directly on gotd).
func (s *Server) List() dcs.List { return s.cluster.List() }

// Cluster is the underlying cluster (its Keys and Resolver).
func (s *Server) Cluster() *cluster.Cluster { return s.cluster }

// PublicKeysPEM is every DC's RSA key (MTPROTO_PUBLIC_KEY content).
func (s *Server) PublicKeysPEM() []byte {
	var out []byte
	for _, k := range s.cluster.Keys() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k.RSA)})...)
	}
	return out
}

// SetLatency changes the per-getFile latency.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetFault makes bot's getFile requests fail (see Fault); ClearFault ends it.
func (s *Server) SetFault(bot int64, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[bot] = f
	s.okCalls[bot] = 0
}

// ClearFault removes bot's fault.
func (s *Server) ClearFault(bot int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.faults, bot)
}

// GetFileCalls is the number of getFile requests from bot (0: every bot).
func (s *Server) GetFileCalls(bot int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if bot != 0 {
		return s.calls[bot]
	}
	var n int64
	for _, c := range s.calls {
		n += c
	}
	return n
}

// InFlight is the number of getFile requests being answered now.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Calls is how often a method (TL name) was called, on any DC.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.methods[method]
}

// Add stores a document (its ID is assigned when zero) and returns it.
func (s *Server) Add(d Document) *Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.ID == 0 {
		s.nextID++
		d.ID = s.nextID
	}
	if d.DC == 0 {
		d.DC = s.HomeDC()
	}
	dd := d
	s.docs[d.ID] = &dd
	return &dd
}

// FileID is the Bot API file_id bot holds for doc: its own access hash and
// file reference, and the DC given (normally doc.DC; another DC tests
// FILE_MIGRATE).
func (s *Server) FileID(bot int64, doc *Document, dc int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := fileid.EncodeFileID(fileid.FileID{Type: fileid.Document, DC: dc, ID: doc.ID,
		AccessHash: accessHash(bot, doc.ID), FileReference: s.refLocked(bot, doc.ID)})
	if err != nil {
		panic(err)
	}
	return id
}

// ExpireReferences rotates every file reference: getFile with an old one
// answers FILE_REFERENCE_EXPIRED until channels.getMessages gives a new one.
func (s *Server) ExpireReferences() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.refs {
		s.refs[k] = randBytes(16)
	}
}

func (s *Server) refLocked(bot, doc int64) []byte {
	k := [2]int64{bot, doc}
	if r, ok := s.refs[k]; ok {
		return r
	}
	r := randBytes(16)
	s.refs[k] = r
	return r
}

func accessHash(bot, doc int64) int64 { return doc*1_000_003 ^ bot*7919 }

// ChannelAccessHash is the access hash of a channel for every bot.
func ChannelAccessHash(channelID int64) int64 { return channelID*7919 + 13 }

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// ---- request handling ----

var errUnauthorized = tgerr.New(401, "AUTH_KEY_UNREGISTERED")

func (s *Server) count(m string) {
	s.mu.Lock()
	s.methods[m]++
	s.mu.Unlock()
}

func (s *Server) user(req *tgtest.Request) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uid, ok := s.auth[req.Session.AuthKey.ID]
	return uid, ok
}

func botUser(id int64) *tg.User {
	return &tg.User{ID: id, Bot: true, Self: true, AccessHash: id * 31, FirstName: "stream bot", Username: fmt.Sprintf("stream_%d_bot", id)}
}

func channel(id int64) *tg.Channel {
	return &tg.Channel{ID: id, AccessHash: ChannelAccessHash(id), Title: fmt.Sprintf("channel %d", id), Photo: &tg.ChatPhotoEmpty{}, Date: 1, Broadcast: true}
}

func (s *Server) register(dc int, d *tgtest.Dispatcher) {
	d.HandleFunc(tg.AuthImportBotAuthorizationRequestTypeID, func(srv *tgtest.Server, req *tgtest.Request) error {
		var r tg.AuthImportBotAuthorizationRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		s.count("auth.importBotAuthorization")
		var uid int64
		if _, err := fmt.Sscanf(r.BotAuthToken, "%d:", &uid); err != nil || uid <= 0 {
			return tgerr.New(400, "ACCESS_TOKEN_INVALID")
		}
		s.mu.Lock()
		s.auth[req.Session.AuthKey.ID] = uid
		s.mu.Unlock()
		return srv.SendResult(req, &tg.AuthAuthorization{User: botUser(uid)})
	})
	d.HandleFunc(tg.AuthExportAuthorizationRequestTypeID, func(srv *tgtest.Server, req *tgtest.Request) error {
		var r tg.AuthExportAuthorizationRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		s.count("auth.exportAuthorization")
		uid, ok := s.user(req)
		if !ok {
			return errUnauthorized
		}
		b := randBytes(32)
		s.mu.Lock()
		s.exported[string(b)] = uid
		s.mu.Unlock()
		return srv.SendResult(req, &tg.AuthExportedAuthorization{ID: uid, Bytes: b})
	})
	d.HandleFunc(tg.AuthImportAuthorizationRequestTypeID, func(srv *tgtest.Server, req *tgtest.Request) error {
		var r tg.AuthImportAuthorizationRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		s.count("auth.importAuthorization")
		s.mu.Lock()
		uid, ok := s.exported[string(r.Bytes)]
		if ok && uid == r.ID {
			s.auth[req.Session.AuthKey.ID] = uid
		}
		s.mu.Unlock()
		if !ok || uid != r.ID {
			return tgerr.New(400, "AUTH_BYTES_INVALID")
		}
		return srv.SendResult(req, &tg.AuthAuthorization{User: botUser(uid)})
	})
	d.HandleFunc(tg.UsersGetUsersRequestTypeID, func(srv *tgtest.Server, req *tgtest.Request) error {
		var r tg.UsersGetUsersRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		uid, ok := s.user(req)
		if !ok {
			return errUnauthorized
		}
		return srv.SendResult(req, &tg.UserClassVector{Elems: []tg.UserClass{botUser(uid)}})
	})
	d.HandleFunc(tg.ChannelsGetChannelsRequestTypeID, func(srv *tgtest.Server, req *tgtest.Request) error {
		var r tg.ChannelsGetChannelsRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		s.count("channels.getChannels")
		if _, ok := s.user(req); !ok {
			return errUnauthorized
		}
		var chats []tg.ChatClass
		for _, c := range r.ID {
			ic, ok := c.(*tg.InputChannel)
			if !ok {
				return tgerr.New(400, "CHANNEL_INVALID")
			}
			chats = append(chats, channel(ic.ChannelID))
		}
		return srv.SendResult(req, &tg.MessagesChats{Chats: chats})
	})
	d.HandleFunc(tg.ChannelsGetMessagesRequestTypeID, func(srv *tgtest.Server, req *tgtest.Request) error {
		var r tg.ChannelsGetMessagesRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.getMessages(srv, req, &r)
	})
	d.HandleFunc(tg.UploadGetFileRequestTypeID, func(srv *tgtest.Server, req *tgtest.Request) error {
		var r tg.UploadGetFileRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.getFile(srv, req, dc, &r)
	})
}

func (s *Server) getMessages(srv *tgtest.Server, req *tgtest.Request, r *tg.ChannelsGetMessagesRequest) error {
	s.count("channels.getMessages")
	uid, ok := s.user(req)
	if !ok {
		return errUnauthorized
	}
	ch, ok := r.Channel.(*tg.InputChannel)
	if !ok || ch.AccessHash != ChannelAccessHash(ch.ChannelID) {
		return tgerr.New(400, "CHANNEL_INVALID")
	}
	var msgs []tg.MessageClass
	s.mu.Lock()
	for _, im := range r.ID {
		id, ok := im.(*tg.InputMessageID)
		if !ok {
			continue
		}
		var found tg.MessageClass = &tg.MessageEmpty{ID: id.ID}
		for _, d := range s.docs {
			if d.ChannelID == ch.ChannelID && d.MessageID == id.ID {
				doc := &tg.Document{ID: d.ID, AccessHash: accessHash(uid, d.ID), FileReference: s.refLocked(uid, d.ID),
					Date: int(time.Now().Unix()), MimeType: d.MimeType, Size: d.Size, DCID: d.DC,
					Attributes: append([]tg.DocumentAttributeClass{&tg.DocumentAttributeFilename{FileName: d.Name}}, d.Attrs...)}
				found = &tg.Message{ID: d.MessageID, Post: true, PeerID: &tg.PeerChannel{ChannelID: d.ChannelID},
					Date: int(time.Now().Unix()), Media: &tg.MessageMediaDocument{Document: doc}}
			}
		}
		msgs = append(msgs, found)
	}
	s.mu.Unlock()
	return srv.SendResult(req, &tg.MessagesChannelMessages{Messages: msgs, Count: len(msgs),
		Chats: []tg.ChatClass{channel(ch.ChannelID)}, Users: []tg.UserClass{}, Topics: []tg.ForumTopicClass{}})
}

// checkLimits applies Telegram's upload.getFile rules.
func checkLimits(off int64, limit int, precise bool) bool {
	const kib, mib = 1 << 10, 1 << 20
	if off < 0 || limit <= 0 || limit > mib {
		return false
	}
	if precise {
		return off%kib == 0 && limit%kib == 0 && off/mib == (off+int64(limit)-1)/mib
	}
	return off%(4*kib) == 0 && limit%(4*kib) == 0 && mib%limit == 0 && off/mib == (off+int64(limit)-1)/mib
}

func (s *Server) getFile(srv *tgtest.Server, req *tgtest.Request, dc int, r *tg.UploadGetFileRequest) error {
	uid, ok := s.user(req)
	s.mu.Lock()
	s.methods["upload.getFile"]++
	s.calls[uid]++
	s.inFlight++
	f, faulty := s.faults[uid]
	fire := faulty && s.okCalls[uid] >= f.After
	if !fire {
		s.okCalls[uid]++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-req.RequestCtx.Done():
			t.Stop()
			return req.RequestCtx.Err()
		}
	}
	if !ok {
		return errUnauthorized
	}
	if fire {
		switch f.Kind {
		case FloodWait:
			return tgerr.New(420, fmt.Sprintf("FLOOD_WAIT_%d", max(f.Seconds, 1)))
		case Revoked:
			return errUnauthorized
		default:
			return tgerr.New(500, "INTERNAL")
		}
	}
	loc, ok := r.Location.(*tg.InputDocumentFileLocation)
	if !ok {
		return tgerr.New(400, "LOCATION_INVALID")
	}
	s.mu.Lock()
	d := s.docs[loc.ID]
	var ref []byte
	if d != nil {
		ref = s.refLocked(uid, d.ID)
	}
	s.mu.Unlock()
	switch {
	case d == nil || loc.AccessHash != accessHash(uid, d.ID):
		return tgerr.New(400, "FILE_ID_INVALID")
	case d.DC != dc:
		return tgerr.New(303, fmt.Sprintf("FILE_MIGRATE_%d", d.DC))
	case string(ref) != string(loc.FileReference):
		return tgerr.New(400, "FILE_REFERENCE_EXPIRED")
	case !checkLimits(r.Offset, r.Limit, r.Precise):
		return tgerr.New(400, "LIMIT_INVALID")
	case r.Offset >= d.Size:
		// Telegram answers past the end with no bytes (gotd's parallel
		// downloader stops on that).
		return srv.SendResult(req, &tg.UploadFile{Type: &tg.StorageFilePartial{}, Mtime: 1, Bytes: []byte{}})
	}
	n := min(int64(r.Limit), d.Size-r.Offset)
	buf := make([]byte, n)
	if _, err := d.Content.ReadAt(buf, r.Offset); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read document: %w", err)
	}
	return srv.SendResult(req, &tg.UploadFile{Type: &tg.StorageFilePartial{}, Mtime: 1, Bytes: buf})
}

// Generated is seekable pseudo-random content (AES-CTR keyed by Seed): a
// 2000 MiB document costs no disk, and any range is quick to compute for
// checking.
type Generated struct {
	block cipher.Block
	size  int64
}

// NewGenerated is size bytes of content derived from seed.
func NewGenerated(seed uint64, size int64) *Generated {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	return &Generated{block: b, size: size}
}

// Size is the content's length.
func (g *Generated) Size() int64 { return g.size }

// ReadAt implements io.ReaderAt.
func (g *Generated) ReadAt(p []byte, off int64) (int, error) {
	if off >= g.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := g.size - off; int64(n) > rest {
		n = int(rest)
	}
	var iv [16]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(off/16))
	stream := cipher.NewCTR(g.block, iv[:])
	skip := int(off % 16)
	if skip > 0 {
		var junk [16]byte
		stream.XORKeyStream(junk[:skip], junk[:skip])
	}
	clear(p[:n])
	stream.XORKeyStream(p[:n], p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
