package telegramtest

import (
	"encoding/json"
	"errors"
	"math"
	"mime"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"
)

type handler struct {
	fn func(*Server, *request) (any, *apiError)
	// blocking handlers take s.mu themselves (long polling); the others
	// run with s.mu held.
	blocking bool
}

var methodTable map[string]struct {
	name string
	h    handler
}

func init() {
	hs := map[string]handler{
		"getMe":                  {fn: (*Server).getMe},
		"sendMessage":            {fn: (*Server).sendMessage},
		"editMessageText":        {fn: (*Server).editMessageText},
		"editMessageReplyMarkup": {fn: (*Server).editMessageReplyMarkup},
		"editMessageCaption":     {fn: (*Server).editMessageCaption},
		"deleteMessage":          {fn: (*Server).deleteMessage},
		"answerCallbackQuery":    {fn: (*Server).answerCallbackQuery},
		"setMyCommands":          {fn: (*Server).setMyCommands},
		"getMyCommands":          {fn: (*Server).getMyCommands},
		"deleteMyCommands":       {fn: (*Server).deleteMyCommands},
		"setWebhook":             {fn: (*Server).setWebhook},
		"getWebhookInfo":         {fn: (*Server).getWebhookInfo},
		"deleteWebhook":          {fn: (*Server).deleteWebhook},
		"getUpdates":             {fn: (*Server).getUpdates, blocking: true},
		"copyMessage":            {fn: (*Server).copyMessage},
		"sendDocument":           {fn: sendMedia(KindDocument, "document")},
		"sendVideo":              {fn: sendMedia(KindVideo, "video")},
		"sendAudio":              {fn: sendMedia(KindAudio, "audio")},
		"sendAnimation":          {fn: sendMedia(KindAnimation, "animation")},
		"getChatMember":          {fn: (*Server).getChatMember},
		"getChatAdministrators":  {fn: (*Server).getChatAdministrators},
		"getChat":                {fn: (*Server).getChat},
		"sendChatAction":         {fn: (*Server).sendChatAction},
		"getFile":                {fn: (*Server).getFile},
	}
	methodTable = map[string]struct {
		name string
		h    handler
	}{}
	for name, h := range hs {
		methodTable[strings.ToLower(name)] = struct {
			name string
			h    handler
		}{name, h}
	}
}

// lookupMethod finds a method case-insensitively, as the Bot API does.
func lookupMethod(method string) (*handler, string) {
	m, ok := methodTable[strings.ToLower(method)]
	if !ok {
		return nil, method
	}
	return &m.h, m.name
}

// Methods lists the Bot API methods the server implements; others answer
// 404 Not Found.
func Methods() []string {
	var out []string
	for _, m := range methodTable {
		out = append(out, m.name)
	}
	slices.Sort(out)
	return out
}

func (s *Server) getMe(r *request) (any, *apiError) {
	u := r.bot.info.User
	return &u, nil
}

