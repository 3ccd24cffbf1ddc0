// Package mtprototest is a local MTProto server for tests and benchmarks,
// built on gotd's tgtest: it speaks the real protocol (key exchange, AES-IGE,
// the TL schema) and implements what ferry's upload engine uses: bot login,
// upload.saveFilePart / saveBigFilePart (parts kept on disk),
// messages.sendMedia (idempotent on random_id; reassembles the file, checks
// parts and size, records its sha256), channels.getChannels,
// channels.getMessages and upload.getFile. It can inject FLOOD_WAIT, 500
// INTERNAL, dropped connections and per-request latency, and runs in-process
// (New, Start) or as its own process (./mtserver).
package mtprototest

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/crypto"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"github.com/gotd/td/tgtest"
	"github.com/gotd/td/transport"
)

// maxPart is the slot size of a part on disk: part i of any file lives at
// i*maxPart in the file's part store (sparse when parts are smaller).
const maxPart = 512 * 1024

// Method names used to target faults and latency.
const (
	MethodUploadPart = "upload"    // saveFilePart and saveBigFilePart
	MethodSendMedia  = "sendMedia" // messages.sendMedia
	MethodGetFile    = "getFile"   // upload.getFile
)

// FaultKind is what an injected fault does.
type FaultKind int

const (
	// FloodWait answers 420 FLOOD_WAIT_<Seconds>.
	FloodWait FaultKind = iota + 1
	// Internal answers 500 INTERNAL.
	Internal
	// Drop closes the connection without answering.
	Drop
)

func (k FaultKind) String() string {
	switch k {
	case FloodWait:
		return "flood_wait"
	case Internal:
		return "internal"
	case Drop:
		return "drop"
	}
	return "unknown"
}

// Fault injects Kind into requests of Method with probability Rate, at most
// Max times (0: no cap). AfterParts delays it until that many part requests
// have arrived.
type Fault struct {
	Method     string    `json:"method"`
	Kind       FaultKind `json:"kind"`
	Rate       float64   `json:"rate"`
	Max        int       `json:"max"`
	Seconds    int       `json:"seconds"`
	AfterParts int64     `json:"after_parts"`
	fired      int
}

// Options configure a server.
type Options struct {
	// Dir keeps parts and assembled files (required; use t.TempDir()).
	Dir string
	// Addr to listen on, default 127.0.0.1:0.
	Addr string
	// DC id served, default 2.
	DC int
	// Latency is added before answering every upload, getFile and
	// sendMedia request.
	Latency time.Duration
	// Logger, optional.
	Logger *slog.Logger
	// Seed makes fault selection reproducible.
	Seed uint64
	// PremiumUser is a user account that can sign in (auth.go); nil: none.
	PremiumUser *PremiumUser
}

// Post is one message the server accepted into a channel.
type Post struct {
	ChannelID int64
	MessageID int
	RandomID  int64
	Caption   string
	Name      string
	MimeType  string
	Size      int64
	SHA256    string
	Path      string // assembled file on disk
	DocID     int64
	Video     *tg.DocumentAttributeVideo
	HasThumb  bool
	Parts     int
	Big       bool
}

type upFile struct {
	user       int64
	fileID     int64
	f          *os.File
	lens       map[int]int
	big        bool
	totalParts int
	receipts   int
	perPart    map[int]int
}

type document struct {
	id, access int64
	ref        []byte
	path       string
	size       int64
	mime       string
	attrs      []tg.DocumentAttributeClass
	post       *Post
}

// Server is a running test server.
type Server struct {
	opts   Options
	log    *slog.Logger
	key    *rsa.PrivateKey
	srv    *tgtest.Server
	l      net.Listener
	cancel context.CancelFunc
	done   chan struct{}

	latency atomic.Int64

	mu         sync.Mutex
	rng        *mrand.Rand
	authorized map[[8]byte]int64
	files      map[[2]int64]*upFile // (user, file id)
	posts      []*Post
	byRandom   map[[2]int64]*Post // (channel, random id)
	docs       map[int64]*document
	private    map[privateKey]privateMessage // documents.go
	nextMsg    map[int64]int
	faults     []*Fault
	injected   map[FaultKind]int
	partReqs   int64
	partBytes  int64
	logins     int
	methods    map[string]int
	users      userAuth // auth.go
}

