package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"riverqueue.com/riverui"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/webhook"
)

type mode int

const (
	modeServe mode = iota
	modeWeb
	modeWorker
)

func loadConfig() (*config.Config, error) { return config.Load(".env") }

// runServer starts the pieces a mode needs and stops them in reverse order on
// SIGTERM: HTTP first (no new updates), then the intake (commit what was
// taken), then the workers.
func runServer(ctx context.Context, logger *slog.Logger, m mode) error {
	start := time.Now()
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if m != modeServe && cfg.DatabaseURL == "" {
		// Apart, each would open its own embedded database (on its own
		// machine, or refused beside the other): updates taken by web
		// would wait for a worker that never sees them.
		return fmt.Errorf("ferry %s needs DATABASE_URL: web and worker share their jobs through Postgres; the embedded database serves one `ferry serve`", m)
	}
	needs := []config.Need{config.NeedBots}
	if m != modeWorker && cfg.UpdatesMode == "webhook" {
		needs = append(needs, config.NeedWebhookSecret)
	}
	if err := cfg.Check(needs...); err != nil {
		if m != modeWorker && cfg.UpdatesMode == "webhook" && cfg.WebhookSecret == "" {
			return fmt.Errorf("%w (webhook mode; long polling, UPDATES_MODE=poll, needs neither PUBLIC_URL nor WEBHOOK_SECRET)", err)
		}
		return err
	}
	if err := checkIdleExit(cfg.IdleExitAfter); err != nil {
		return err
	}
	logger.Info("starting", "mode", m.String(), "config", cfg)

	d, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer d.Close()
	ms := newMetricSet()
	bots, err := botapi.New(cfg.Bots, cfg.BotAPIURL, ms.botapi.Instrument(botapi.NewHTTPClient()), logger)
	if err != nil {
		return err
	}
	ix, err := newIndex(cfg, d, logger, ms)
	if err != nil {
		return err
	}
	limits, err := botpool.ParseLimits(cfg.SendLimits)
	if err != nil {
		return fmt.Errorf("SEND_LIMITS: %w", err)
	}
	senders := botpool.New(d, logger, botpool.WithLimits(limits))
	botpool.NewMetrics(ms.reg, senders.Budget())
	deps := &jobs.Deps{DB: d, Config: cfg, Bots: bots, Logger: logger, Index: ix,
		Senders: senders, R2Enabled: true, Metrics: ms.jobs, Started: start}
	if m != modeWeb {
		mt, err := jobs.NewMTProtoClients(cfg, d, logger)
		if err != nil {
			logger.Warn("uploads disabled", "reason", err.Error())
		} else {
			deps.MTProto, deps.UploadState = mt.WithMetrics(ms.mtproto), mtproto.NewStateStore(d)
			defer mt.Close()
		}
	}
	client, err := jobs.NewClient(deps, jobs.ClientOptions{Work: m != modeWeb})
	if err != nil {
		return err
	}
	idle := newIdleExit(cfg.IdleExitAfter, m, client, logger) // nil unless IDLE_EXIT_AFTER

	reg := ms.reg
	reg.MustRegister(webhook.NewJobsCollector(client))
	metrics := ms.webhook

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	// Every token is checked with getMe beside the start-up, not before it:
	// a refused token stops the process within a round trip, and an
	// unreachable Telegram delays nothing (the check keeps trying).
	tokenErr := make(chan error, 1)
	// The poller stops first on the way down, as the listener does.
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go func() {
		if err := bots.CheckTokens(runCtx); errors.Is(err, botapi.ErrTokenRefused) {
			tokenErr <- err
		}
	}()
	var wg sync.WaitGroup
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }

	var intake *jobs.Intake
	if m != modeWorker {
		intake = jobs.NewIntake(d, client, logger, jobs.WithObserver(metrics.ObserveCommit), jobs.WithSightings(ix != nil), jobs.WithMetrics(ms.jobs))
		goRun(func() { intake.Run(runCtx) })
	}
	opts := webhook.Options{
		Config: cfg, Ready: readiness(d), Gatherer: reg, Metrics: metrics, Files: ix,
		Logger: logger.With("component", "http"),
	}
	if m != modeWorker {
		opts.Links = newLinks(cfg, logger)
		var stopStream func()
		opts.Stream, stopStream = newStreamHandler(cfg, d, ix, deps.MTProto, opts.Links, reg, logger)
		defer stopStream()
	}
	if intake != nil && cfg.UpdatesMode == "webhook" {
		opts.Intake = intake
	}
	if m != modeWorker {
		ui, err := riverUI(runCtx, cfg, client, logger)
		if err != nil {
			return err
		}
		opts.RiverUI = ui
	}
	if intake != nil && cfg.UpdatesMode == "poll" {
		poller := webhook.NewPoller(bots, cfg.BotAPIURL, intake, logger.With("component", "poll"), 25*time.Second)
		goRun(func() { poller.Run(pollCtx) })
	}
	if m != modeWorker {
		goRun(func() {
			rctx, rcancel := context.WithTimeout(runCtx, time.Minute)
			defer rcancel()
			if err := jobs.RegisterCommands(rctx, bots, cfg.AdminIDs); err != nil {
				logger.Warn("register command menu", "err", err)
			}
		})
	}

	e := webhook.NewServer(opts)
	idle.attach(e)
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "startup", time.Since(start))
	// Workers start after the listener: a machine woken by a request answers
	// it without waiting for River's start-up.
	if m != modeWeb {
		if err := client.Start(runCtx); err != nil {
			_ = srv.Close()
			return fmt.Errorf("start workers: %w", err)
		}
	}
	idle.start(runCtx)

	var refused error
	idled := false
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case refused = <-tokenErr:
		logger.Error("stopping: a bot token was refused", "err", refused)
	case <-idle.Done():
		idled = true
	}
	logger.Info("shutting down")
	stopPoll()
	shCtx, shCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer shCancel()
	_ = srv.Shutdown(shCtx)
	if idled {
		idle.drain(ctx) // an update taken while the listener closed (bounded)
		// River's stop below gets its own time, whatever the drain used.
		var c2 context.CancelFunc
		shCtx, c2 = context.WithTimeout(context.Background(), 30*time.Second)
		defer c2()
	}
	if m != modeWeb {
		softCtx, softCancel := context.WithTimeout(shCtx, 20*time.Second)
		if stopErr := client.Stop(softCtx); stopErr != nil {
			_ = client.StopAndCancel(shCtx)
		}
		softCancel()
	}
	cancel()
	wg.Wait()
	if refused != nil {
		return refused
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

func (m mode) String() string { return [...]string{"serve", "web", "worker"}[m] }

// readiness checks the database answers. The schema was made current by
// Migrate before the listener opened, and a newer deploy only adds to it,
// so the full migration check need not run on every probe.
func readiness(d db.Driver) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := d.Ping(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		return nil
	}
}

