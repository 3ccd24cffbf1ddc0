package mtproto

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/gotd/td/session"

	"github.com/ferry-dev/ferry/db"
)

// SessionStore keeps one bot's MTProto session (auth key, DC, salt) in
// the database, sealed with AES-256-GCM under a key derived from SESSION_KEY, so
// a restart reuses the authorization instead of logging in again (Telegram
// throttles bot logins) and a database dump alone cannot act as the bot.
// It implements gotd's session.Storage.
type SessionStore struct {
	db    db.Executor
	botID int64
	aead  cipher.AEAD

	storedOnce sync.Once
	stored     chan struct{}
}

// Stored is closed once a session has been written, so Client.Start can
// return only when a crash right after it would not cost another login.
func (s *SessionStore) Stored() <-chan struct{} { return s.stored }

var _ session.Storage = (*SessionStore)(nil)

// NewSessionStore returns the store for botID. sessionKey is the SESSION_KEY
// secret; it must not be empty because an unencrypted session is a bearer
// credential.
func NewSessionStore(d db.Executor, botID int64, sessionKey string) (*SessionStore, error) {
	if sessionKey == "" {
		return nil, errors.New("session store: SESSION_KEY is empty")
	}
	k := sha256.Sum256([]byte(sessionKey))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("session store: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session store: gcm: %w", err)
	}
	return &SessionStore{db: d, botID: botID, aead: aead, stored: make(chan struct{})}, nil
}

// additionalData binds a sealed session to its bot row, so swapping rows
// between bots in the database makes decryption fail.
func (s *SessionStore) additionalData() []byte {
	return fmt.Appendf(nil, "ferry-mtproto-session:%d", s.botID)
}

// LoadSession returns the decrypted session or session.ErrNotFound when the
// bot has none yet (gotd then creates a new auth key).
func (s *SessionStore) LoadSession(ctx context.Context) ([]byte, error) {
	sealed, err := s.db.SessionGet(ctx, s.botID)
	if errors.Is(err, db.ErrNotFound) {
		return nil, session.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	plain, err := s.aead.Open(nil, sealed.Nonce, sealed.Data, s.additionalData())
	if err != nil {
		// Wrong SESSION_KEY or tampered row: treat as absent so the bot logs
		// in again rather than failing forever.
		return nil, session.ErrNotFound
	}
	return plain, nil
}

// StoreSession seals and upserts the session.
func (s *SessionStore) StoreSession(ctx context.Context, data []byte) error {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("store session: nonce: %w", err)
	}
	sealed := s.aead.Seal(nil, nonce, data, s.additionalData())
	if err := s.db.SessionSave(ctx, db.Session{BotID: s.botID, Nonce: nonce, Data: sealed}); err != nil {
		return err
	}
	s.storedOnce.Do(func() { close(s.stored) })
	return nil
}
