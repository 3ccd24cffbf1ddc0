package webhook

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-telegram/bot/models"
	"github.com/labstack/echo/v4"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/jobs"
)

// SecretHeader is where Telegram puts the secret_token given to setWebhook.
const SecretHeader = "X-Telegram-Bot-Api-Secret-Token"

type handler struct {
	// bots holds each configured bot by id with its secret token, derived
	// once: an HMAC per request was a few percent of the intake's CPU.
	bots    map[int64]botSecret
	intake  Submitter
	logger  *slog.Logger
	maxBody int64
	metrics *Metrics
}

type botSecret struct {
	bot    config.Bot
	secret []byte
}

func newHandler(cfg *config.Config, intake Submitter, logger *slog.Logger, maxBody int64, metrics *Metrics) *handler {
	h := &handler{bots: make(map[int64]botSecret, len(cfg.Bots)), intake: intake, logger: logger, maxBody: maxBody, metrics: metrics}
	for _, b := range cfg.Bots {
		h.bots[b.ID] = botSecret{bot: b, secret: []byte(cfg.WebhookSecretToken(b.ID))}
	}
	return h
}

// serve answers 200 only once the update is committed as a job; anything
// else makes Telegram deliver it again later, so nothing is lost.
func (h *handler) serve(c echo.Context) error {
	code, msg := h.accept(c)
	h.metrics.request(code)
	if code == http.StatusOK {
		return c.NoContent(http.StatusOK)
	}
	return c.String(code, msg+"\n")
}

func (h *handler) accept(c echo.Context) (int, string) {
	botID, err := strconv.ParseInt(c.Param("bot"), 10, 64)
	if err != nil {
		return http.StatusNotFound, "unknown bot"
	}
	bs, ok := h.bots[botID]
	if !ok {
		return http.StatusNotFound, "unknown bot"
	}
	b := bs.bot
	got := c.Request().Header.Get(SecretHeader)
	if subtle.ConstantTimeCompare([]byte(got), bs.secret) != 1 {
		return http.StatusUnauthorized, "wrong secret token"
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, h.maxBody+1))
	if err != nil {
		return http.StatusBadRequest, "cannot read body"
	}
	if int64(len(body)) > h.maxBody {
		return http.StatusRequestEntityTooLarge, "update too large"
	}
	id, u, err := ParseUpdate(body)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if err := h.intake.Submit(c.Request().Context(), jobs.Update{BotID: b.ID, UpdateID: id, Raw: body, Sighting: jobs.SightingOf(u)}); err != nil {
		h.logger.Error("update not committed; Telegram will retry", "bot", b, "update_id", id, "err", err)
		return http.StatusServiceUnavailable, "try again"
	}
	return http.StatusOK, ""
}

// ParseUpdate checks that body is an update our workers can decode and
// returns its update_id and the decoded update. A malformed update is refused
// before it becomes a job that could never succeed. The body is decoded once:
// the outer UpdateID shadows models.Update's own field, so a missing
// update_id can be told from update_id 0.
func ParseUpdate(body []byte) (int64, *models.Update, error) {
	var u struct {
		UpdateID *int64 `json:"update_id"`
		models.Update
	}
	if err := json.Unmarshal(body, &u); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, errors.New("malformed JSON")
		}
		return 0, nil, errors.New("not a Bot API update")
	}
	if u.UpdateID == nil || *u.UpdateID < 0 {
		return 0, nil, errors.New("update_id missing")
	}
	u.Update.ID = *u.UpdateID
	return *u.UpdateID, &u.Update, nil
}
