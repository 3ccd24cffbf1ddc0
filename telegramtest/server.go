package telegramtest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
)

// Option configures a Server; pass options to NewServer.
type Option func(*config)

type config struct {
	latency         time.Duration
	limits          Limits
	insecureHooks   bool
	dc              int
	webhookRetry    time.Duration
	webhookClient   *http.Client
	maxUploadBytes  int64
	maxDownloadSize int64
}

// WithLatency delays every call by d before it is answered, to expose code
// that assumes the Bot API answers instantly. SetLatency changes it per
// method at run time.
func WithLatency(d time.Duration) Option { return func(c *config) { c.latency = d } }

// WithRateLimits enforces TelegramLimits, which NewServer does anyway
// (see WithLimits, WithoutLimits).
func WithRateLimits() Option { return WithLimits(TelegramLimits()) }

// WithInsecureWebhooks lets setWebhook accept http:// URLs on any port, so
// that updates can be delivered to a plain httptest server. Telegram
// itself only accepts https on ports 443, 80, 88 and 8443.
func WithInsecureWebhooks() Option { return func(c *config) { c.insecureHooks = true } }

// WithDC sets the data-centre number encoded into generated file_ids
// (default 4), so code that decodes the DC from a file_id can be checked.
func WithDC(dc int) Option { return func(c *config) { c.dc = dc } }

// WithWebhookRetry sets how long webhook delivery waits after a failed
// attempt before trying again (default 50ms; Telegram waits longer).
func WithWebhookRetry(d time.Duration) Option { return func(c *config) { c.webhookRetry = d } }

// WithWebhookClient sets the HTTP client used to deliver updates to a
// webhook (default: 10 s timeout, TLS certificates not verified so that
// httptest.NewTLSServer works).
func WithWebhookClient(c *http.Client) Option { return func(cf *config) { cf.webhookClient = c } }

// BotInfo describes a bot registered with AddBot.
type BotInfo struct {
	// Token is the bot's token as passed to AddBot.
	Token string
	// ID is the numeric part of the token before ':'.
	ID int64
	// Username is "bot<ID>_bot".
	Username string
	// User is what getMe returns and what messages sent by the bot carry in "from".
	User models.User
}

// Call is one recorded Bot API request.
type Call struct {
	// Token is the token from the URL; BotID its numeric part (0 if it has none).
	Token string
	BotID int64
	// Method is the method name as Telegram knows it (canonical case for
	// known methods, as sent otherwise).
	Method string
	// Params holds every parameter as sent: query, form or JSON body.
	// Values sent as JSON objects or arrays (reply_markup, entities,
	// allowed_updates, commands, …) are kept as their JSON text; JSON
	// numbers and booleans as their literal text.
	Params map[string]string
	// Files holds multipart file parts (uploads) by field name.
	Files map[string]UploadedFile
	// Time is when the request arrived.
	Time time.Time
	// Injected names the failure injected with FailNext, or "" when the
	// call was served normally (including ordinary validation errors).
	Injected FailureKind
	// HTTPStatus is the status answered (0 when the connection was dropped).
	HTTPStatus int
	// OK reports whether the answer was {"ok":true,...}.
	OK bool
	// ErrorCode and Description are the error answered, if any.
	ErrorCode   int
	Description string
	// Result is the JSON "result" of a successful call.
	Result json.RawMessage
}

// UploadedFile describes a file part of a multipart request.
type UploadedFile struct {
	Filename string
	Size     int64
	SHA256   string // hex
}

// Server is an in-process stand-in for the Telegram Bot API. Create it
// with NewServer; it is safe for concurrent use.
type Server struct {
	tb  reporter
	cfg config
	hs  *httptest.Server

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every state change
	closed     chan struct{}
	bots       map[string]*botState
	calls      []Call
	failures   map[string][]Failure // by lower-case method ("*" = any)
	latency    map[string]time.Duration
	chats      map[int64]*chatState
	usernames  map[string]int64 // "@name" (lower case) → chat id
	files      map[string]*fileRecord
	uniqueSeq  int64
	hookWG     sync.WaitGroup
	closeOnce  sync.Once
	fileSerial int64
}

