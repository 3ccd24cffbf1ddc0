package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/gotd/td/tg"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/mtproto"
)

// MTProtoClients starts one MTProto client per bot on first use and keeps it
// for the life of the process: a login is expensive and throttled by
// Telegram, and the session it creates is stored (encrypted) for the next
// process.
type MTProtoClients struct {
	cfg    *config.Config
	db     db.Executor
	logger *slog.Logger
	key    []byte
	// metrics counts each client's calls; nil counts nothing.
	metrics *mtproto.Metrics

	mu      sync.Mutex
	clients map[int64]*mtproto.Client
	// user is the premium user session's client (`ferry login`), started
	// on the first file over the bots' limit; its own lock, so starting it
	// never holds up the bots.
	userMu sync.Mutex
	user   *mtproto.Client
}

// NewMTProtoClients checks the MTProto settings; it starts nothing.
func NewMTProtoClients(cfg *config.Config, d db.Executor, logger *slog.Logger) (*MTProtoClients, error) {
	var missing []string
	if cfg.APIID == 0 || cfg.APIHash == "" {
		missing = append(missing, "API_ID and API_HASH")
	}
	if cfg.SessionKey == "" {
		missing = append(missing, "SESSION_KEY")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("uploads need %s: set them to upload over MTProto", strings.Join(missing, " and "))
	}
	m := &MTProtoClients{cfg: cfg, db: d, logger: logger, clients: map[int64]*mtproto.Client{}}
	if cfg.MTProtoPublicKey != "" {
		key, err := os.ReadFile(cfg.MTProtoPublicKey)
		if err != nil {
			return nil, fmt.Errorf("read MTPROTO_PUBLIC_KEY: %w", err)
		}
		m.key = key
	}
	return m, nil
}

// WithMetrics makes the clients count their calls on mm; call it before
// the first Client.
func (m *MTProtoClients) WithMetrics(mm *mtproto.Metrics) *MTProtoClients {
	m.metrics = mm
	return m
}