// resolveChatLocked reads a chat id parameter ("chat_id" or
// "from_chat_id"): an integer or "@username".
func (s *Server) resolveChatLocked(r *request, param string) (*chatState, *apiError) {
	v := strings.TrimSpace(r.str(param))
	if v == "" {
		return nil, badRequest("%s is empty", param)
	}
	if strings.HasPrefix(v, "@") {
		id, ok := s.usernames[strings.ToLower(v)]
		if !ok {
			return nil, badRequest("chat not found")
		}
		return s.chatLocked(id), nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id == 0 {
		return nil, badRequest("chat not found")
	}
	return s.chatLocked(id), nil
}

// checkPostLocked applies channel membership when the chat's admins are known.
func (s *Server) checkPostLocked(r *request, cs *chatState) *apiError {
	if cs.adminSet && cs.chat.Type == models.ChatTypeChannel && !slices.Contains(cs.admins, r.bot.info.ID) {
		return forbidden("bot is not a member of the channel chat")
	}
	return nil
}

// messageID reads a required message_id.
func messageIDParam(r *request) (int, *apiError) {
	v, ok, err := r.int64Param("message_id")
	if err != nil {
		return 0, badRequest("message identifier is not specified")
	}
	if !ok || v <= 0 || v > math.MaxInt32 {
		return 0, badRequest("message identifier is not specified")
	}
	return int(v), nil
}

// textParams parses a text or caption with its parse_mode and entities.
// messageText reads a message's text and entities with Telegram's limits:
// not empty and at most 4096 UTF-16 units once entities are parsed.
func messageText(r *request) (formatted, *apiError) {
	f, err := textParams(r, "text", "entities")
	if err != nil {
		return f, err
	}
	if f.Text == "" {
		return f, badRequest("message text is empty")
	}
	if utf16Length(f.Text) > 4096 {
		return f, badRequest("message is too long")
	}
	return f, nil
}

func textParams(r *request, textName, entitiesName string) (formatted, *apiError) {
	text := r.str(textName)
	if raw, ok := r.params[entitiesName]; ok && raw != "" {
		es, err := validateEntities(text, raw)
		if err != nil {
			return formatted{}, badRequest("%s", err.Error())
		}
		return trimFormatted(formatted{Text: text, Entities: es}), nil
	}
	f, err := parseFormatted(text, r.str("parse_mode"))
	if err != nil {
		if errors.Is(err, errUnsupportedParseMode) {
			return formatted{}, badRequest("unsupported parse_mode")
		}
		return formatted{}, badRequest("can't parse entities: %s", err.Error())
	}
	return f, nil
}

func (s *Server) markupParam(r *request, inlineOnly bool) (*models.InlineKeyboardMarkup, string, *apiError) {
	raw, ok := r.params["reply_markup"]
	if !ok || raw == "" {
		return nil, "", nil
	}
	return parseReplyMarkup(raw, inlineOnly)
}

// newMessageLocked allocates the next message id of the chat and fills
// sender fields: channel posts carry sender_chat, others from = the bot.
func (s *Server) newMessageLocked(r *request, cs *chatState) *models.Message {
	m := &models.Message{
		ID:   cs.nextID,
		Date: int(time.Now().Unix()),
		Chat: cs.chat,
	}
	cs.nextID++
	if cs.chat.Type == models.ChatTypeChannel {
		chat := cs.chat
		m.SenderChat = &chat
	} else {
		u := r.bot.info.User
		m.From = &u
	}
	return m
}

func (s *Server) saveLocked(r *request, cs *chatState, m *models.Message, markup string) {
	cs.messages[m.ID] = &storedMessage{msg: *m, markup: markup, author: r.bot.info.ID}
}

// checkReplyLocked rejects replies to messages that do not exist unless
// allow_sending_without_reply is set.
func (s *Server) checkReplyLocked(r *request, cs *chatState) *apiError {
	raw, ok := r.params["reply_parameters"]
	if !ok || raw == "" {
		return nil
	}
	var rp models.ReplyParameters
	if err := json.Unmarshal([]byte(raw), &rp); err != nil {
		return badRequest("can't parse reply parameters JSON object")
	}
	if rp.AllowSendingWithoutReply {
		return nil
	}
	target := cs
	if rp.ChatID != nil {
		switch v := rp.ChatID.(type) {
		case float64:
			target = s.chatLocked(int64(v))
		case string:
			if id, err := strconv.ParseInt(v, 10, 64); err == nil {
				target = s.chatLocked(id)
			}
		}
	}
	if _, ok := target.messages[rp.MessageID]; !ok {
		return badRequest("message to be replied not found")
	}
	return nil
}

func (s *Server) sendMessage(r *request) (any, *apiError) {
	cs, err := s.resolveChatLocked(r, "chat_id")
	if err != nil {
		return nil, err
	}
	f, err := messageText(r)
	if err != nil {
		return nil, err
	}
	mk, canon, err := s.checkSendLocked(r, cs)
	if err != nil {
		return nil, err
	}
	m := s.newMessageLocked(r, cs)
	m.Text, m.Entities, m.ReplyMarkup = f.Text, f.Entities, mk
	s.saveLocked(r, cs, m, canon)
	return m, nil
}

// findEditableLocked finds the message an edit method targets.
func (s *Server) findEditableLocked(r *request) (*chatState, *storedMessage, *apiError) {
	if r.str("inline_message_id") != "" {
		return nil, nil, badRequest("MESSAGE_ID_INVALID")
	}
	cs, err := s.resolveChatLocked(r, "chat_id")
	if err != nil {
		return nil, nil, err
	}
	id, err := messageIDParam(r)
	if err != nil {
		return nil, nil, err
	}
	sm, ok := cs.messages[id]
	if !ok {
		return nil, nil, badRequest("message to edit not found")
	}
	if cs.chat.Type != models.ChatTypeChannel && sm.author != r.bot.info.ID {
		return nil, nil, badRequest("message can't be edited")
	}
	return cs, sm, nil
}

const notModified = "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"

func (s *Server) editMessageText(r *request) (any, *apiError) {
	cs, sm, err := s.findEditableLocked(r)
	if err != nil {
		return nil, err
	}
	f, err := messageText(r)
	if err != nil {
		return nil, err
	}
	mk, canon, err := s.markupParam(r, true)
	if err != nil {
		return nil, err
	}
	if sm.msg.Text == "" {
		return nil, badRequest("there is no text in the message to edit")
	}
	if sm.msg.Text == f.Text && entitiesEqual(sm.msg.Entities, f.Entities) && sm.markup == canon {
		return nil, badRequest(notModified)
	}
	if err := s.rateLimitLocked(r, cs, true); err != nil {
		return nil, err
	}
	sm.msg.Text, sm.msg.Entities, sm.msg.ReplyMarkup = f.Text, f.Entities, mk
	sm.markup = canon
	sm.msg.EditDate = int(time.Now().Unix())
	m := sm.msg
	return &m, nil
}

func (s *Server) editMessageReplyMarkup(r *request) (any, *apiError) {
	cs, sm, err := s.findEditableLocked(r)
	if err != nil {
		return nil, err
	}
	mk, canon, err := s.markupParam(r, true)
	if err != nil {
		return nil, err
	}
	if sm.markup == canon {
		return nil, badRequest(notModified)
	}
	if err := s.rateLimitLocked(r, cs, true); err != nil {
		return nil, err
	}
	sm.msg.ReplyMarkup, sm.markup = mk, canon
	sm.msg.EditDate = int(time.Now().Unix())
	m := sm.msg
	return &m, nil
}

func (s *Server) editMessageCaption(r *request) (any, *apiError) {
	cs, sm, err := s.findEditableLocked(r)
	if err != nil {
		return nil, err
	}
	f, err := textParams(r, "caption", "caption_entities")
	if err != nil {
		return nil, err
	}
	if utf16Length(f.Text) > 1024 {
		return nil, badRequest("message caption is too long")
	}
	mk, canon, err := s.markupParam(r, true)
	if err != nil {
		return nil, err
	}
	if sm.msg.Text != "" {
		return nil, badRequest("there is no caption in the message to edit")
	}
	if sm.msg.Caption == f.Text && entitiesEqual(sm.msg.CaptionEntities, f.Entities) && sm.markup == canon {
		return nil, badRequest(notModified)
	}
	if err := s.rateLimitLocked(r, cs, true); err != nil {
		return nil, err
	}
	sm.msg.Caption, sm.msg.CaptionEntities, sm.msg.ReplyMarkup = f.Text, f.Entities, mk
	sm.markup = canon
	sm.msg.EditDate = int(time.Now().Unix())
	m := sm.msg
	return &m, nil
}

func entitiesEqual(a, b []models.MessageEntity) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func (s *Server) deleteMessage(r *request) (any, *apiError) {
	cs, err := s.resolveChatLocked(r, "chat_id")
	if err != nil {
		return nil, err
	}
	id, err := messageIDParam(r)
	if err != nil {
		return nil, err
	}
	if _, ok := cs.messages[id]; !ok {
		return nil, badRequest("message to delete not found")
	}
	delete(cs.messages, id)
	return true, nil
}

func (s *Server) answerCallbackQuery(r *request) (any, *apiError) {
	id := r.str("callback_query_id")
	if id == "" || !r.bot.callbacks[id] {
		return nil, badRequest("query is too old and response timeout expired or query ID is invalid")
	}
	if utf16Length(r.str("text")) > 200 {
		return nil, badRequest("MESSAGE_TOO_LONG")
	}
	delete(r.bot.callbacks, id)
	return true, nil
}

var commandRe = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

var scopeTypes = map[string]bool{
	"default": true, "all_private_chats": true, "all_group_chats": true, "all_chat_administrators": true,
	"chat": true, "chat_administrators": true, "chat_member": true,
}

// commandsKey identifies a scope and language for bot commands.
func commandsKey(r *request) (string, *apiError) {
	scope := map[string]any{"type": "default"}
	if raw := r.str("scope"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &scope); err != nil {
			return "", badRequest("can't parse BotCommandScope JSON object")
		}
		t, _ := scope["type"].(string)
		if !scopeTypes[t] {
			return "", badRequest("unsupported bot command scope type %q", t)
		}
		if (t == "chat" || t == "chat_administrators" || t == "chat_member") && scope["chat_id"] == nil {
			return "", badRequest("can't parse BotCommandScope: Field \"chat_id\" must be specified")
		}
		if t == "chat_member" && scope["user_id"] == nil {
			return "", badRequest("can't parse BotCommandScope: Field \"user_id\" must be specified")
		}
	}
	lang := r.str("language_code")
	if lang != "" && !regexp.MustCompile(`^[a-z]{2}$`).MatchString(lang) {
		return "", badRequest("invalid language code specified")
	}
	k, _ := json.Marshal(scope)
	return string(k) + "|" + lang, nil
}