type botState struct {
	info BotInfo

	updates    []queuedUpdate
	nextUpdate int64
	pollGen    int64 // incremented by each getUpdates; older waiters get 409

	webhook     webhookState
	hookGen     int64
	commands    map[string]json.RawMessage // scope+lang → commands JSON
	callbacks   map[string]bool            // unanswered callback query ids
	rateHistory map[int64][]time.Time      // chat → recent edits/sends
}

type queuedUpdate struct {
	id   int64
	kind string
	raw  json.RawMessage
}

type webhookState struct {
	url            string
	secret         string
	maxConnections int
	allowedUpdates []string
	lastErrorDate  int
	lastErrorMsg   string
}

type chatState struct {
	chat     models.Chat
	nextID   int
	messages map[int]*storedMessage
	admins   []int64 // nil = not configured
	adminSet bool
}

type storedMessage struct {
	msg    models.Message
	markup string // canonical JSON of the inline keyboard, "" if none
	author int64  // bot id that sent it, 0 if not sent by a bot here
}

// NewServer starts a Bot API stand-in on a local port. It is closed when
// the test ends; long polls and webhook deliveries are stopped first.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := newServer(tb, opts...)
	s.hs = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	tb.Cleanup(s.Close)
	return s
}

// newServer builds a Server that does not listen yet; tb gets reports of misuse.
func newServer(tb reporter, opts ...Option) *Server {
	cfg := config{dc: 4, webhookRetry: 50 * time.Millisecond, maxUploadBytes: 50 << 20, maxDownloadSize: 20 << 20, limits: TelegramLimits()}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.webhookClient == nil {
		cfg.webhookClient = &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test servers use self-signed certificates
			},
		}
	}
	s := &Server{
		tb:        tb,
		cfg:       cfg,
		changed:   make(chan struct{}),
		closed:    make(chan struct{}),
		bots:      map[string]*botState{},
		failures:  map[string][]Failure{},
		latency:   map[string]time.Duration{},
		chats:     map[int64]*chatState{},
		usernames: map[string]int64{},
		files:     map[string]*fileRecord{},
	}
	return s
}

// Close stops the server: pending long polls return, webhook delivery
// stops, then the listener closes. NewServer registers it with Cleanup;
// calling it earlier is allowed.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.hookWG.Wait()
		s.hs.Close()
	})
}

// URL is the base URL to pass to bot.WithServerURL (no trailing slash).
func (s *Server) URL() string { return s.hs.URL }

// AddBot registers a bot token. The bot's id is the number before ':'
// (the token must have that form); its username is "bot<id>_bot". Calls
// with tokens never added answer 401 Unauthorized, like Telegram.
func (s *Server) AddBot(token string) BotInfo {
	s.tb.Helper()
	idPart, _, ok := strings.Cut(token, ":")
	id, err := strconv.ParseInt(idPart, 10, 64)
	if !ok || err != nil || id <= 0 {
		s.tb.Fatalf("telegramtest: bot token must look like \"123456:ABC...\"")
	}
	info := BotInfo{
		Token:    token,
		ID:       id,
		Username: fmt.Sprintf("bot%d_bot", id),
	}
	info.User = models.User{
		ID:                      id,
		IsBot:                   true,
		FirstName:               fmt.Sprintf("Bot %d", id),
		Username:                info.Username,
		CanJoinGroups:           true,
		CanReadAllGroupMessages: false,
		SupportInlineQueries:    false,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.bots[token]; ok {
		return b.info
	}
	s.bots[token] = &botState{
		info:        info,
		nextUpdate:  100000001,
		commands:    map[string]json.RawMessage{},
		callbacks:   map[string]bool{},
		rateHistory: map[int64][]time.Time{},
	}
	return info
}

// Bot returns the registered bot with that token.
func (s *Server) Bot(token string) (BotInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bots[token]
	if !ok {
		return BotInfo{}, false
	}
	return b.info, true
}

// notifyLocked wakes everything waiting for a state change. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Calls returns a copy of every call recorded so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallsTo returns the recorded calls to method (case-insensitive), oldest first.
func (s *Server) CallsTo(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsToLocked(method)
}

func (s *Server) callsToLocked(method string) []Call {
	var out []Call
	for _, c := range s.calls {
		if strings.EqualFold(c.Method, method) {
			out = append(out, c)
		}
	}
	return out
}

// WaitCalls waits until at least n calls to method have been recorded and
// returns all of them. It is meant for code that calls the Bot API from
// background workers. It fails with ctx's error (wrapped, with the count
// reached) when ctx ends first.
func (s *Server) WaitCalls(ctx context.Context, method string, n int) ([]Call, error) {
	for {
		s.mu.Lock()
		calls := s.callsToLocked(method)
		ch := s.changed
		s.mu.Unlock()
		if len(calls) >= n {
			return calls, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return calls, fmt.Errorf("telegramtest: waiting for %d calls to %s, got %d: %w", n, method, len(calls), ctx.Err())
		case <-s.closed:
			return calls, fmt.Errorf("telegramtest: server closed while waiting for %d calls to %s, got %d", n, method, len(calls))
		}
	}
}

// Reset forgets recorded calls and pending injected failures. Bots,
// chats, messages, files, webhooks and queued updates stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
	s.failures = map[string][]Failure{}
	s.notifyLocked()
}