// Client returns the started client of a bot.
func (m *MTProtoClients) Client(ctx context.Context, botID int64) (*mtproto.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.clients[botID]; ok {
		return c, nil
	}
	b, ok := m.cfg.BotByID(botID)
	if !ok {
		return nil, fmt.Errorf("bot %d is not configured", botID)
	}
	store, err := mtproto.NewSessionStore(m.db, b.ID, m.cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	c, err := mtproto.NewClient(mtproto.Options{
		APIID: m.cfg.APIID, APIHash: m.cfg.APIHash, BotToken: b.Token, BotID: b.ID,
		DCAddr: m.cfg.MTProtoDCAddr, PublicKeyPEM: m.key, SessionStorage: store,
		Logger: m.logger.With("component", "mtproto"), PoolSize: m.cfg.UploadThreads, Metrics: m.metrics,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	m.clients[botID] = c
	return c, nil
}

// Close stops every client.
func (m *MTProtoClients) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for id, c := range m.clients {
		errs = append(errs, c.Close())
		delete(m.clients, id)
	}
	m.userMu.Lock()
	if m.user != nil {
		errs = append(errs, m.user.Close())
		m.user = nil
	}
	m.userMu.Unlock()
	return errors.Join(errs...)
}

// User returns the started client of the user session `ferry login`
// stored: mtproto.ErrNoUserSession without one, ErrUserSessionSealed or
// ErrUserLoggedOut when it cannot be used. Until a session exists each
// call looks again, so a login takes effect without a restart.
func (m *MTProtoClients) User(ctx context.Context) (*mtproto.Client, error) {
	m.userMu.Lock()
	defer m.userMu.Unlock()
	if m.user != nil {
		return m.user, nil
	}
	if _, err := m.db.SessionGet(ctx, mtproto.UserSessionOwner); errors.Is(err, db.ErrNotFound) {
		return nil, mtproto.ErrNoUserSession
	} else if err != nil {
		return nil, fmt.Errorf("user session: %w", err)
	}
	store, err := mtproto.NewUserSessionStore(m.db, m.cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	c, err := mtproto.NewClient(mtproto.Options{
		APIID: m.cfg.APIID, APIHash: m.cfg.APIHash, User: true,
		DCAddr: m.cfg.MTProtoDCAddr, PublicKeyPEM: m.key, SessionStorage: store,
		Logger: m.logger.With("component", "mtproto", "session", "user"), PoolSize: m.cfg.UploadThreads, Metrics: m.metrics,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("user session: %w", err)
	}
	m.user = c
	return c, nil
}

// premiumError is why a file over the bots' limit cannot be uploaded; it
// is an mtproto.ErrTooLarge, so callers refuse the file for good.
type premiumError struct{ reason string }

func (e *premiumError) Error() string        { return e.reason }
func (e *premiumError) Is(target error) bool { return target == mtproto.ErrTooLarge }

// errPremiumUnavailable: the premium session could not be started now
// (network, database); the check is worth retrying.
var errPremiumUnavailable = errors.New("premium session unavailable")

// Premium returns the user session's client when its account is premium,
// else a premiumError saying why not (or errPremiumUnavailable).
func (m *MTProtoClients) Premium(ctx context.Context, size int64) (*mtproto.Client, error) {
	over := fmt.Sprintf("%.1f MiB is over the %d MiB limit for bots", float64(size)/(1<<20), mtproto.BotMaxSize>>20)
	need := fmt.Sprintf("a file over %d MiB needs a premium session", mtproto.BotMaxSize>>20)
	c, err := m.User(ctx)
	switch {
	case errors.Is(err, mtproto.ErrNoUserSession):
		return nil, &premiumError{fmt.Sprintf("%s; %s: run ferry login", over, need)}
	case errors.Is(err, mtproto.ErrUserSessionSealed):
		return nil, &premiumError{fmt.Sprintf("%s; %s, and %s: run ferry login again", over, need, mtproto.ErrUserSessionSealed)}
	case errors.Is(err, mtproto.ErrUserLoggedOut):
		return nil, &premiumError{fmt.Sprintf("%s; %s, and %s: run ferry login again", over, need, mtproto.ErrUserLoggedOut)}
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errPremiumUnavailable, err)
	}
	if u := c.Self(); u == nil || !u.Premium {
		return nil, &premiumError{fmt.Sprintf("%s; %s, and the logged-in account %s is not premium", over, need, accountName(u))}
	}
	return c, nil
}

// ForUpload returns the client that uploads and posts a file of size
// bytes: the bot's up to the bots' limit, else the premium user session's
// (premium true). Its errors are Premium's.
func (m *MTProtoClients) ForUpload(ctx context.Context, botID, size int64) (c *mtproto.Client, premium bool, err error) {
	if size <= mtproto.BotMaxSize {
		c, err = m.Client(ctx, botID)
		return c, false, err
	}
	c, err = m.Premium(ctx, size)
	return c, err == nil, err
}

// checkUploadLimit refuses, before any part is sent, a file no session
// here can upload, with the reason: over 4000 MiB, or over 2000 MiB
// without a premium user session. errPremiumUnavailable is transient.
func (d *Deps) checkUploadLimit(ctx context.Context, size int64) error {
	if size <= mtproto.BotMaxSize {
		return d.checkUploadSize(size)
	}
	if err := mtproto.NewUploader(nil, nil).WithPremium(true).CheckSize(size); err != nil {
		return err
	}
	if d.MTProto == nil {
		return &premiumError{"uploads are not enabled"}
	}
	_, err := d.MTProto.Premium(ctx, size)
	return err
}

// accountName is how a reply names a Telegram account.
func accountName(u *tg.User) string {
	if u == nil {
		return "(unknown)"
	}
	name := strings.TrimSpace(u.FirstName + " " + u.LastName)
	if u.Username != "" {
		name += " (@" + u.Username + ")"
	}
	if name == "" {
		name = fmt.Sprintf("id %d", u.ID)
	}
	return name
}
