// Package webhook is ferry's HTTP face: it receives Bot API updates
// (POST /tg/{bot}) and makes each one durable through the jobs intake before
// answering, and it serves health, metrics and the River UI. It also holds
// the long-polling receiver, which feeds the same intake.
package webhook

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/links"
)

// Submitter makes updates durable; jobs.Intake is the real one.
type Submitter interface {
	Submit(ctx context.Context, u jobs.Update) error
}

// Options wire the server's dependencies.
type Options struct {
	Config *config.Config
	// Intake receives updates; nil serves no /tg routes (the worker process).
	Intake Submitter
	// Ready reports whether the database is reachable and migrated.
	Ready func(ctx context.Context) error
	// RiverUI is mounted at /riverui behind basic auth when non-nil.
	RiverUI http.Handler
	// Gatherer serves /metrics; Metrics records into the same registry.
	Gatherer prometheus.Gatherer
	Metrics  *Metrics
	Logger   *slog.Logger
	// Files serves /f/{unique_id} pages when non-nil.
	Files FileLookup
	// Links signs file links (nil: links are off); Stream serves
	// GET|HEAD /dl/{unique_id}/{name} when non-nil.
	Links  *links.Signer
	Stream http.Handler
	// MaxBody caps an update's size (default 1 MiB; Telegram's are far smaller).
	MaxBody int64
}

// NewServer builds the Echo server with every route.
func NewServer(o Options) *echo.Echo {
	if o.MaxBody == 0 {
		o.MaxBody = 1 << 20
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
		defer cancel()
		if err := o.Ready(ctx); err != nil {
			o.Logger.Warn("not ready", "err", err)
			return c.String(http.StatusServiceUnavailable, "not ready\n")
		}
		return c.String(http.StatusOK, "ready\n")
	})
	if o.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})))
	}
	if o.Intake != nil {
		e.POST("/tg/:bot", newHandler(o.Config, o.Intake, o.Logger, o.MaxBody, o.Metrics).serve)
	}
	if o.Files != nil {
		e.GET("/f/:id", serveFile(FilePage{Files: o.Files, Links: o.Links, Lifetime: o.Config.LinkLifetime, Public: o.Config.FilePagePublic}))
	}
	if o.Stream != nil {
		dl := echo.WrapHandler(o.Stream)
		e.GET("/dl/:id/:name", dl)
		e.HEAD("/dl/:id/:name", dl)
	}
	if o.RiverUI != nil {
		ui := basicAuth(o.Config.RiverUIUser, o.Config.RiverUIPassword, o.RiverUI)
		e.Any("/riverui", echo.WrapHandler(ui))
		e.Any("/riverui/*", echo.WrapHandler(ui))
	}
	return e
}

// basicAuth guards the River UI. Callers never pass empty credentials:
// cmd/ferry refuses to mount the UI without them.
func basicAuth(user, pass string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		okUser := subtle.ConstantTimeCompare([]byte(u), []byte(user)) == 1
		okPass := subtle.ConstantTimeCompare([]byte(p), []byte(pass)) == 1
		if !ok || !okUser || !okPass || user == "" || pass == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="ferry River UI", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