// SetLatency delays calls to method by d ("" or "*" for every method,
// overriding WithLatency). d = 0 removes the delay.
func (s *Server) SetLatency(method string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(method)
	if key == "" {
		key = "*"
	}
	s.latency[key] = d
}

func (s *Server) latencyFor(method string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.latency[strings.ToLower(method)]; ok {
		return d
	}
	if d, ok := s.latency["*"]; ok {
		return d
	}
	return s.cfg.latency
}

// SetChat declares a chat's type, title and username (so "@username"
// works as chat_id). Without it a chat's type is derived from its id:
// positive ids are private chats, ids below -1000000000000 are channels,
// other negative ids are groups.
func (s *Server) SetChat(chat models.Chat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.chatLocked(chat.ID)
	cs.chat = chat
	if chat.Username != "" {
		s.usernames["@"+strings.ToLower(chat.Username)] = chat.ID
	}
}

// SetChatAdmins declares the administrators of a group or channel (bot
// ids from AddBot or user ids). Once set, getChatMember and
// getChatAdministrators answer from it, and a bot that is not an
// administrator of a channel cannot post there (403 "Forbidden: bot is
// not a member of the channel chat"), as in Telegram. Chats never
// configured accept posts from any bot.
func (s *Server) SetChatAdmins(chatID int64, userIDs ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.chatLocked(chatID)
	cs.admins = append([]int64(nil), userIDs...)
	cs.adminSet = true
}

// chatLocked returns the chat's state, creating it. s.mu must be held.
func (s *Server) chatLocked(id int64) *chatState {
	cs, ok := s.chats[id]
	if !ok {
		cs = &chatState{chat: defaultChat(id), nextID: 1, messages: map[int]*storedMessage{}}
		s.chats[id] = cs
	}
	return cs
}

func defaultChat(id int64) models.Chat {
	switch {
	case id > 0:
		return models.Chat{ID: id, Type: models.ChatTypePrivate, FirstName: fmt.Sprintf("User %d", id)}
	case id < -1000000000000:
		return models.Chat{ID: id, Type: models.ChatTypeChannel, Title: fmt.Sprintf("Channel %d", id)}
	default:
		return models.Chat{ID: id, Type: models.ChatTypeGroup, Title: fmt.Sprintf("Group %d", id)}
	}
}

// StoreMessage records a message as existing in its chat (for example one
// a test delivers straight to a webhook handler), so that copyMessage,
// forwardMessage, editing and deleting it behave as in Telegram. Media in
// it become known file_ids of the bot with token (any bot if token is "").
func (s *Server) StoreMessage(token string, msg models.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeMessageLocked(token, &msg)
}

func (s *Server) storeMessageLocked(token string, msg *models.Message) {
	cs := s.chatLocked(msg.Chat.ID)
	if msg.Chat.Type != "" {
		cs.chat = msg.Chat
	}
	sm := &storedMessage{msg: *msg}
	if msg.ReplyMarkup != nil {
		sm.markup = canonicalMarkup(msg.ReplyMarkup)
	}
	if msg.From != nil && msg.From.IsBot {
		sm.author = msg.From.ID
	}
	cs.messages[msg.ID] = sm
	if msg.ID >= cs.nextID {
		cs.nextID = msg.ID + 1
	}
	var owner int64
	if b, ok := s.bots[token]; ok {
		owner = b.info.ID
	}
	s.registerMediaLocked(owner, msg)
}