// Start runs a server until ctx ends or Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("mtprototest: Dir is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.DC == 0 {
		opts.DC = 2
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"parts", "files"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("mtprototest: %w", err)
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, crypto.RSAKeyBits)
	if err != nil {
		return nil, fmt.Errorf("mtprototest: rsa key: %w", err)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	s := &Server{
		opts: opts, log: opts.Logger, key: key,
		rng:        mrand.New(mrand.NewPCG(seed, 42)),
		authorized: map[[8]byte]int64{},
		files:      map[[2]int64]*upFile{},
		byRandom:   map[[2]int64]*Post{},
		docs:       map[int64]*document{},
		nextMsg:    map[int64]int{},
		injected:   map[FaultKind]int{},
		methods:    map[string]int{},
		done:       make(chan struct{}),
	}
	s.latency.Store(int64(opts.Latency))
	if err := os.WriteFile(s.KeyPath(), s.PublicKeyPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("mtprototest: write key: %w", err)
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("mtprototest: listen: %w", err)
	}
	s.l = l
	s.srv = tgtest.NewServer(tgtest.NewPrivateKey(key), tgtest.UnpackInvoke(tgtest.HandlerFunc(s.onMessage)), tgtest.ServerOptions{
		DC:          opts.DC,
		ReadTimeout: 10 * time.Minute,
	})
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ctx, transport.Listen(l)); err != nil && ctx.Err() == nil {
			s.log.Error("mtprototest: serve", "err", err)
		}
	}()
	return s, nil
}

// TB is the part of testing.TB that New needs.
type TB interface {
	Helper()
	TempDir() string
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// New starts an in-process server for a test, with Dir under t.TempDir()
// unless set, and stops it when the test ends.
func New(t TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("mtprototest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.cancel()
	_ = s.l.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		_ = f.f.Close()
	}
}

// Addr is the host:port clients dial (MTPROTO_DC_ADDR).
func (s *Server) Addr() string { return s.l.Addr().String() }

// DC is the DC id served.
func (s *Server) DC() int { return s.opts.DC }

// PublicKeyPEM is the server's RSA public key (MTPROTO_PUBLIC_KEY content).
func (s *Server) PublicKeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&s.key.PublicKey)})
}

// KeyPath is where PublicKeyPEM is written, for another process.
func (s *Server) KeyPath() string { return filepath.Join(s.opts.Dir, "server_key.pem") }

// SetLatency changes the per-request latency.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// InjectFaults adds faults (see Fault).
func (s *Server) InjectFaults(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range f {
		ff := f[i]
		s.faults = append(s.faults, &ff)
	}
}

// ClearFaults removes all faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// Injected returns how many faults of kind fired.
func (s *Server) Injected(kind FaultKind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.injected[kind]
}

// PartRequests is the number of part requests that were stored (faulted
// ones excluded), over all files.
func (s *Server) PartRequests() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partReqs
}

// PartBytes is the number of part bytes stored.
func (s *Server) PartBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partBytes
}

// Logins is the number of auth.importBotAuthorization calls accepted.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Calls returns how often a method (TL name, e.g. "messages.sendMedia") was
// called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.methods[method]
}

// FileStats describes the parts received for one Telegram file id.
type FileStats struct {
	FileID   int64
	Receipts int // part requests stored, repeats included
	Distinct int // distinct parts held
}

// Files returns per-file part counters.
func (s *Server) Files() []FileStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []FileStats
	for _, f := range s.files {
		out = append(out, FileStats{FileID: f.fileID, Receipts: f.receipts, Distinct: len(f.lens)})
	}
	return out
}

