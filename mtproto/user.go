package mtproto

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gotd/td/session"
	"github.com/gotd/td/telegram/auth"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"

	"github.com/ferry-dev/ferry/db"
)

// UserSessionOwner keys the user account session (`ferry login`) among the
// stored sessions: bot ids are positive, so it never meets a bot's row.
const UserSessionOwner int64 = -1

var (
	// ErrNoUserSession: `ferry login` has not stored a user session.
	ErrNoUserSession = errors.New("no user session stored")
	// ErrUserSessionSealed: the stored user session does not open with
	// this SESSION_KEY (another key, or a tampered row).
	ErrUserSessionSealed = errors.New("the stored user session cannot be decrypted with this SESSION_KEY")
	// ErrUserLoggedOut: Telegram no longer accepts the stored user session
	// (logged out from another device, or expired).
	ErrUserLoggedOut = errors.New("the stored user session is no longer authorized")
	// ErrLoginCode and ErrLoginPassword: Telegram refused the code or the
	// 2FA password.
	ErrLoginCode     = errors.New("the login code is wrong or expired")
	ErrLoginPassword = errors.New("the 2FA password is wrong")
)

// UserSessionStore is the user session's SessionStore. Unlike a bot's, a
// missing or unreadable row is an error, not "start afresh": a user cannot
// log in unattended, and a fresh auth key written over the row would
// destroy a session that only needed the right SESSION_KEY.
type UserSessionStore struct{ *SessionStore }

// NewUserSessionStore returns the store of the user session.
func NewUserSessionStore(d db.Executor, sessionKey string) (*UserSessionStore, error) {
	s, err := NewSessionStore(d, UserSessionOwner, sessionKey)
	if err != nil {
		return nil, err
	}
	return &UserSessionStore{s}, nil
}

// LoadSession returns the decrypted session, ErrNoUserSession or
// ErrUserSessionSealed.
func (u *UserSessionStore) LoadSession(ctx context.Context) ([]byte, error) {
	sealed, err := u.db.SessionGet(ctx, u.botID)
	if errors.Is(err, db.ErrNotFound) {
		return nil, ErrNoUserSession
	}
	if err != nil {
		return nil, err
	}
	plain, err := u.aead.Open(nil, sealed.Nonce, sealed.Data, u.additionalData())
	if err != nil {
		return nil, ErrUserSessionSealed
	}
	return plain, nil
}

// UserAuthenticator asks for what a user login needs (a terminal does).
type UserAuthenticator interface {
	Phone(ctx context.Context) (string, error)
	Code(ctx context.Context, sent *tg.AuthSentCode) (string, error)
	Password(ctx context.Context) (string, error)
}

// gotdAuth adapts UserAuthenticator to gotd's; signing up is refused (the
// account must exist).
type gotdAuth struct{ UserAuthenticator }

func (gotdAuth) AcceptTermsOfService(_ context.Context, tos tg.HelpTermsOfService) error {
	return &auth.SignUpRequired{TermsOfService: tos}
}

func (gotdAuth) SignUp(context.Context) (auth.UserInfo, error) {
	return auth.UserInfo{}, errors.New("this phone number has no Telegram account: sign up in a Telegram app first")
}

// signalStore is an in-memory session that reports its first write.
type signalStore struct {
	session.StorageMemory
	once   sync.Once
	stored chan struct{}
}

func (s *signalStore) StoreSession(ctx context.Context, data []byte) error {
	if err := s.StorageMemory.StoreSession(ctx, data); err != nil {
		return err
	}
	s.once.Do(func() { close(s.stored) })
	return nil
}

// Login signs a user account in with gotd's auth flow (phone, code, 2FA
// password from a) and returns the account. The session is kept in memory
// until the login succeeds and only then sealed into store, so a wrong
// code or password stores nothing. opts configure the connection as for
// NewClient (API id and hash, DC address and key); its SessionStorage is
// ignored.
func Login(ctx context.Context, opts Options, store session.Storage, a UserAuthenticator) (*tg.User, error) {
	if store == nil {
		return nil, errors.New("login: no session store")
	}
	mem := &signalStore{stored: make(chan struct{})}
	opts.User, opts.SessionStorage = true, mem
	c, err := NewClient(opts)
	if err != nil {
		return nil, err
	}
	var self *tg.User
	err = c.tg.Run(ctx, func(ctx context.Context) error {
		flow := auth.NewFlow(gotdAuth{a}, auth.SendCodeOptions{})
		if err := flow.Run(ctx, c.tg.Auth()); err != nil {
			return loginError(err)
		}
		st, err := c.tg.Auth().Status(ctx)
		if err != nil {
			return fmt.Errorf("read the account: %w", err)
		}
		if !st.Authorized || st.User == nil {
			return errors.New("login: Telegram did not authorize the session")
		}
		self = st.User
		select {
		case <-mem.stored:
		case <-time.After(10 * time.Second):
			return errors.New("login: the session was not handed over within 10s")
		case <-ctx.Done():
			return ctx.Err()
		}
		data, err := mem.LoadSession(ctx)
		if err != nil {
			return fmt.Errorf("login: read the new session: %w", err)
		}
		if err := store.StoreSession(ctx, data); err != nil {
			return fmt.Errorf("login: store the session: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return self, nil
}

// loginError names a refused code or password plainly.
func loginError(err error) error {
	switch {
	case errors.Is(err, auth.ErrPasswordInvalid), tgerr.Is(err, "PASSWORD_HASH_INVALID"):
		return fmt.Errorf("%w: %w", ErrLoginPassword, err)
	case tgerr.Is(err, "PHONE_CODE_INVALID", "PHONE_CODE_EXPIRED", "PHONE_CODE_EMPTY"):
		return fmt.Errorf("%w: %w", ErrLoginCode, err)
	}
	return fmt.Errorf("login: %w", err)
}
