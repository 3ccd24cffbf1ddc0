package webhook

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
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

// serve answers 200 only once the intake has committed the update's job;
// anything else makes Telegram deliver it again later, so nothing is lost.
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
		return http.StatusRequestEntityTooLarge, "request body too large"
	}
	id, sighting, kind, err := ParseUpdateKind(body)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if err := h.intake.Submit(c.Request().Context(), jobs.Update{BotID: b.ID, UpdateID: id, Raw: body, Sighting: sighting, Kind: kind}); err != nil {
		h.logger.Error("could not commit the update; Telegram will retry", "bot", b, "update_id", id, "err", err)
		return http.StatusServiceUnavailable, "try again"
	}
	return http.StatusOK, ""
}

// ParseUpdate, given a webhook body, checks that our workers can decode it
// and returns its update_id and, for a file posted in a channel or group,
// the sighting the index records. Malformed updates are refused before they
// become jobs that could never succeed.
//
// Most updates are channel files (every bot in a channel sees every post),
// and nothing decodes those again: they are read into the few fields the
// index records (updateLean), a fraction of the cost of a models.Update.
// All other updates are decoded whole, as their workers will decode them.
func ParseUpdate(body []byte) (int64, *jobs.Sighting, error) {
	id, s, _, err := ParseUpdateKind(body)
	return id, s, err
}

// parseFull decodes body once: the outer UpdateID shadows models.Update's
// own field, so a missing update_id can be told from update_id 0.
func parseFull(body []byte) (int64, *models.Update, error) {
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

// updateLean holds the fields of updates that tell a channel file (see
// jobs.Classify) and that the index records (index.PostFromMessage), with
// the field names and types of models.Update.
type updateLean struct {
	UpdateID      *int64          `json:"update_id"`
	Message       *leanMessage    `json:"message"`
	ChannelPost   *leanMessage    `json:"channel_post"`
	CallbackQuery json.RawMessage `json:"callback_query"`
	MyChatMember  json.RawMessage `json:"my_chat_member"`
}

type leanMessage struct {
	ID   int `json:"message_id"`
	Chat struct {
		ID   int64           `json:"id"`
		Type models.ChatType `json:"type"`
	} `json:"chat"`
	Text      string            `json:"text"`
	Caption   string            `json:"caption"`
	Document  *models.Document  `json:"document"`
	Video     *models.Video     `json:"video"`
	Audio     *models.Audio     `json:"audio"`
	Animation *models.Animation `json:"animation"`
}

func (m *leanMessage) message() *models.Message {
	if m == nil {
		return nil
	}
	return &models.Message{ID: m.ID, Chat: models.Chat{ID: m.Chat.ID, Type: m.Chat.Type}, Text: m.Text, Caption: m.Caption,
		Document: m.Document, Video: m.Video, Audio: m.Audio, Animation: m.Animation}
}

// parseChannelFile reads body as an updateLean; ok is true only for a
// channel file with its sighting. Anything else (including a body the lean
// read refuses) is left to parseFull, which gives the error.
func parseChannelFile(body []byte) (int64, *jobs.Sighting, bool) {
	var l updateLean
	if jsonv2.Unmarshal(body, &l, jsonv1.DefaultOptionsV1()) != nil || l.UpdateID == nil || *l.UpdateID < 0 {
		return 0, nil, false
	}
	u := &models.Update{ID: *l.UpdateID, Message: l.Message.message(), ChannelPost: l.ChannelPost.message()}
	if present(l.CallbackQuery) {
		u.CallbackQuery = &models.CallbackQuery{}
	}
	if present(l.MyChatMember) {
		u.MyChatMember = &models.ChatMemberUpdated{}
	}
	s := jobs.SightingOf(u)
	return *l.UpdateID, s, s != nil
}

// present tells a field that decodes to a non-nil pointer (as in
// models.Update) from one absent or null.
func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }
