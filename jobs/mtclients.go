package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

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
	return errors.Join(errs...)
}