// Posts returns the accepted posts in order.
func (s *Server) Posts() []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Post, len(s.posts))
	for i, p := range s.posts {
		out[i] = *p
	}
	return out
}

// ForgetParts drops every uploaded part, like Telegram after some hours:
// a later sendMedia with those file ids answers FILE_PARTS_INVALID.
func (s *Server) ForgetParts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, f := range s.files {
		_ = f.f.Close()
		_ = os.Remove(f.f.Name())
		delete(s.files, k)
	}
}

// ExpireFileReferences rotates every document's file reference: getFile
// with an old one answers FILE_REFERENCE_EXPIRED until it is refreshed
// through channels.getMessages.
func (s *Server) ExpireFileReferences() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.docs {
		d.ref = randBytes(16)
	}
}

// ChannelAccessHash is the access hash the server gives channel id.
func ChannelAccessHash(channelID int64) int64 { return channelID*7919 + 13 }

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randInt63() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63))
}

// ---- request handling ----

var errUnauthorized = tgerr.New(401, "AUTH_KEY_UNREGISTERED")

func (s *Server) onMessage(srv *tgtest.Server, req *tgtest.Request) error {
	id, err := req.Buf.PeekID()
	if err != nil {
		return err
	}
	if handled, err := s.onUserMessage(srv, req, id); handled { // auth.go
		return err
	}
	switch id {
	case tg.HelpGetConfigRequestTypeID:
		var r tg.HelpGetConfigRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		s.count("help.getConfig")
		return srv.SendResult(req, s.config())
	case tg.AuthImportBotAuthorizationRequestTypeID:
		var r tg.AuthImportBotAuthorizationRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.importBot(srv, req, &r)
	case tg.UsersGetUsersRequestTypeID:
		var r tg.UsersGetUsersRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		s.count("users.getUsers")
		uid, ok := s.user(req)
		if !ok {
			return errUnauthorized
		}
		return srv.SendResult(req, &tg.UserClassVector{Elems: []tg.UserClass{botUser(uid)}})
	case tg.UploadSaveBigFilePartRequestTypeID:
		var r tg.UploadSaveBigFilePartRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.savePart(srv, req, "upload.saveBigFilePart", r.FileID, r.FilePart, r.FileTotalParts, true, r.Bytes)
	case tg.UploadSaveFilePartRequestTypeID:
		var r tg.UploadSaveFilePartRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.savePart(srv, req, "upload.saveFilePart", r.FileID, r.FilePart, 0, false, r.Bytes)
	case tg.MessagesSendMediaRequestTypeID:
		var r tg.MessagesSendMediaRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.sendMedia(srv, req, &r)
	case tg.ChannelsGetChannelsRequestTypeID:
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
	case tg.ChannelsGetMessagesRequestTypeID:
		var r tg.ChannelsGetMessagesRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.getMessages(srv, req, &r)
	case tg.MessagesGetMessagesRequestTypeID:
		var r tg.MessagesGetMessagesRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.getPrivateMessages(srv, req, &r)
	case tg.UploadGetFileRequestTypeID:
		var r tg.UploadGetFileRequest
		if err := r.Decode(req.Buf); err != nil {
			return err
		}
		return s.getFile(srv, req, &r)
	}
	s.count(fmt.Sprintf("unknown#%x", id))
	return tgerr.New(400, "METHOD_NOT_IMPLEMENTED")
}

func (s *Server) count(method string) {
	s.mu.Lock()
	s.methods[method]++
	s.mu.Unlock()
}

