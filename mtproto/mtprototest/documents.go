package mtprototest

import (
	"fmt"
	"os"
	"time"

	"github.com/gotd/td/fileid"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"github.com/gotd/td/tgtest"
)

// Doc is a document the server holds that no channel post made: a file a
// user sent a bot privately. getFile serves it from its path on disk.
type Doc struct {
	s          *Server
	ID         int64
	AccessHash int64
	Size       int64
	Name       string
	MimeType   string
	Path       string
}

// privateKey is one message of a bot's private chats (bot user id,
// message id): message ids of private chats are per account.
type privateKey struct {
	bot int64
	msg int
}

// privateMessage is a document message a user sent a bot.
type privateMessage struct {
	user    int64
	doc     *Doc
	caption string
}

// AddDocument makes the file at path a document of the server (read in
// place, not copied). Send it to a bot with SendPrivately; its Bot API
// file_id is FileID.
func (s *Server) AddDocument(path, name, mime string) (*Doc, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("mtprototest: add document: %w", err)
	}
	attrs := []tg.DocumentAttributeClass{&tg.DocumentAttributeFilename{FileName: name}}
	d := &document{id: randInt63(), access: randInt63(), ref: randBytes(16), path: path, size: fi.Size(), mime: mime, attrs: attrs}
	s.mu.Lock()
	s.docs[d.id] = d
	s.mu.Unlock()
	return &Doc{s: s, ID: d.id, AccessHash: d.access, Size: d.size, Name: name, MimeType: mime, Path: path}, nil
}

// SendPrivately records that user sent d to bot as message msgID of their
// private chat, so messages.getMessages of that bot finds it (and a fresh
// file reference) there.
func (s *Server) SendPrivately(d *Doc, bot, user int64, msgID int, caption string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.private == nil {
		s.private = map[privateKey]privateMessage{}
	}
	s.private[privateKey{bot, msgID}] = privateMessage{user: user, doc: d, caption: caption}
}

// FileID is the document's Bot API file_id with its current file
// reference, as Telegram would give the bot (a document, DC of the server).
func (d *Doc) FileID() string {
	d.s.mu.Lock()
	ref := append([]byte(nil), d.s.docs[d.ID].ref...)
	d.s.mu.Unlock()
	id, err := fileid.EncodeFileID(fileid.FileID{Type: fileid.Document, DC: d.s.opts.DC, ID: d.ID, AccessHash: d.AccessHash, FileReference: ref})
	if err != nil {
		panic(fmt.Sprintf("mtprototest: encode file_id: %v", err)) // EncodeFileID never fails
	}
	return id
}

// getPrivateMessages answers messages.getMessages for the messages users
// sent the calling bot privately (MessageEmpty for others).
func (s *Server) getPrivateMessages(srv *tgtest.Server, req *tgtest.Request, r *tg.MessagesGetMessagesRequest) error {
	s.count("messages.getMessages")
	bot, ok := s.user(req)
	if !ok {
		return errUnauthorized
	}
	var msgs []tg.MessageClass
	users := map[int64]bool{}
	for _, im := range r.ID {
		id, ok := im.(*tg.InputMessageID)
		if !ok {
			return tgerr.New(400, "MESSAGE_IDS_EMPTY")
		}
		s.mu.Lock()
		pm, found := s.private[privateKey{bot, id.ID}]
		var d *document
		if found {
			d = s.docs[pm.doc.ID]
		}
		s.mu.Unlock()
		if !found || d == nil {
			msgs = append(msgs, &tg.MessageEmpty{ID: id.ID})
			continue
		}
		users[pm.user] = true
		msgs = append(msgs, &tg.Message{ID: id.ID, PeerID: &tg.PeerUser{UserID: pm.user}, FromID: &tg.PeerUser{UserID: pm.user},
			Date: int(time.Now().Unix()), Message: pm.caption, Media: &tg.MessageMediaDocument{Document: s.tgDocument(d)}})
	}
	out := &tg.MessagesMessages{Messages: msgs, Chats: []tg.ChatClass{}, Users: []tg.UserClass{}}
	for u := range users {
		out.Users = append(out.Users, &tg.User{ID: u, AccessHash: u * 17, FirstName: fmt.Sprintf("user %d", u)})
	}
	return srv.SendResult(req, out)
}
