package telegramtest

import (
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"
)

// User returns the user object the server uses for a user id in
// updates it builds: a bot added with AddBot, or "User <id>".
func (s *Server) User(id int64) models.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.userLocked(id)
}

// newIncomingLocked builds a message arriving in chatID from user fromID
// (ignored in channels, whose posts carry sender_chat), with the chat's
// next message id.
func (s *Server) newIncomingLocked(chatID, fromID int64) (*models.Message, string) {
	cs := s.chatLocked(chatID)
	m := &models.Message{ID: cs.nextID, Date: int(time.Now().Unix()), Chat: cs.chat}
	cs.nextID++
	if cs.chat.Type == models.ChatTypeChannel {
		chat := cs.chat
		m.SenderChat = &chat
		return m, "channel_post"
	}
	m.From = s.userLocked(fromID)
	return m, "message"
}

func incomingUpdate(kind string, m *models.Message) models.Update {
	if kind == "channel_post" {
		return models.Update{ChannelPost: m}
	}
	return models.Update{Message: m}
}

// PushMessage queues, for the bot with token, a text message that user
// fromID sends in chatID (a channel post when chatID is a channel). A
// leading "/command" gets its bot_command entity, as Telegram adds it.
// It returns the message and the update id.
func (s *Server) PushMessage(token string, chatID, fromID int64, text string) (models.Message, int64) {
	s.mu.Lock()
	m, kind := s.newIncomingLocked(chatID, fromID)
	s.mu.Unlock()
	m.Text = text
	if strings.HasPrefix(text, "/") {
		end := strings.IndexAny(text, " \n")
		if end < 0 {
			end = len(text)
		}
		m.Entities = []models.MessageEntity{{Type: models.MessageEntityTypeBotCommand, Offset: 0, Length: utf16Length(text[:end])}}
	}
	id := s.PushUpdate(token, incomingUpdate(kind, m))
	return *m, id
}

// Posted describes a file posted with PostFile.
type Posted struct {
	// MessageID is the post's id in its chat.
	MessageID int
	// FileUniqueID is the same for every bot.
	FileUniqueID string
	// FileIDs and UpdateIDs are per bot token: each bot sees its own file_id.
	FileIDs   map[string]string
	UpdateIDs map[string]int64
}

// PostFile simulates a file posted in chatID (by user fromID, or as a
// channel post) that every bot in tokens sees: each gets an update with
// the same message and file_unique_id but its own file_id, as in
// Telegram. spec.Kind selects document, video, audio or animation.
func (s *Server) PostFile(chatID, fromID int64, spec FileSpec, caption string, tokens ...string) Posted {
	s.mu.Lock()
	m, kind := s.newIncomingLocked(chatID, fromID)
	if spec.UniqueKey == "" {
		s.uniqueSeq++
		spec.UniqueKey = "post/" + strconv.FormatInt(chatID, 10) + "/" + strconv.Itoa(m.ID) + "/" + strconv.FormatInt(s.uniqueSeq, 10)
	}
	out := Posted{MessageID: m.ID, FileIDs: map[string]string{}, UpdateIDs: map[string]int64{}}
	msgs := map[string]*models.Message{}
	for _, token := range tokens {
		b, ok := s.bots[token]
		if !ok {
			s.mu.Unlock()
			s.tb.Errorf("telegramtest: PostFile: unknown bot token")
			return Posted{}
		}
		rec := s.addFileLocked(b.info.ID, spec)
		cp := *m
		cp.Caption = caption
		attachMedia(&cp, rec)
		msgs[token] = &cp
		out.FileIDs[token] = rec.FileID
		out.FileUniqueID = rec.FileUniqueID
	}
	s.mu.Unlock()
	for _, token := range tokens {
		out.UpdateIDs[token] = s.PushUpdate(token, incomingUpdate(kind, msgs[token]))
	}
	return out
}

// PushCallback simulates user fromID pressing an inline button with
// callback data on a message the server knows, and queues the
// callback_query update for the bot. It returns the query id (answer it
// with answerCallbackQuery) and the update id; 0 and "" with a test error
// when the message does not exist.
func (s *Server) PushCallback(token string, chatID int64, messageID int, fromID int64, data string) (string, int64) {
	s.mu.Lock()
	cs := s.chatLocked(chatID)
	sm, ok := cs.messages[messageID]
	if !ok {
		s.mu.Unlock()
		s.tb.Errorf("telegramtest: PushCallback: message %d not found in chat %d", messageID, chatID)
		return "", 0
	}
	msg := sm.msg
	s.uniqueSeq++
	queryID := strconv.FormatInt(4000000000000000000+s.uniqueSeq, 10)
	from := *s.userLocked(fromID)
	s.mu.Unlock()
	cq := &models.CallbackQuery{
		ID:           queryID,
		From:         from,
		Message:      models.MaybeInaccessibleMessage{Type: models.MaybeInaccessibleMessageTypeMessage, Message: &msg},
		ChatInstance: "-" + strconv.FormatInt(chatID&0xffffffff, 10),
		Data:         data,
	}
	return queryID, s.PushUpdate(token, models.Update{CallbackQuery: cq})
}