func (s *Server) config() *tg.Config {
	host, portS, _ := net.SplitHostPort(s.Addr())
	port, _ := strconv.Atoi(portS)
	return &tg.Config{
		Date:                    int(time.Now().Unix()),
		Expires:                 int(time.Now().Add(time.Hour).Unix()),
		ThisDC:                  s.opts.DC,
		DCOptions:               []tg.DCOption{{ID: s.opts.DC, IPAddress: host, Port: port, Static: true}},
		DCTxtDomainName:         "localhost",
		ChatSizeMax:             200,
		MegagroupSizeMax:        200000,
		ForwardedCountMax:       100,
		OnlineUpdatePeriodMs:    120000,
		OfflineBlurTimeoutMs:    5000,
		OfflineIdleTimeoutMs:    30000,
		OnlineCloudTimeoutMs:    300000,
		NotifyCloudDelayMs:      30000,
		NotifyDefaultDelayMs:    1500,
		PushChatPeriodMs:        60000,
		PushChatLimit:           2,
		EditTimeLimit:           172800,
		RevokeTimeLimit:         2147483647,
		RevokePmTimeLimit:       2147483647,
		RatingEDecay:            2419200,
		StickersRecentLimit:     200,
		ChannelsReadMediaPeriod: 604800,
		CallReceiveTimeoutMs:    20000,
		CallRingTimeoutMs:       90000,
		CallConnectTimeoutMs:    30000,
		CallPacketTimeoutMs:     10000,
		MeURLPrefix:             "https://t.me/",
		CaptionLengthMax:        1024,
		MessageLengthMax:        4096,
		WebfileDCID:             s.opts.DC,
	}
}

func botUser(id int64) *tg.User {
	return &tg.User{ID: id, Bot: true, Self: true, AccessHash: id * 31, FirstName: "ferry test bot", Username: fmt.Sprintf("ferry_test_%d_bot", id)}
}

func channel(id int64) *tg.Channel {
	return &tg.Channel{ID: id, AccessHash: ChannelAccessHash(id), Title: fmt.Sprintf("channel %d", id), Photo: &tg.ChatPhotoEmpty{}, Date: 1, Broadcast: true}
}

func (s *Server) user(req *tgtest.Request) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uid, ok := s.authorized[req.Session.AuthKey.ID]
	return uid, ok
}

func (s *Server) importBot(srv *tgtest.Server, req *tgtest.Request, r *tg.AuthImportBotAuthorizationRequest) error {
	s.count("auth.importBotAuthorization")
	if r.APIID == 0 || r.APIHash == "" {
		return tgerr.New(400, "API_ID_INVALID")
	}
	idPart, secret, ok := strings.Cut(r.BotAuthToken, ":")
	uid, err := strconv.ParseInt(idPart, 10, 64)
	if !ok || err != nil || uid <= 0 || secret == "" {
		return tgerr.New(400, "ACCESS_TOKEN_INVALID")
	}
	s.mu.Lock()
	s.authorized[req.Session.AuthKey.ID] = uid
	s.logins++
	s.mu.Unlock()
	return srv.SendResult(req, &tg.AuthAuthorization{User: botUser(uid)})
}

func (s *Server) sleep(ctx context.Context) {
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// fault picks an injected fault for method, if any fires.
func (s *Server) fault(method string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Method != method || (f.Max > 0 && f.fired >= f.Max) || s.partReqs < f.AfterParts {
			continue
		}
		if s.rng.Float64() < f.Rate {
			f.fired++
			s.injected[f.Kind]++
			return f
		}
	}
	return nil
}

// applyFault answers req with f. For Drop it closes the connection and
// returns nil (no answer).
func (s *Server) applyFault(srv *tgtest.Server, req *tgtest.Request, f *Fault) error {
	switch f.Kind {
	case FloodWait:
		sec := f.Seconds
		if sec <= 0 {
			sec = 1
		}
		return tgerr.New(420, fmt.Sprintf("FLOOD_WAIT_%d", sec))
	case Internal:
		return tgerr.New(500, "INTERNAL")
	case Drop:
		srv.ForceDisconnect(req.Session)
		return nil
	}
	return nil
}