func (s *Server) setMyCommands(r *request) (any, *apiError) {
	var cmds []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.str("commands")), &cmds); err != nil {
		return nil, badRequest("can't parse commands JSON object")
	}
	if len(cmds) > 100 {
		return nil, badRequest("too many commands specified")
	}
	out := make([]models.BotCommand, 0, len(cmds))
	for _, c := range cmds {
		var cmd models.BotCommand
		if json.Unmarshal(c["command"], &cmd.Command) != nil {
			return nil, badRequest("can't parse BotCommand: Field \"command\" must be of type String")
		}
		if json.Unmarshal(c["description"], &cmd.Description) != nil {
			return nil, badRequest("can't parse BotCommand: Field \"description\" must be of type String")
		}
		cmd.Command = strings.TrimPrefix(cmd.Command, "/")
		if !commandRe.MatchString(cmd.Command) {
			return nil, badRequest("BOT_COMMAND_INVALID")
		}
		if n := utf16Length(cmd.Description); n < 1 || n > 256 {
			return nil, badRequest("BOT_COMMAND_DESCRIPTION_INVALID")
		}
		out = append(out, cmd)
	}
	key, err := commandsKey(r)
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(out)
	r.bot.commands[key] = raw
	return true, nil
}

func (s *Server) getMyCommands(r *request) (any, *apiError) {
	key, err := commandsKey(r)
	if err != nil {
		return nil, err
	}
	if raw, ok := r.bot.commands[key]; ok {
		return json.RawMessage(raw), nil
	}
	return []models.BotCommand{}, nil
}

