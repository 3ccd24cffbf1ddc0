// Package mtproto moves files into Telegram over MTProto (gotd): one client
// per bot, a resumable parallel upload pipeline, idempotent sendMedia,
// parallel downloads and a download-to-upload relay. Protocol code lives
// here; deciding what to upload and where belongs to the callers (jobs/).
package mtproto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gotd/contrib/middleware/floodwait"
	"github.com/gotd/contrib/middleware/ratelimit"
	"github.com/gotd/td/crypto"
	"github.com/gotd/td/session"
	"github.com/gotd/td/telegram"
	"github.com/gotd/td/telegram/dcs"
	"github.com/gotd/td/tg"
	"golang.org/x/time/rate"
)

// Options configure one bot's MTProto client.
type Options struct {
	// APIID and APIHash are the application credentials (API_ID, API_HASH).
	APIID   int
	APIHash string
	// BotToken logs the bot in when the stored session is not authorized.
	// It is never logged.
	BotToken string
	// BotID is the numeric bot id (the token part before ':'); it keys the
	// stored session. Derived from BotToken when zero.
	BotID int64
	// User makes this the user account session `ferry login` stored
	// (user.go): it never logs in by itself, and BotID defaults to
	// UserSessionOwner.
	User bool
	// DCAddr ("host:port") overrides the DC address (MTPROTO_DC_ADDR), for
	// test servers. DC is the id served there (default 2).
	DCAddr string
	DC     int
	// PublicKeyPEM is the server RSA key (MTPROTO_PUBLIC_KEY) for a test
	// server; empty means Telegram's built-in keys.
	PublicKeyPEM []byte
	// SessionStorage keeps the session; nil means in memory only.
	SessionStorage session.Storage
	// Logger receives client life-cycle logs.
	Logger *slog.Logger
	// PoolSize is the number of data connections for parallel parts
	// (default 8: one per part in flight, as each connection carries one
	// request at a time).
	PoolSize int
	// APIRate limits calls on the main connection (default 30/s, burst 10);
	// PoolRate is a ceiling on data-pool calls (default 2000/s). Both sit in
	// front of the flood-wait middleware.
	APIRate  rate.Limit
	PoolRate rate.Limit
	// MaxFloodWait is the longest FLOOD_WAIT obeyed inline (default 5m);
	// longer ones are returned as errors for the job to reschedule.
	MaxFloodWait time.Duration
	// Metrics counts calls, errors and flood waits by method; nil counts
	// nothing.
	Metrics *Metrics
}

// Client is one bot's logged-in MTProto connection plus a pool of data
// connections for parallel parts.
type Client struct {
	opts   Options
	log    *slog.Logger
	tg     *telegram.Client
	api    *tg.Client
	cancel context.CancelFunc
	done   chan struct{}
	runErr error

	mu    sync.Mutex
	pool  tg.Invoker
	pools map[int]tg.Invoker
	self  *tg.User
}

// BotIDFromToken returns the numeric id in a bot token ("123:abc" -> 123).
func BotIDFromToken(token string) (int64, error) {
	for i := 0; i < len(token); i++ {
		if token[i] == ':' {
			id, err := strconv.ParseInt(token[:i], 10, 64)
			if err != nil || id <= 0 {
				return 0, errors.New("bot token: malformed id part")
			}
			return id, nil
		}
	}
	return 0, errors.New("bot token: missing ':'")
}

// NewClient prepares a client; Start connects it.
func NewClient(opts Options) (*Client, error) {
	if opts.APIID == 0 || opts.APIHash == "" {
		return nil, errors.New("mtproto client: API_ID and API_HASH are required")
	}
	if opts.User && opts.BotID == 0 {
		opts.BotID = UserSessionOwner
	}
	if opts.BotID == 0 {
		id, err := BotIDFromToken(opts.BotToken)
		if err != nil {
			return nil, fmt.Errorf("mtproto client: %w", err)
		}
		opts.BotID = id
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 8
	}
	if opts.DC == 0 {
		opts.DC = 2
	}
	if opts.APIRate == 0 {
		opts.APIRate = 30
	}
	if opts.PoolRate == 0 {
		opts.PoolRate = 2000
	}
	if opts.MaxFloodWait == 0 {
		opts.MaxFloodWait = 5 * time.Minute
	}
	c := &Client{opts: opts, log: opts.Logger.With("bot_id", opts.BotID), pools: map[int]tg.Invoker{}}

	to := telegram.Options{
		DC:             opts.DC,
		NoUpdates:      true,
		SessionStorage: opts.SessionStorage,
		// Parts are random-looking bytes: gzip costs 15-25% of throughput
		// and saves nothing.
		CompressThreshold: -1,
		Middlewares:       c.middlewares(opts.APIRate, 10),
	}
	if opts.SessionStorage == nil {
		to.SessionStorage = &session.StorageMemory{}
	}
	if len(opts.PublicKeyPEM) > 0 {
		keys, err := crypto.ParseRSAPublicKeys(opts.PublicKeyPEM)
		if err != nil || len(keys) == 0 {
			return nil, fmt.Errorf("mtproto client: parse MTPROTO_PUBLIC_KEY: %w", errors.Join(err, errors.New("no RSA public key found")))
		}
		for _, k := range keys {
			to.PublicKeys = append(to.PublicKeys, telegram.PublicKey{RSA: k})
		}
	}
	if opts.DCAddr != "" {
		host, portS, err := net.SplitHostPort(opts.DCAddr)
		if err != nil {
			return nil, fmt.Errorf("mtproto client: MTPROTO_DC_ADDR %q: %w", opts.DCAddr, err)
		}
		port, err := strconv.Atoi(portS)
		if err != nil {
			return nil, fmt.Errorf("mtproto client: MTPROTO_DC_ADDR port %q: %w", portS, err)
		}
		to.DCList = dcs.List{Options: []tg.DCOption{{ID: opts.DC, IPAddress: host, Port: port, Static: true}}}
		to.Resolver = dcs.Plain(dcs.PlainOptions{})
	}
	c.tg = telegram.NewClient(opts.APIID, opts.APIHash, to)
	return c, nil
}