// riverUI builds the River UI handler, or nil with a warning when no
// credentials are configured: the UI never runs open.
func riverUI(ctx context.Context, cfg *config.Config, client db.River, logger *slog.Logger) (http.Handler, error) {
	if cfg.RiverUIUser == "" || cfg.RiverUIPassword == "" {
		logger.Warn("River UI disabled: set RIVERUI_USER and RIVERUI_PASSWORD to enable /riverui")
		return nil, nil
	}
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: client.UIEndpoints(),
		Logger:    logger.With("component", "riverui"),
		Prefix:    "/riverui",
	})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	if err := h.Start(ctx); err != nil {
		return nil, fmt.Errorf("start river ui: %w", err)
	}
	return h, nil
}

func runMigrate(ctx context.Context, logger *slog.Logger) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	// Fly runs release_command in a throwaway machine without volumes: an
	// empty DATABASE_URL there would migrate a file that vanishes and let
	// the deploy go on as if the database were ready.
	// flyctl marks that machine with RELEASE_COMMAND=1.
	if cfg.DatabaseURL == "" && os.Getenv("FLY_APP_NAME") != "" && os.Getenv("RELEASE_COMMAND") != "" {
		return errors.New("migrate: DATABASE_URL is empty on a Fly release machine, which has no volume; " +
			"attach Postgres (fly postgres attach) or remove release_command when running on SQLite")
	}
	d, err := openMigrated(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer d.Close()
	logger.Info("migrations current")
	return nil
}