func (s *Server) deleteMyCommands(r *request) (any, *apiError) {
	key, err := commandsKey(r)
	if err != nil {
		return nil, err
	}
	delete(r.bot.commands, key)
	return true, nil
}

var secretTokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

func (s *Server) setWebhook(r *request) (any, *apiError) {
	raw := strings.TrimSpace(r.str("url"))
	if raw == "" {
		return s.removeWebhookLocked(r)
	}
	u, perr := url.Parse(raw)
	if perr != nil || u.Host == "" {
		return nil, badRequest("bad webhook: Failed to parse webhook URL")
	}
	if !s.cfg.insecureHooks {
		if u.Scheme != "https" {
			return nil, badRequest("bad webhook: An HTTPS URL must be provided for webhook")
		}
		if p := u.Port(); p != "" && p != "443" && p != "80" && p != "88" && p != "8443" {
			return nil, badRequest("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
		}
	} else if u.Scheme != "https" && u.Scheme != "http" {
		return nil, badRequest("bad webhook: An HTTPS URL must be provided for webhook")
	}
	secret := r.str("secret_token")
	if r.has("secret_token") {
		if len(secret) > 256 {
			return nil, badRequest("secret token is too long")
		}
		if !secretTokenRe.MatchString(secret) {
			return nil, badRequest("secret token contains unallowed characters")
		}
	}
	maxConn := 40
	if v, ok, err := r.int64Param("max_connections"); err != nil {
		return nil, err
	} else if ok {
		if v < 1 || v > 100 {
			return nil, badRequest("max_connections must be between 1 and 100 (Telegram clamps it silently; telegramtest rejects it)")
		}
		maxConn = int(v)
	}
	allowed, err := allowedUpdatesParam(r)
	if err != nil {
		return nil, err
	}
	if r.boolParam("drop_pending_updates") {
		r.bot.updates = nil
	}
	b := r.bot
	next := webhookState{url: raw, secret: secret, maxConnections: maxConn, allowedUpdates: allowed}
	desc := "Webhook was set"
	if b.webhook.url == next.url && b.webhook.secret == next.secret && b.webhook.maxConnections == next.maxConnections &&
		slices.Equal(b.webhook.allowedUpdates, next.allowedUpdates) {
		desc = "Webhook is already set"
	} else {
		b.webhook = next
		b.hookGen++
		s.startDeliveryLocked(b, b.hookGen)
	}
	return okResult{result: true, description: desc}, nil
}

func allowedUpdatesParam(r *request) ([]string, *apiError) {
	raw, ok := r.params["allowed_updates"]
	if !ok || raw == "" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		return nil, badRequest("can't parse allowed_updates JSON object")
	}
	for _, k := range list {
		if !updateKinds[k] {
			return nil, badRequest("unknown update type %q in allowed_updates (Telegram ignores it; telegramtest rejects it)", k)
		}
	}
	return list, nil
}

