package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/stream"
)

// newLinks is the link signer from LINK_SECRET; without one, links are off
// and start-up says so.
func newLinks(cfg *config.Config, logger *slog.Logger) *links.Signer {
	s := links.New(cfg.LinkSecret)
	switch {
	case s == nil:
		logger.Warn("file links are off: set LINK_SECRET to sign /f and /dl links (View buttons then lead to pages that play and download files)")
	case cfg.PublicURL == "":
		logger.Warn("file links are signed but PUBLIC_URL is empty: replies and /get carry no links")
	default:
		logger.Info("file links on", "lifetime", cfg.LinkLifetime, "page_public", cfg.FilePagePublic)
	}
	return s
}

// pageURLFunc gives the index's View buttons a freshly signed page link;
// nil when links are off.
func pageURLFunc(cfg *config.Config) func(string) string {
	s := links.New(cfg.LinkSecret)
	if s == nil || cfg.PublicURL == "" {
		return nil
	}
	return func(uniqueID string) string {
		if cfg.FilePagePublic {
			return cfg.PublicURL + "/f/" + uniqueID
		}
		return s.PageURL(cfg.PublicURL, uniqueID, time.Now().Add(cfg.LinkLifetime))
	}
}

// newStreamHandler builds GET|HEAD /dl/… on the bots' MTProto clients
// (mt; in `ferry web` a set of its own is started). It returns nil when
// links are off or MTProto is not configured, and a function that stops
// what it started.
func newStreamHandler(cfg *config.Config, d db.Driver, ix *index.Indexer, mt *jobs.MTProtoClients, signer *links.Signer,
	reg prometheus.Registerer, logger *slog.Logger) (http.Handler, func()) {
	if signer == nil || ix == nil {
		return nil, func() {}
	}
	stop := func() {}
	if mt == nil {
		var err error
		mt, err = jobs.NewMTProtoClients(cfg, d, logger)
		if err != nil {
			logger.Warn("file streams disabled", "reason", err.Error())
			return nil, stop
		}
		stop = func() { _ = mt.Close() }
	}
	o := stream.Options{
		Files: ix, Holders: botpool.New(d, logger), Clients: mt,
		Pools: mtproto.NewStreamPools(8), Links: signer, Window: 4,
		PerBot: cfg.StreamsPerBot, PerIP: cfg.StreamsPerIP,
		MarkFloodWait: func(ctx context.Context, botID int64, until time.Time) {
			// A failed send in the bots' shared record: every process then
			// ranks the bot last until the wait is over.
			lease, err := d.BotSendLease(ctx, botID, 10*time.Minute)
			if err == nil {
				err = d.BotSendRelease(ctx, &db.BotSendReleaseParams{BotID: botID, Lease: lease, FloodWaitUntil: until})
			}
			if err != nil {
				logger.Warn("stream: record flood wait", "bot_id", botID, "err", err)
			}
		},
		Registerer: reg, Logger: logger.With("component", "stream"),
	}
	if os.Getenv("FLY_APP_NAME") != "" {
		// Behind Fly's proxy the connection is the proxy's; it names the
		// client in Fly-Client-IP (and strips any the client sent).
		o.ClientIP = func(r *http.Request) string {
			if ip := r.Header.Get("Fly-Client-IP"); ip != "" {
				return ip
			}
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			return host
		}
	}
	return stream.New(o), stop
}