// Message returns the current state of a message (after edits), if it
// exists and was not deleted.
func (s *Server) Message(chatID int64, messageID int) (models.Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.chats[chatID]
	if !ok {
		return models.Message{}, false
	}
	m, ok := cs.messages[messageID]
	if !ok {
		return models.Message{}, false
	}
	return m.msg, true
}

// Messages returns the current messages of a chat in id order.
func (s *Server) Messages(chatID int64) []models.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.chats[chatID]
	if !ok {
		return nil
	}
	var out []models.Message
	for id := 1; id < cs.nextID; id++ {
		if m, ok := cs.messages[id]; ok {
			out = append(out, m.msg)
		}
	}
	return out
}

// PushUpdate queues an update for the bot with token, as if Telegram had
// received it. update is a models.Update, *models.Update, or its JSON
// ([]byte, json.RawMessage or string). An update_id of 0 is replaced by
// the bot's next id; the id used is returned. The update is then served
// by getUpdates, or delivered to the webhook when one is set. Messages,
// files and callback queries in it become known to the server (so the
// bot can copy the message, send the file_id, answer the query).
// On bad input it reports a test error and returns 0.
func (s *Server) PushUpdate(token string, update any) int64 {
	var raw []byte
	switch u := update.(type) {
	case models.Update:
		b, err := json.Marshal(&u)
		if err != nil {
			s.tb.Errorf("telegramtest: PushUpdate: encode update: %v", err)
			return 0
		}
		raw = b
	case *models.Update:
		b, err := json.Marshal(u)
		if err != nil {
			s.tb.Errorf("telegramtest: PushUpdate: encode update: %v", err)
			return 0
		}
		raw = b
	case []byte:
		raw = u
	case json.RawMessage:
		raw = u
	case string:
		raw = []byte(u)
	default:
		s.tb.Errorf("telegramtest: PushUpdate: unsupported update type %T", update)
		return 0
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		s.tb.Errorf("telegramtest: PushUpdate: update is not a JSON object: %v", err)
		return 0
	}
	var parsed models.Update
	if err := json.Unmarshal(raw, &parsed); err != nil {
		s.tb.Errorf("telegramtest: PushUpdate: update does not decode as models.Update: %v", err)
		return 0
	}
	kind := ""
	for k := range fields {
		if k != "update_id" {
			kind = k
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bots[token]
	if !ok {
		s.tb.Errorf("telegramtest: PushUpdate: unknown bot token")
		return 0
	}
	id := parsed.ID
	if id == 0 {
		id = b.nextUpdate
	}
	if id >= b.nextUpdate {
		b.nextUpdate = id + 1
	}
	fields["update_id"] = json.RawMessage(strconv.FormatInt(id, 10))
	out, err := json.Marshal(fields)
	if err != nil {
		s.tb.Errorf("telegramtest: PushUpdate: encode update: %v", err)
		return 0
	}
	s.rememberUpdateLocked(token, b, &parsed)
	b.updates = append(b.updates, queuedUpdate{id: id, kind: kind, raw: out})
	s.notifyLocked()
	return id
}

// rememberUpdateLocked registers messages, media and callback queries
// carried by an update.
func (s *Server) rememberUpdateLocked(token string, b *botState, u *models.Update) {
	for _, m := range []*models.Message{u.Message, u.EditedMessage, u.ChannelPost, u.EditedChannelPost} {
		if m != nil && m.Chat.ID != 0 {
			s.storeMessageLocked(token, m)
		}
	}
	if cq := u.CallbackQuery; cq != nil && cq.ID != "" {
		b.callbacks[cq.ID] = true
		if cq.Message.Message != nil && cq.Message.Message.Chat.ID != 0 {
			if _, ok := s.chatLocked(cq.Message.Message.Chat.ID).messages[cq.Message.Message.ID]; !ok {
				s.storeMessageLocked(token, cq.Message.Message)
			}
		}
	}
}

// PendingUpdates returns how many updates are queued for the bot.
func (s *Server) PendingUpdates(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.bots[token]; ok {
		return len(b.updates)
	}
	return 0
}