var updateKinds = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(models.Update{})
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "update_id" {
			m[name] = true
		}
	}
	return m
}()

func (s *Server) removeWebhookLocked(r *request) (any, *apiError) {
	if r.boolParam("drop_pending_updates") {
		r.bot.updates = nil
	}
	if r.bot.webhook.url == "" {
		return okResult{result: true, description: "Webhook is already deleted"}, nil
	}
	r.bot.webhook = webhookState{}
	r.bot.hookGen++
	return okResult{result: true, description: "Webhook was deleted"}, nil
}

func (s *Server) deleteWebhook(r *request) (any, *apiError) { return s.removeWebhookLocked(r) }

func (s *Server) getWebhookInfo(r *request) (any, *apiError) {
	w := r.bot.webhook
	info := models.WebhookInfo{
		URL:                w.url,
		PendingUpdateCount: len(r.bot.updates),
		LastErrorDate:      w.lastErrorDate,
		LastErrorMessage:   w.lastErrorMsg,
	}
	if w.url != "" {
		info.MaxConnections = w.maxConnections
		info.AllowedUpdates = w.allowedUpdates
		info.IPAddress = "127.0.0.1"
	}
	return &info, nil
}

func (s *Server) copyMessage(r *request) (any, *apiError) {
	cs, err := s.resolveChatLocked(r, "chat_id")
	if err != nil {
		return nil, err
	}
	from, err := s.resolveChatLocked(r, "from_chat_id")
	if err != nil {
		return nil, err
	}
	id, err := messageIDParam(r)
	if err != nil {
		return nil, err
	}
	src, ok := from.messages[id]
	if !ok {
		return nil, badRequest("message to copy not found")
	}
	mk, canon, err := s.markupParam(r, false)
	if err != nil {
		return nil, err
	}
	var capt *formatted
	if r.has("caption") {
		f, err := textParams(r, "caption", "caption_entities")
		if err != nil {
			return nil, err
		}
		if utf16Length(f.Text) > 1024 {
			return nil, badRequest("message caption is too long")
		}
		capt = &f
	}
	if err := s.checkPostLocked(r, cs); err != nil {
		return nil, err
	}
	if err := s.rateLimitLocked(r, cs, false); err != nil {
		return nil, err
	}
	m := s.newMessageLocked(r, cs)
	c := src.msg
	m.Text, m.Entities = c.Text, c.Entities
	m.Document, m.Video, m.Audio, m.Animation, m.Photo, m.Voice = c.Document, c.Video, c.Audio, c.Animation, c.Photo, c.Voice
	m.Caption, m.CaptionEntities = c.Caption, c.CaptionEntities
	if capt != nil {
		m.Caption, m.CaptionEntities = capt.Text, capt.Entities
	}
	m.ReplyMarkup = mk
	s.saveLocked(r, cs, m, canon)
	return &models.MessageID{ID: m.ID}, nil
}

var wrongFileID = "wrong file identifier/HTTP URL specified"

// sendMedia implements sendDocument, sendVideo, sendAudio and
// sendAnimation: the media is an upload (multipart file or attach://) or
// a file_id this bot knows.
func sendMedia(kind FileKind, field string) func(*Server, *request) (any, *apiError) {
	return func(s *Server, r *request) (any, *apiError) {
		cs, err := s.resolveChatLocked(r, "chat_id")
		if err != nil {
			return nil, err
		}
		rec, err := s.mediaParamLocked(r, kind, field)
		if err != nil {
			return nil, err
		}
		f, err := textParams(r, "caption", "caption_entities")
		if err != nil {
			return nil, err
		}
		if utf16Length(f.Text) > 1024 {
			return nil, badRequest("message caption is too long")
		}
		mk, canon, err := s.checkSendLocked(r, cs)
		if err != nil {
			return nil, err
		}
		m := s.newMessageLocked(r, cs)
		m.Caption, m.CaptionEntities, m.ReplyMarkup = f.Text, f.Entities, mk
		attachMedia(m, rec)
		s.saveLocked(r, cs, m, canon)
		return m, nil
	}
}