// middlewares returns a fresh rate limiter and flood-wait waiter: every
// invoker we use (main connection, data pools) gets its own chain.
func (c *Client) middlewares(r rate.Limit, burst int) []telegram.Middleware {
	mws := []telegram.Middleware{
		ratelimit.New(r, burst),
		floodwait.NewSimpleWaiter().WithMaxWait(c.opts.MaxFloodWait),
	}
	if c.opts.Metrics != nil {
		// Innermost: under the waiter, every FLOOD_WAIT is seen.
		mws = append(mws, c.opts.Metrics.Middleware())
	}
	return mws
}

// wrap applies middlewares to a raw invoker (gotd applies Options.Middlewares
// to the main connection only, not to pools).
func wrap(inv tg.Invoker, mws []telegram.Middleware) tg.Invoker {
	for i := len(mws) - 1; i >= 0; i-- {
		inv = mws[i].Handle(inv)
	}
	return inv
}

// Start connects, logs the bot in if the stored session is not authorized,
// and returns once the client is ready. It runs until ctx ends or Close.
func (c *Client) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.done = make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		defer close(c.done)
		err := c.tg.Run(runCtx, func(ctx context.Context) error {
			if err := c.login(ctx); err != nil {
				ready <- err
				return err
			}
			ready <- nil
			<-ctx.Done()
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			c.runErr = err
			select {
			case ready <- err:
			default:
			}
		}
	}()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	select {
	case err := <-ready:
		if err != nil {
			cancel()
			<-c.done
			return fmt.Errorf("start bot %d: %w", c.opts.BotID, err)
		}
		c.api = c.tg.API()
		if st, ok := c.opts.SessionStorage.(interface{ Stored() <-chan struct{} }); ok {
			// gotd saves the session concurrently with the login; wait so a
			// process that stops right after Start does not log in again.
			select {
			case <-st.Stored():
			case <-time.After(10 * time.Second):
				c.log.WarnContext(ctx, "mtproto session not saved within 10s")
			case <-ctx.Done():
			}
		}
		return nil
	case <-ctx.Done():
		cancel()
		<-c.done
		return fmt.Errorf("start bot %d: %w", c.opts.BotID, ctx.Err())
	}
}

func (c *Client) login(ctx context.Context) error {
	status, err := c.tg.Auth().Status(ctx)
	if err != nil {
		return fmt.Errorf("auth status: %w", err)
	}
	if status.Authorized {
		c.self = status.User
		c.log.InfoContext(ctx, "mtproto session reused")
		return nil
	}
	if c.opts.User {
		return ErrUserLoggedOut
	}
	a, err := c.tg.Auth().Bot(ctx, c.opts.BotToken)
	if err != nil {
		// The gotd error does not contain the token.
		return fmt.Errorf("bot login: %w", err)
	}
	if u, ok := a.User.(*tg.User); ok {
		c.self = u
	}
	c.log.InfoContext(ctx, "mtproto bot logged in")
	return nil
}

// Close stops the client and its pools.
func (c *Client) Close() error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	<-c.done
	return nil
}

// BotID is the bot this client acts as.
func (c *Client) BotID() int64 { return c.opts.BotID }

// Self is the logged-in bot user.
func (c *Client) Self() *tg.User { return c.self }

// API is the raw API on the main connection (rate-limited, flood-wait aware).
func (c *Client) API() *tg.Client { return c.api }

// Telegram exposes the underlying gotd client (for gotd helpers such as the
// stock uploader in benchmarks).
func (c *Client) Telegram() *telegram.Client { return c.tg }

// Pool returns the data-connection pool of the home DC (PoolSize
// connections), with the same middlewares as the main connection. Created on
// first use.
func (c *Client) Pool() (tg.Invoker, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pool != nil {
		return c.pool, nil
	}
	p, err := c.tg.Pool(int64(c.opts.PoolSize))
	if err != nil {
		return nil, fmt.Errorf("bot %d: create connection pool: %w", c.opts.BotID, err)
	}
	c.pool = wrap(p, c.middlewares(c.opts.PoolRate, 4*c.opts.PoolSize))
	return c.pool, nil
}

// DCPool returns a pool on DC dc (for downloads of files kept elsewhere),
// with middlewares; the home DC returns Pool.
func (c *Client) DCPool(ctx context.Context, dc int) (tg.Invoker, error) {
	if dc == 0 || dc == c.opts.DC {
		return c.Pool()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pools[dc]; ok {
		return p, nil
	}
	p, err := c.tg.DC(ctx, dc, int64(c.opts.PoolSize))
	if err != nil {
		return nil, fmt.Errorf("bot %d: pool for DC %d: %w", c.opts.BotID, dc, err)
	}
	inv := wrap(p, c.middlewares(c.opts.PoolRate, 4*c.opts.PoolSize))
	c.pools[dc] = inv
	return inv, nil
}