func (s *Server) savePart(srv *tgtest.Server, req *tgtest.Request, method string, fileID int64, part, total int, big bool, data []byte) error {
	s.count(method)
	s.sleep(req.RequestCtx)
	uid, ok := s.user(req)
	if !ok {
		return errUnauthorized
	}
	if f := s.fault(MethodUploadPart); f != nil {
		return s.applyFault(srv, req, f)
	}
	switch {
	case len(data) == 0:
		return tgerr.New(400, "FILE_PART_EMPTY")
	case len(data) > maxPart:
		return tgerr.New(400, "FILE_PART_TOO_BIG")
	case part < 0 || (big && (total <= 0 || total > 8000 || part >= total)) || (!big && part >= 4000):
		return tgerr.New(400, "FILE_PART_INVALID")
	}
	k := [2]int64{uid, fileID}
	s.mu.Lock()
	uf := s.files[k]
	if uf == nil {
		path := filepath.Join(s.opts.Dir, "parts", fmt.Sprintf("%d_%d", uid, fileID))
		fh, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("open part store: %w", err)
		}
		uf = &upFile{user: uid, fileID: fileID, f: fh, lens: map[int]int{}, perPart: map[int]int{}, big: big, totalParts: total}
		s.files[k] = uf
	}
	if big && uf.totalParts != total {
		s.mu.Unlock()
		return tgerr.New(400, "FILE_PARTS_INVALID")
	}
	fh := uf.f
	s.mu.Unlock()
	// WriteAt is safe concurrently on distinct ranges.
	if _, err := fh.WriteAt(data, int64(part)*maxPart); err != nil {
		return fmt.Errorf("write part: %w", err)
	}
	s.mu.Lock()
	uf.lens[part] = len(data)
	uf.receipts++
	uf.perPart[part]++
	s.partReqs++
	s.partBytes += int64(len(data))
	s.mu.Unlock()
	return srv.SendBool(req, true)
}

// assemble checks the parts of in and returns the finished document's path,
// size, sha256 and md5.
func (s *Server) assemble(uid int64, in tg.InputFileClass) (path string, size int64, sum string, parts int, big bool, err error) {
	var fileID int64
	var md5want string
	switch f := in.(type) {
	case *tg.InputFileBig:
		fileID, parts, big = f.ID, f.Parts, true
	case *tg.InputFile:
		fileID, parts, md5want = f.ID, f.Parts, f.MD5Checksum
	default:
		return "", 0, "", 0, false, tgerr.New(400, "FILE_PARTS_INVALID")
	}
	s.mu.Lock()
	uf := s.files[[2]int64{uid, fileID}]
	var lens []int
	if uf != nil {
		for i := 0; i < parts; i++ {
			n, ok := uf.lens[i]
			if !ok {
				s.mu.Unlock()
				return "", 0, "", 0, false, tgerr.New(400, fmt.Sprintf("FILE_PART_%d_MISSING", i))
			}
			lens = append(lens, n)
		}
	}
	s.mu.Unlock()
	if uf == nil || parts <= 0 || (big && uf.totalParts != parts) || len(uf.lens) != parts {
		return "", 0, "", 0, false, tgerr.New(400, "FILE_PARTS_INVALID")
	}
	for i := 0; i < parts-1; i++ {
		if lens[i] != lens[0] {
			return "", 0, "", 0, false, tgerr.New(400, "FILE_PART_SIZE_CHANGED")
		}
	}
	if lens[parts-1] > lens[0] {
		return "", 0, "", 0, false, tgerr.New(400, "FILE_PART_SIZE_CHANGED")
	}
	out := filepath.Join(s.opts.Dir, "files", fmt.Sprintf("%d_%d", uid, fileID))
	o, err := os.Create(out)
	if err != nil {
		return "", 0, "", 0, false, fmt.Errorf("create file: %w", err)
	}
	defer o.Close()
	h, m := sha256.New(), md5.New()
	w := io.MultiWriter(o, h, m)
	for i, n := range lens {
		if _, err := io.Copy(w, io.NewSectionReader(uf.f, int64(i)*maxPart, int64(n))); err != nil {
			return "", 0, "", 0, false, fmt.Errorf("assemble: %w", err)
		}
		size += int64(n)
	}
	if md5want != "" && hex.EncodeToString(m.Sum(nil)) != strings.ToLower(md5want) {
		return "", 0, "", 0, false, tgerr.New(400, "MD5_CHECKSUM_INVALID")
	}
	if !big && size > 10*1024*1024 {
		return "", 0, "", 0, false, tgerr.New(400, "FILE_PARTS_INVALID")
	}
	return out, size, hex.EncodeToString(h.Sum(nil)), parts, big, nil
}