func (s *Server) mediaParamLocked(r *request, kind FileKind, field string) (*fileRecord, *apiError) {
	up := r.files[field]
	v := strings.TrimSpace(r.str(field))
	if up == nil && strings.HasPrefix(v, "attach://") {
		up = r.files[strings.TrimPrefix(v, "attach://")]
		if up == nil {
			return nil, badRequest("wrong HTTP URL specified")
		}
	}
	if up != nil {
		name := up.Filename
		mt := mime.TypeByExtension(path.Ext(name))
		if mt == "" {
			mt = "application/octet-stream"
		}
		if i := strings.IndexByte(mt, ';'); i >= 0 {
			mt = mt[:i]
		}
		dur, _, _ := r.int64Param("duration")
		w, _, _ := r.int64Param("width")
		h, _, _ := r.int64Param("height")
		s.uniqueSeq++
		return s.addFileLocked(r.bot.info.ID, FileSpec{
			Kind: kind, Name: name, MimeType: mt, Size: up.Size, Content: up.data,
			UniqueKey: up.SHA256 + "/upload/" + strconv.FormatInt(s.uniqueSeq, 10),
			Duration:  int(dur), Width: int(w), Height: int(h),
		}), nil
	}
	if v == "" {
		return nil, badRequest("there is no %s in the request", field)
	}
	if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") {
		return nil, badRequest("%s (telegramtest does not fetch URLs)", wrongFileID)
	}
	rec, ok := s.files[v]
	if !ok || (rec.owner != 0 && rec.owner != r.bot.info.ID) {
		return nil, badRequest("%s", wrongFileID)
	}
	if !mediaCompatible(kind, rec.Kind) {
		return nil, badRequest("can't use file of type %s as %s", fileTypeNames[rec.Kind], fileTypeNames[kind])
	}
	return rec, nil
}

// mediaCompatible says whether a file of kind have can be sent with the
// method for kind want. Documents accept any file but photos and
// stickers; the others need their own kind.
func mediaCompatible(want, have FileKind) bool {
	if want == have {
		return true
	}
	if want == KindDocument {
		return have == KindVideo || have == KindAudio || have == KindAnimation || have == KindVoice
	}
	return false
}

func attachMedia(m *models.Message, rec *fileRecord) {
	switch rec.Kind {
	case KindVideo:
		m.Video = &models.Video{FileID: rec.FileID, FileUniqueID: rec.FileUniqueID, Width: rec.width, Height: rec.height,
			Duration: rec.duration, FileName: rec.name, MimeType: rec.MimeType, FileSize: rec.Size}
	case KindAudio:
		m.Audio = &models.Audio{FileID: rec.FileID, FileUniqueID: rec.FileUniqueID, Duration: rec.duration,
			FileName: rec.name, MimeType: rec.MimeType, FileSize: rec.Size}
	case KindAnimation:
		m.Animation = &models.Animation{FileID: rec.FileID, FileUniqueID: rec.FileUniqueID, Width: rec.width, Height: rec.height,
			Duration: rec.duration, FileName: rec.name, MimeType: rec.MimeType, FileSize: rec.Size}
	case KindVoice:
		m.Voice = &models.Voice{FileID: rec.FileID, FileUniqueID: rec.FileUniqueID, Duration: rec.duration,
			MimeType: rec.MimeType, FileSize: rec.Size}
	default:
		m.Document = &models.Document{FileID: rec.FileID, FileUniqueID: rec.FileUniqueID, FileName: rec.name,
			MimeType: rec.MimeType, FileSize: rec.Size}
	}
}

func (s *Server) userLocked(id int64) *models.User {
	for _, b := range s.bots {
		if b.info.ID == id {
			u := b.info.User
			return &u
		}
	}
	return &models.User{ID: id, FirstName: "User " + strconv.FormatInt(id, 10)}
}

func (s *Server) memberLocked(cs *chatState, userID int64) *models.ChatMember {
	u := s.userLocked(userID)
	if cs.adminSet && slices.Contains(cs.admins, userID) {
		isChannel := cs.chat.Type == models.ChatTypeChannel
		return &models.ChatMember{Type: models.ChatMemberTypeAdministrator, Administrator: &models.ChatMemberAdministrator{
			User: *u, CanManageChat: true, CanDeleteMessages: true, CanInviteUsers: true,
			CanPostMessages: isChannel, CanEditMessages: isChannel, CanPinMessages: !isChannel,
			CanRestrictMembers: !isChannel, CanChangeInfo: true,
		}}
	}
	if cs.chat.Type == models.ChatTypePrivate && (userID == cs.chat.ID || u.IsBot) {
		return &models.ChatMember{Type: models.ChatMemberTypeMember, Member: &models.ChatMemberMember{User: u}}
	}
	return &models.ChatMember{Type: models.ChatMemberTypeLeft, Left: &models.ChatMemberLeft{User: u}}
}

func (s *Server) getChatMember(r *request) (any, *apiError) {
	cs, err := s.resolveChatLocked(r, "chat_id")
	if err != nil {
		return nil, err
	}
	uid, ok, perr := r.int64Param("user_id")
	if perr != nil || !ok || uid <= 0 {
		return nil, badRequest("invalid user_id specified")
	}
	return s.memberLocked(cs, uid), nil
}

func (s *Server) getChatAdministrators(r *request) (any, *apiError) {
	cs, err := s.resolveChatLocked(r, "chat_id")
	if err != nil {
		return nil, err
	}
	if cs.chat.Type == models.ChatTypePrivate {
		return nil, badRequest("there are no administrators in the private chat")
	}
	out := []*models.ChatMember{}
	for _, id := range cs.admins {
		out = append(out, s.memberLocked(cs, id))
	}
	return out, nil
}

func (s *Server) getChat(r *request) (any, *apiError) {
	cs, err := s.resolveChatLocked(r, "chat_id")
	if err != nil {
		return nil, err
	}
	return &models.ChatFullInfo{ID: cs.chat.ID, Type: cs.chat.Type, Title: cs.chat.Title, Username: cs.chat.Username,
		FirstName: cs.chat.FirstName, LastName: cs.chat.LastName, MaxReactionCount: 11}, nil
}

var chatActions = map[string]bool{
	"typing": true, "upload_photo": true, "record_video": true, "upload_video": true, "record_voice": true,
	"upload_voice": true, "upload_document": true, "choose_sticker": true, "find_location": true,
	"record_video_note": true, "upload_video_note": true,
}

func (s *Server) sendChatAction(r *request) (any, *apiError) {
	if _, err := s.resolveChatLocked(r, "chat_id"); err != nil {
		return nil, err
	}
	if !chatActions[r.str("action")] {
		return nil, badRequest("wrong parameter action in request")
	}
	return true, nil
}

func (s *Server) getFile(r *request) (any, *apiError) {
	id := strings.TrimSpace(r.str("file_id"))
	if id == "" {
		return nil, badRequest("invalid file_id")
	}
	rec, ok := s.files[id]
	if !ok {
		return nil, badRequest("invalid file_id")
	}
	if rec.owner != 0 && rec.owner != r.bot.info.ID {
		return nil, badRequest("wrong file_id or the file is temporarily unavailable")
	}
	if rec.Size > s.cfg.maxDownloadSize {
		return nil, badRequest("file is too big")
	}
	return &models.File{FileID: rec.FileID, FileUniqueID: rec.FileUniqueID, FileSize: rec.Size, FilePath: rec.path}, nil
}

// checkSendLocked runs what Telegram checks before any message is sent: the
// reply_markup, the message replied to, the right to post in the chat and
// the rate limit. It returns the parsed markup and its canonical form.
func (s *Server) checkSendLocked(r *request, cs *chatState) (*models.InlineKeyboardMarkup, string, *apiError) {
	mk, canon, err := s.markupParam(r, false)
	if err != nil {
		return nil, "", err
	}
	if err := s.checkReplyLocked(r, cs); err != nil {
		return nil, "", err
	}
	if err := s.checkPostLocked(r, cs); err != nil {
		return nil, "", err
	}
	if err := s.rateLimitLocked(r, cs, false); err != nil {
		return nil, "", err
	}
	return mk, canon, nil
}