func (s *Server) sendMedia(srv *tgtest.Server, req *tgtest.Request, r *tg.MessagesSendMediaRequest) error {
	s.count("messages.sendMedia")
	// Assembling a big file takes a while: ack now so the client does not
	// re-send the request (tgtest never acks by itself).
	_ = srv.SendAck(req.RequestCtx, req.Session, req.MsgID)
	s.sleep(req.RequestCtx)
	uid, ok := s.user(req)
	if !ok {
		return errUnauthorized
	}
	if f := s.fault(MethodSendMedia); f != nil {
		return s.applyFault(srv, req, f)
	}
	peer, ok := r.Peer.(*tg.InputPeerChannel)
	if !ok || peer.AccessHash != ChannelAccessHash(peer.ChannelID) {
		return tgerr.New(400, "CHANNEL_INVALID")
	}
	if r.RandomID == 0 {
		return tgerr.New(400, "RANDOM_ID_EMPTY")
	}
	rk := [2]int64{peer.ChannelID, r.RandomID}
	s.mu.Lock()
	if p := s.byRandom[rk]; p != nil {
		d := s.docs[p.DocID]
		s.mu.Unlock()
		return srv.SendResult(req, s.updates(p, d))
	}
	s.mu.Unlock()

	media, ok := r.Media.(*tg.InputMediaUploadedDocument)
	if !ok {
		return tgerr.New(400, "MEDIA_INVALID")
	}
	path, size, sum, parts, big, err := s.assemble(uid, media.File)
	if err != nil {
		return err
	}
	p := &Post{ChannelID: peer.ChannelID, RandomID: r.RandomID, Caption: r.Message, MimeType: media.MimeType,
		Size: size, SHA256: sum, Path: path, Parts: parts, Big: big, HasThumb: media.Thumb != nil}
	for _, a := range media.Attributes {
		switch a := a.(type) {
		case *tg.DocumentAttributeFilename:
			p.Name = a.FileName
		case *tg.DocumentAttributeVideo:
			v := *a
			p.Video = &v
		}
	}
	if p.HasThumb {
		// The thumbnail must have been uploaded too.
		if _, _, _, _, _, err := s.assemble(uid, media.Thumb); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if q := s.byRandom[rk]; q != nil { // raced with a re-sent request
		d := s.docs[q.DocID]
		s.mu.Unlock()
		return srv.SendResult(req, s.updates(q, d))
	}
	s.nextMsg[peer.ChannelID]++
	p.MessageID = s.nextMsg[peer.ChannelID]
	d := &document{id: randInt63(), access: randInt63(), ref: randBytes(16), path: path, size: size, mime: media.MimeType, attrs: media.Attributes, post: p}
	p.DocID = d.id
	s.docs[d.id] = d
	s.posts = append(s.posts, p)
	s.byRandom[rk] = p
	s.mu.Unlock()
	return srv.SendResult(req, s.updates(p, d))
}

func (s *Server) tgDocument(d *document) *tg.Document {
	s.mu.Lock()
	ref := append([]byte(nil), d.ref...)
	s.mu.Unlock()
	return &tg.Document{ID: d.id, AccessHash: d.access, FileReference: ref, Date: int(time.Now().Unix()),
		MimeType: d.mime, Size: d.size, DCID: s.opts.DC, Attributes: d.attrs}
}

func (s *Server) message(p *Post, d *tg.Document) *tg.Message {
	return &tg.Message{ID: p.MessageID, Post: true, PeerID: &tg.PeerChannel{ChannelID: p.ChannelID},
		Date: int(time.Now().Unix()), Message: p.Caption, Media: &tg.MessageMediaDocument{Document: d}}
}

func (s *Server) updates(p *Post, d *document) *tg.Updates {
	return &tg.Updates{
		Updates: []tg.UpdateClass{
			&tg.UpdateMessageID{ID: p.MessageID, RandomID: p.RandomID},
			&tg.UpdateNewChannelMessage{Message: s.message(p, s.tgDocument(d)), Pts: p.MessageID, PtsCount: 1},
		},
		Chats: []tg.ChatClass{channel(p.ChannelID)},
		Users: []tg.UserClass{},
		Date:  int(time.Now().Unix()),
	}
}

func (s *Server) getMessages(srv *tgtest.Server, req *tgtest.Request, r *tg.ChannelsGetMessagesRequest) error {
	s.count("channels.getMessages")
	if _, ok := s.user(req); !ok {
		return errUnauthorized
	}
	ch, ok := r.Channel.(*tg.InputChannel)
	if !ok || ch.AccessHash != ChannelAccessHash(ch.ChannelID) {
		return tgerr.New(400, "CHANNEL_INVALID")
	}
	var msgs []tg.MessageClass
	for _, im := range r.ID {
		id, ok := im.(*tg.InputMessageID)
		if !ok {
			continue
		}
		var found *Post
		var doc *document
		s.mu.Lock()
		for _, p := range s.posts {
			if p.ChannelID == ch.ChannelID && p.MessageID == id.ID {
				found, doc = p, s.docs[p.DocID]
			}
		}
		s.mu.Unlock()
		if found == nil {
			msgs = append(msgs, &tg.MessageEmpty{ID: id.ID})
			continue
		}
		msgs = append(msgs, s.message(found, s.tgDocument(doc)))
	}
	return srv.SendResult(req, &tg.MessagesChannelMessages{Messages: msgs, Count: len(msgs), Chats: []tg.ChatClass{channel(ch.ChannelID)},
		Users: []tg.UserClass{}, Topics: []tg.ForumTopicClass{}})
}

func (s *Server) getFile(srv *tgtest.Server, req *tgtest.Request, r *tg.UploadGetFileRequest) error {
	s.count("upload.getFile")
	s.sleep(req.RequestCtx)
	if _, ok := s.user(req); !ok {
		return errUnauthorized
	}
	if f := s.fault(MethodGetFile); f != nil {
		return s.applyFault(srv, req, f)
	}
	loc, ok := r.Location.(*tg.InputDocumentFileLocation)
	if !ok {
		return tgerr.New(400, "LOCATION_INVALID")
	}
	s.mu.Lock()
	d := s.docs[loc.ID]
	var ref []byte
	if d != nil {
		ref = d.ref
	}
	s.mu.Unlock()
	switch {
	case d == nil || d.access != loc.AccessHash:
		return tgerr.New(400, "FILE_ID_INVALID")
	case string(ref) != string(loc.FileReference):
		return tgerr.New(400, "FILE_REFERENCE_EXPIRED")
	case r.Offset%4096 != 0 || r.Limit <= 0 || r.Limit%4096 != 0 || (1<<20)%r.Limit != 0:
		return tgerr.New(400, "LIMIT_INVALID")
	case r.Offset < 0 || r.Offset >= d.size:
		if r.Offset == d.size {
			return srv.SendResult(req, &tg.UploadFile{Type: &tg.StorageFilePartial{}, Mtime: 1, Bytes: []byte{}})
		}
		return tgerr.New(400, "OFFSET_INVALID")
	}
	f, err := os.Open(d.path)
	if err != nil {
		return fmt.Errorf("open document: %w", err)
	}
	defer f.Close()
	n := min(int64(r.Limit), d.size-r.Offset)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, r.Offset); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read document: %w", err)
	}
	return srv.SendResult(req, &tg.UploadFile{Type: &tg.StorageFilePartial{}, Mtime: 1, Bytes: buf})
}

var _ bin.Encoder = (*tg.Config)(nil)
