package telegramtest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/telegramtest"
)

const (
	tokenA = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
	tokenB = "654321:ZYX-abc9876ghIkl-zyx57W2v1u123ew22"
)

func newBot(t *testing.T, srv *telegramtest.Server, token string) *bot.Bot {
	t.Helper()
	b, err := bot.New(token, bot.WithServerURL(srv.URL()), bot.WithSkipGetMe(),
		bot.WithHTTPClient(5*time.Second, &http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatalf("bot.New: %v", err)
	}
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantBadRequest asserts that err is go-telegram's bad request error with
// exactly Telegram's description.
func wantBadRequest(t *testing.T, err error, desc string) {
	t.Helper()
	if !errors.Is(err, bot.ErrorBadRequest) {
		t.Fatalf("err = %v, want bad request %q", err, desc)
	}
	if got := err.Error(); got != "bad request, "+desc {
		t.Fatalf("err = %q, want description %q", got, desc)
	}
}

func lastCall(t *testing.T, srv *telegramtest.Server, method string) telegramtest.Call {
	t.Helper()
	calls := srv.CallsTo(method)
	if len(calls) == 0 {
		t.Fatalf("no call to %s recorded", method)
	}
	return calls[len(calls)-1]
}

func TestUnauthorizedAndNotFound(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, "999:unknown")
	_, err := b.GetMe(ctxT(t))
	if !errors.Is(err, bot.ErrorUnauthorized) {
		t.Fatalf("err = %v, want unauthorized", err)
	}
	c := lastCall(t, srv, "getMe")
	if c.HTTPStatus != 401 || c.ErrorCode != 401 || c.Description != "Unauthorized" || c.BotID != 999 {
		t.Fatalf("recorded %+v", c)
	}

	resp, err := http.Post(srv.URL()+"/bot"+tokenA+"/noSuchMethod", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || string(body) != `{"description":"Not Found","error_code":404,"ok":false}` {
		t.Fatalf("unknown method: %d %s", resp.StatusCode, body)
	}
}

func TestGetMe(t *testing.T) {
	srv := telegramtest.NewServer(t)
	info := srv.AddBot(tokenA)
	me, err := newBot(t, srv, tokenA).GetMe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if me.ID != 123456 || !me.IsBot || me.Username != "bot123456_bot" || info.ID != 123456 || info.Username != me.Username {
		t.Fatalf("getMe = %+v, info = %+v", me, info)
	}
	// Method names are case-insensitive, as in Telegram.
	resp, err := http.Get(srv.URL() + "/bot" + tokenA + "/GETME")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(srv.CallsTo("getMe")) != 2 {
		t.Fatalf("GETME: %d, calls %d", resp.StatusCode, len(srv.CallsTo("getMe")))
	}
}

func TestSendMessage(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	kb := &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{
		{Text: "Cancel", CallbackData: "cancel:42"}, {Text: "View", URL: "https://example.com/f/x"},
	}}}
	m1, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 42, Text: "<b>Uploading</b> a &amp; b", ParseMode: models.ParseModeHTML, ReplyMarkup: kb})
	if err != nil {
		t.Fatal(err)
	}
	if m1.ID != 1 || m1.Chat.ID != 42 || m1.Chat.Type != models.ChatTypePrivate || m1.From == nil || m1.From.ID != 123456 ||
		m1.Text != "Uploading a & b" || m1.Date == 0 {
		t.Fatalf("message = %+v", m1)
	}
	if len(m1.Entities) != 1 || m1.Entities[0].Type != models.MessageEntityTypeBold || m1.Entities[0].Length != 9 {
		t.Fatalf("entities = %+v", m1.Entities)
	}
	if m1.ReplyMarkup == nil || m1.ReplyMarkup.InlineKeyboard[0][0].CallbackData != "cancel:42" {
		t.Fatalf("reply markup = %+v", m1.ReplyMarkup)
	}
	m2, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 42, Text: "second"})
	if err != nil || m2.ID != 2 {
		t.Fatalf("second message id = %v, %v", m2, err)
	}
	m3, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: -1001234567890, Text: "channel"})
	if err != nil || m3.ID != 1 || m3.Chat.Type != models.ChatTypeChannel || m3.SenderChat == nil || m3.From != nil {
		t.Fatalf("channel message = %+v, %v", m3, err)
	}

	c := srv.CallsTo("sendMessage")[0]
	if c.Params["chat_id"] != "42" || c.Params["text"] != "<b>Uploading</b> a &amp; b" || c.Params["parse_mode"] != "HTML" || c.Token != tokenA || c.BotID != 123456 {
		t.Fatalf("recorded params %+v", c.Params)
	}
	var sent models.InlineKeyboardMarkup
	if err := json.Unmarshal([]byte(c.Params["reply_markup"]), &sent); err != nil || sent.InlineKeyboard[0][1].URL != "https://example.com/f/x" {
		t.Fatalf("recorded reply_markup %q: %v", c.Params["reply_markup"], err)
	}
	if !c.OK || c.HTTPStatus != 200 || c.Injected != "" {
		t.Fatalf("recorded outcome %+v", c)
	}
	var res models.Message
	if err := json.Unmarshal(c.Result, &res); err != nil || res.ID != 1 {
		t.Fatalf("recorded result %s", c.Result)
	}
	if got, ok := srv.Message(42, 1); !ok || got.Text != "Uploading a & b" {
		t.Fatalf("stored message %+v %v", got, ok)
	}
}

func TestSendMessageValidation(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	long := strings.Repeat("x", 4097)
	tests := []struct {
		name string
		p    bot.SendMessageParams
		want string
	}{
		{"empty text", bot.SendMessageParams{ChatID: 1, Text: ""}, "Bad Request: message text is empty"},
		{"blank text", bot.SendMessageParams{ChatID: 1, Text: " \n "}, "Bad Request: message text is empty"},
		{"empty after parsing", bot.SendMessageParams{ChatID: 1, Text: "<b> </b>", ParseMode: models.ParseModeHTML}, "Bad Request: message text is empty"},
		{"too long", bot.SendMessageParams{ChatID: 1, Text: long}, "Bad Request: message is too long"},
		{"too long emoji utf16", bot.SendMessageParams{ChatID: 1, Text: strings.Repeat("😀", 2049)}, "Bad Request: message is too long"},
		{"unknown username", bot.SendMessageParams{ChatID: "@nobody", Text: "x"}, "Bad Request: chat not found"},
		{"bad chat id", bot.SendMessageParams{ChatID: "abc", Text: "x"}, "Bad Request: chat not found"},
		{"html unknown tag", bot.SendMessageParams{ChatID: 1, Text: "a<br>b", ParseMode: models.ParseModeHTML},
			`Bad Request: can't parse entities: Unsupported start tag "br" at byte offset 1`},
		{"html unclosed", bot.SendMessageParams{ChatID: 1, Text: "<b>x", ParseMode: models.ParseModeHTML},
			`Bad Request: can't parse entities: Can't find end tag corresponding to start tag "b"`},
		{"html raw lt", bot.SendMessageParams{ChatID: 1, Text: "1 < 2", ParseMode: models.ParseModeHTML},
			`Bad Request: can't parse entities: Unsupported start tag "" at byte offset 2`},
		{"html raw amp", bot.SendMessageParams{ChatID: 1, Text: "Tom & Jerry.mkv", ParseMode: models.ParseModeHTML},
			`Bad Request: can't parse entities: Unescaped "&" at byte offset 4: use &amp; (only &lt; &gt; &amp; &quot; and numeric entities are supported)`},
		{"markdownv2 unescaped", bot.SendMessageParams{ChatID: 1, Text: "movie.mkv", ParseMode: models.ParseModeMarkdown},
			`Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\'`},
		{"parse mode", bot.SendMessageParams{ChatID: 1, Text: "x", ParseMode: "Html5"}, "Bad Request: unsupported parse_mode"},
		{"callback data too long", bot.SendMessageParams{ChatID: 1, Text: "x", ReplyMarkup: &models.InlineKeyboardMarkup{
			InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "b", CallbackData: strings.Repeat("d", 65)}}}}}, "Bad Request: BUTTON_DATA_INVALID"},
		{"button without action", bot.SendMessageParams{ChatID: 1, Text: "x", ReplyMarkup: &models.InlineKeyboardMarkup{
			InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "b"}}}}},
			"Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"},
		{"button two actions", bot.SendMessageParams{ChatID: 1, Text: "x", ReplyMarkup: &models.InlineKeyboardMarkup{
			InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "b", URL: "https://x.y", CallbackData: "c"}}}}},
			"Bad Request: can't parse inline keyboard button: exactly one of the optional fields must be used (telegramtest is stricter than Telegram here)"},
		{"button bad url", bot.SendMessageParams{ChatID: 1, Text: "x", ReplyMarkup: &models.InlineKeyboardMarkup{
			InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "b", URL: "/relative"}}}}}, "Bad Request: BUTTON_URL_INVALID"},
		{"markup not json", bot.SendMessageParams{ChatID: 1, Text: "x", ReplyMarkup: "{"}, "Bad Request: can't parse reply keyboard markup JSON object"},
		{"reply to missing", bot.SendMessageParams{ChatID: 1, Text: "x", ReplyParameters: &models.ReplyParameters{MessageID: 77}}, "Bad Request: message to be replied not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.SendMessage(ctx, &tc.p)
			wantBadRequest(t, err, tc.want)
			c := lastCall(t, srv, "sendMessage")
			if c.OK || c.ErrorCode != 400 || c.Description != tc.want {
				t.Fatalf("recorded %+v", c)
			}
		})
	}
	// Exactly 4096 characters pass; so does a bot-sent keyboard with 64-byte data.
	if _, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 1, Text: strings.Repeat("x", 4096), ReplyMarkup: &models.InlineKeyboardMarkup{
		InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "b", CallbackData: strings.Repeat("d", 64)}}}}}); err != nil {
		t.Fatalf("4096 characters: %v", err)
	}
	if len(srv.Messages(1)) != 1 {
		t.Fatalf("rejected messages were stored: %d", len(srv.Messages(1)))
	}
}

func TestEditMessages(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	srv.AddBot(tokenB)
	a, bb := newBot(t, srv, tokenA), newBot(t, srv, tokenB)
	ctx := ctxT(t)
	kb := &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "Cancel", CallbackData: "cancel"}}}}
	m, err := a.SendMessage(ctx, &bot.SendMessageParams{ChatID: 7, Text: "10%", ReplyMarkup: kb})
	if err != nil {
		t.Fatal(err)
	}
	e, err := a.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: m.ID, Text: "<i>20%</i>", ParseMode: models.ParseModeHTML, ReplyMarkup: kb})
	if err != nil {
		t.Fatal(err)
	}
	if e.Text != "20%" || e.EditDate == 0 || e.ID != m.ID || e.ReplyMarkup == nil {
		t.Fatalf("edited = %+v", e)
	}
	_, err = a.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: m.ID, Text: "<i>20%</i>", ParseMode: models.ParseModeHTML, ReplyMarkup: kb})
	wantBadRequest(t, err, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
	// Same text without formatting is a modification (entities differ).
	if _, err := a.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: m.ID, Text: "20%", ReplyMarkup: kb}); err != nil {
		t.Fatalf("entity change: %v", err)
	}
	// Dropping the keyboard is a modification too.
	if _, err := a.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: m.ID, Text: "20%"}); err != nil {
		t.Fatalf("markup removal: %v", err)
	}
	_, err = a.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: 99, Text: "x"})
	wantBadRequest(t, err, "Bad Request: message to edit not found")
	_, err = bb.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: m.ID, Text: "hijack"})
	wantBadRequest(t, err, "Bad Request: message can't be edited")
	_, err = a.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: m.ID, Text: ""})
	wantBadRequest(t, err, "Bad Request: message text is empty")

	// Reply markup edits.
	r, err := a.EditMessageReplyMarkup(ctx, &bot.EditMessageReplyMarkupParams{ChatID: 7, MessageID: m.ID, ReplyMarkup: kb})
	if err != nil || r.ReplyMarkup == nil || r.ReplyMarkup.InlineKeyboard[0][0].CallbackData != "cancel" {
		t.Fatalf("editMessageReplyMarkup = %+v, %v", r, err)
	}
	_, err = a.EditMessageReplyMarkup(ctx, &bot.EditMessageReplyMarkupParams{ChatID: 7, MessageID: m.ID, ReplyMarkup: kb})
	wantBadRequest(t, err, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
	_, err = a.EditMessageReplyMarkup(ctx, &bot.EditMessageReplyMarkupParams{ChatID: 7, MessageID: m.ID, ReplyMarkup: models.ReplyKeyboardRemove{RemoveKeyboard: true}})
	wantBadRequest(t, err, "Bad Request: inline keyboard expected")
	if got, _ := srv.Message(7, m.ID); got.Text != "20%" || got.ReplyMarkup == nil {
		t.Fatalf("stored after edits = %+v", got)
	}

	// Delete, then the message is gone for edits and deletes.
	ok, err := a.DeleteMessage(ctx, &bot.DeleteMessageParams{ChatID: 7, MessageID: m.ID})
	if err != nil || !ok {
		t.Fatalf("deleteMessage = %v, %v", ok, err)
	}
	_, err = a.DeleteMessage(ctx, &bot.DeleteMessageParams{ChatID: 7, MessageID: m.ID})
	wantBadRequest(t, err, "Bad Request: message to delete not found")
	_, err = a.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 7, MessageID: m.ID, Text: "x"})
	wantBadRequest(t, err, "Bad Request: message to edit not found")
	if _, ok := srv.Message(7, m.ID); ok {
		t.Fatal("deleted message still stored")
	}
}

func TestAnswerCallbackQuery(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	srv.PushUpdate(tokenA, models.Update{CallbackQuery: &models.CallbackQuery{ID: "cb-1", From: models.User{ID: 5}, Data: "cancel:9"}})
	ok, err := b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: "cb-1", Text: "Cancelled"})
	if err != nil || !ok {
		t.Fatalf("answer = %v, %v", ok, err)
	}
	const invalid = "Bad Request: query is too old and response timeout expired or query ID is invalid"
	_, err = b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: "cb-1"})
	wantBadRequest(t, err, invalid)
	_, err = b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: "nope"})
	wantBadRequest(t, err, invalid)
	if c := srv.CallsTo("answerCallbackQuery")[0]; c.Params["callback_query_id"] != "cb-1" || c.Params["text"] != "Cancelled" {
		t.Fatalf("recorded %+v", c.Params)
	}
}

func TestMyCommands(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	cmds := []models.BotCommand{{Command: "upload", Description: "Upload a file"}, {Command: "stats", Description: "Statistics"}}
	if ok, err := b.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: cmds}); err != nil || !ok {
		t.Fatalf("setMyCommands = %v, %v", ok, err)
	}
	got, err := b.GetMyCommands(ctx, &bot.GetMyCommandsParams{})
	if err != nil || len(got) != 2 || got[0] != cmds[0] || got[1] != cmds[1] {
		t.Fatalf("getMyCommands = %+v, %v", got, err)
	}
	// Another scope has its own (empty) list.
	got, err = b.GetMyCommands(ctx, &bot.GetMyCommandsParams{Scope: &models.BotCommandScopeAllPrivateChats{}})
	if err != nil || len(got) != 0 {
		t.Fatalf("other scope = %+v, %v", got, err)
	}
	_, err = b.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: []models.BotCommand{{Command: "Upload-File", Description: "x"}}})
	wantBadRequest(t, err, "Bad Request: BOT_COMMAND_INVALID")
	_, err = b.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: []models.BotCommand{{Command: "x", Description: ""}}})
	wantBadRequest(t, err, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
	var sent []models.BotCommand
	if err := json.Unmarshal([]byte(srv.CallsTo("setMyCommands")[0].Params["commands"]), &sent); err != nil || len(sent) != 2 {
		t.Fatalf("recorded commands: %v", err)
	}
}

func TestWebhookSettings(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	tests := []struct {
		p    bot.SetWebhookParams
		want string
	}{
		{bot.SetWebhookParams{URL: "http://example.com/tg/123456"}, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"},
		{bot.SetWebhookParams{URL: "https://example.com:8080/tg/123456"}, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"},
		{bot.SetWebhookParams{URL: "https://example.com/tg/1", SecretToken: "has space"}, "Bad Request: secret token contains unallowed characters"},
		{bot.SetWebhookParams{URL: "https://example.com/tg/1", SecretToken: strings.Repeat("a", 257)}, "Bad Request: secret token is too long"},
		{bot.SetWebhookParams{URL: "https://example.com/tg/1", MaxConnections: 101}, "Bad Request: max_connections must be between 1 and 100 (Telegram clamps it silently; telegramtest rejects it)"},
		{bot.SetWebhookParams{URL: "https://example.com/tg/1", AllowedUpdates: []string{"mesage"}}, `Bad Request: unknown update type "mesage" in allowed_updates (Telegram ignores it; telegramtest rejects it)`},
	}
	for _, tc := range tests {
		_, err := b.SetWebhook(ctx, &tc.p)
		wantBadRequest(t, err, tc.want)
	}
	srv.PushUpdate(tokenA, `{"message":{"message_id":1,"date":1,"chat":{"id":5,"type":"private"},"text":"hi"}}`)
	secret := "s3cr3t_-TOKEN"
	ok, err := b.SetWebhook(ctx, &bot.SetWebhookParams{URL: "https://ferry.fly.dev/tg/123456", SecretToken: secret, MaxConnections: 10,
		AllowedUpdates: []string{"message", "channel_post", "callback_query"}})
	if err != nil || !ok {
		t.Fatalf("setWebhook = %v, %v", ok, err)
	}
	c := lastCall(t, srv, "setWebhook")
	if c.Params["secret_token"] != secret || c.Params["allowed_updates"] != `["message","channel_post","callback_query"]` || c.Params["max_connections"] != "10" {
		t.Fatalf("recorded %+v", c.Params)
	}
	info, err := b.GetWebhookInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.URL != "https://ferry.fly.dev/tg/123456" || info.MaxConnections != 10 || len(info.AllowedUpdates) != 3 || info.PendingUpdateCount != 1 {
		t.Fatalf("webhook info = %+v", info)
	}
	if raw := lastCall(t, srv, "getWebhookInfo").Result; bytes.Contains(raw, []byte(secret)) {
		t.Fatalf("getWebhookInfo leaks the secret: %s", raw)
	}
	// getUpdates conflicts with an active webhook.
	resp, err := http.Get(srv.URL() + "/bot" + tokenA + "/getUpdates")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 409 || !strings.Contains(string(body), "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first") {
		t.Fatalf("getUpdates with webhook: %d %s", resp.StatusCode, body)
	}
	if ok, err := b.DeleteWebhook(ctx, &bot.DeleteWebhookParams{DropPendingUpdates: true}); err != nil || !ok {
		t.Fatalf("deleteWebhook = %v, %v", ok, err)
	}
	if info, err := b.GetWebhookInfo(ctx); err != nil || info.URL != "" || info.PendingUpdateCount != 0 {
		t.Fatalf("after delete: %+v, %v", info, err)
	}
	if srv.PendingUpdates(tokenA) != 0 {
		t.Fatal("drop_pending_updates kept updates")
	}
}

func TestWebhookDelivery(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithInsecureWebhooks(), telegramtest.WithWebhookRetry(20*time.Millisecond))
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	type delivery struct {
		secret string
		body   []byte
	}
	got := make(chan delivery, 10)
	fail := 1
	target := newHookServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if fail > 0 {
			fail--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		got <- delivery{secret: r.Header.Get("X-Telegram-Bot-Api-Secret-Token"), body: body}
	})
	if _, err := b.SetWebhook(ctx, &bot.SetWebhookParams{URL: target + "/tg/123456", SecretToken: "abc"}); err != nil {
		t.Fatal(err)
	}
	id1 := srv.PushUpdate(tokenA, models.Update{Message: &models.Message{ID: 3, Date: 1, Chat: models.Chat{ID: 5, Type: "private"}, Text: "one"}})
	id2 := srv.PushUpdate(tokenA, models.Update{Message: &models.Message{ID: 4, Date: 1, Chat: models.Chat{ID: 5, Type: "private"}, Text: "two"}})
	for i, want := range []int64{id1, id2} {
		select {
		case d := <-got:
			var u models.Update
			if err := json.Unmarshal(d.body, &u); err != nil || u.ID != want || d.secret != "abc" {
				t.Fatalf("delivery %d: update %+v (%v), secret %q", i, u, err, d.secret)
			}
		case <-ctx.Done():
			t.Fatal("webhook delivery timed out")
		}
	}
	info, err := b.GetWebhookInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.LastErrorMessage != "Wrong response from the webhook: 500 Internal Server Error" || info.LastErrorDate == 0 {
		t.Fatalf("webhook info after a failed delivery = %+v", info)
	}
	deadline := time.Now().Add(2 * time.Second)
	for srv.PendingUpdates(tokenA) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := srv.PendingUpdates(tokenA); n != 0 {
		t.Fatalf("pending after delivery = %d", n)
	}
}

func newHookServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestGetUpdatesWithBotClient(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	got := make(chan *models.Update, 10)
	b, err := bot.New(tokenA, bot.WithServerURL(srv.URL()), bot.WithSkipGetMe(),
		bot.WithHTTPClient(2*time.Second, &http.Client{Timeout: 5 * time.Second}),
		bot.WithNotAsyncHandlers(),
		bot.WithDefaultHandler(func(ctx context.Context, b *bot.Bot, u *models.Update) { got <- u }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	var ids []int64
	for i, text := range []string{"a", "b", "c"} {
		ids = append(ids, srv.PushUpdate(tokenA, models.Update{Message: &models.Message{ID: i + 1, Date: 1, Chat: models.Chat{ID: 9, Type: "private"}, Text: text}}))
	}
	for i := range 3 {
		select {
		case u := <-got:
			if u.ID != ids[i] || u.Message == nil || u.Message.Text != []string{"a", "b", "c"}[i] {
				t.Fatalf("update %d = %+v", i, u)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("update %d not received", i)
		}
	}
	// The client confirms with offset = last id + 1 on its next poll.
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	for {
		calls := srv.CallsTo("getUpdates")
		if len(calls) > 0 && calls[len(calls)-1].Params["offset"] == itoa(ids[2]+1) {
			break
		}
		if _, err := srv.WaitCalls(wctx, "getUpdates", len(calls)+1); err != nil {
			t.Fatalf("no confirming getUpdates: %v", err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for srv.PendingUpdates(tokenA) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := srv.PendingUpdates(tokenA); n != 0 {
		t.Fatalf("confirmed updates still pending: %d", n)
	}
}

type apiAnswer struct {
	OK          bool              `json:"ok"`
	Result      []json.RawMessage `json:"result"`
	ErrorCode   int               `json:"error_code"`
	Description string            `json:"description"`
}

func getUpdates(t *testing.T, srv *telegramtest.Server, q string) (int, apiAnswer) {
	t.Helper()
	return getUpdatesFor(t, srv, tokenA, q)
}

func getUpdatesFor(t *testing.T, srv *telegramtest.Server, token, q string) (int, apiAnswer) {
	t.Helper()
	resp, err := http.Get(srv.URL() + "/bot" + token + "/getUpdates?" + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a apiAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, a
}

func updateIDs(t *testing.T, a apiAnswer) []int64 {
	t.Helper()
	var out []int64
	for _, r := range a.Result {
		var u models.Update
		if err := json.Unmarshal(r, &u); err != nil {
			t.Fatal(err)
		}
		out = append(out, u.ID)
	}
	return out
}

func TestGetUpdatesSemantics(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	var ids []int64
	for i := range 5 {
		ids = append(ids, srv.PushUpdate(tokenA, []byte(`{"message":{"message_id":`+itoa(int64(i+1))+`,"date":1,"chat":{"id":9,"type":"private"},"text":"x"}}`)))
	}
	if ids[1] != ids[0]+1 {
		t.Fatalf("update ids not sequential: %v", ids)
	}
	_, a := getUpdates(t, srv, "limit=2")
	if got := updateIDs(t, a); len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Fatalf("limit=2 gave %v", got)
	}
	// Without confirmation the same updates come again; offset confirms.
	_, a = getUpdates(t, srv, "offset="+itoa(ids[2]))
	if got := updateIDs(t, a); len(got) != 3 || got[0] != ids[2] {
		t.Fatalf("offset gave %v", got)
	}
	if srv.PendingUpdates(tokenA) != 3 {
		t.Fatalf("pending = %d after confirming 2", srv.PendingUpdates(tokenA))
	}
	_, a = getUpdates(t, srv, "offset=-1")
	if got := updateIDs(t, a); len(got) != 1 || got[0] != ids[4] {
		t.Fatalf("offset=-1 gave %v", got)
	}
	_, a = getUpdates(t, srv, "offset="+itoa(ids[4]+1))
	if len(a.Result) != 0 || !a.OK {
		t.Fatalf("after confirming all: %+v", a)
	}

	// Long polling returns as soon as an update arrives.
	go func() {
		time.Sleep(100 * time.Millisecond)
		srv.PushUpdate(tokenA, `{"message":{"message_id":9,"date":1,"chat":{"id":9,"type":"private"},"text":"late"}}`)
	}()
	start := time.Now()
	_, a = getUpdates(t, srv, "timeout=5&offset="+itoa(ids[4]+1))
	if len(a.Result) != 1 || time.Since(start) > 3*time.Second || time.Since(start) < 80*time.Millisecond {
		t.Fatalf("long poll: %d updates after %v", len(a.Result), time.Since(start))
	}

	// A second poller terminates the first with 409.
	type res struct {
		code int
		a    apiAnswer
	}
	first := make(chan res, 1)
	go func() {
		code, a := getUpdates(t, srv, "timeout=5&offset=-1&allowed_updates=%5B%22callback_query%22%5D")
		first <- res{code, a}
	}()
	if _, err := srv.WaitCalls(ctxT(t), "getUpdates", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	code, _ := getUpdates(t, srv, "timeout=0")
	if code != 200 {
		t.Fatalf("second poll: %d", code)
	}
	r := <-first
	if r.code != 409 || r.a.Description != "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running" {
		t.Fatalf("first poll: %d %+v", r.code, r.a)
	}
}

func TestCopyMessageAndMedia(t *testing.T) {
	const channel = -1001234567890
	srv := telegramtest.NewServer(t, telegramtest.WithDC(2))
	srv.AddBot(tokenA)
	srv.AddBot(tokenB)
	a, bb := newBot(t, srv, tokenA), newBot(t, srv, tokenB)
	ctx := ctxT(t)

	// A user sends a document to bot A in private; the bot copies it to the channel.
	doc := srv.AddFile(tokenA, telegramtest.FileSpec{Name: "movie.mkv", MimeType: "video/x-matroska", Size: 1774606367, UniqueKey: "movie"})
	srv.PushUpdate(tokenA, models.Update{Message: &models.Message{ID: 50, Date: 1, Chat: models.Chat{ID: 5, Type: "private"},
		From: &models.User{ID: 5, FirstName: "Admin"}, Caption: "movie.mkv",
		Document: &models.Document{FileID: doc.FileID, FileUniqueID: doc.FileUniqueID, FileName: "movie.mkv", FileSize: doc.Size}}})
	mid, err := a.CopyMessage(ctx, &bot.CopyMessageParams{ChatID: channel, FromChatID: 5, MessageID: 50, Caption: "<b>movie</b>", ParseMode: models.ParseModeHTML})
	if err != nil || mid.ID != 1 {
		t.Fatalf("copyMessage = %+v, %v", mid, err)
	}
	if raw := string(lastCall(t, srv, "copyMessage").Result); raw != `{"message_id":1}` {
		t.Fatalf("copyMessage result %s", raw)
	}
	copied, ok := srv.Message(channel, 1)
	if !ok || copied.Document == nil || copied.Document.FileUniqueID != doc.FileUniqueID || copied.Caption != "movie" {
		t.Fatalf("copied = %+v", copied)
	}
	_, err = a.CopyMessage(ctx, &bot.CopyMessageParams{ChatID: channel, FromChatID: 5, MessageID: 51})
	wantBadRequest(t, err, "Bad Request: message to copy not found")

	// file_ids are per bot; the same file for bot B has its own id and the same unique id.
	d, err := telegramtest.DecodeFileID(doc.FileID)
	if err != nil || d.DC != 2 || d.TypeID != 5 {
		t.Fatalf("decode %q: %+v %v", doc.FileID, d, err)
	}
	m, err := a.SendDocument(ctx, &bot.SendDocumentParams{ChatID: channel, Document: &models.InputFileString{Data: doc.FileID}, Caption: "again"})
	if err != nil || m.Document == nil || m.Document.FileID != doc.FileID || m.Document.FileUniqueID != doc.FileUniqueID || m.Document.FileSize != 1774606367 || m.ID != 2 {
		t.Fatalf("sendDocument = %+v, %v", m, err)
	}
	_, err = bb.SendDocument(ctx, &bot.SendDocumentParams{ChatID: channel, Document: &models.InputFileString{Data: doc.FileID}})
	wantBadRequest(t, err, "Bad Request: wrong file identifier/HTTP URL specified")
	docB := srv.AddFile(tokenB, telegramtest.FileSpec{Name: "movie.mkv", Size: 1774606367, UniqueKey: "movie"})
	if docB.FileID == doc.FileID || docB.FileUniqueID != doc.FileUniqueID {
		t.Fatalf("per-bot ids: A %+v B %+v", doc, docB)
	}
	_, err = a.SendVideo(ctx, &bot.SendVideoParams{ChatID: channel, Video: &models.InputFileString{Data: doc.FileID}})
	wantBadRequest(t, err, "Bad Request: can't use file of type Document as Video")

	vid := srv.AddFile(tokenA, telegramtest.FileSpec{Kind: telegramtest.KindVideo, Name: "v.mp4", MimeType: "video/mp4", Size: 1000, Duration: 5, Width: 640, Height: 360})
	mv, err := a.SendVideo(ctx, &bot.SendVideoParams{ChatID: channel, Video: &models.InputFileString{Data: vid.FileID}, SupportsStreaming: true})
	if err != nil || mv.Video == nil || mv.Video.Duration != 5 || mv.Video.Width != 640 || mv.Video.FileID != vid.FileID {
		t.Fatalf("sendVideo = %+v, %v", mv, err)
	}
	if p := lastCall(t, srv, "sendVideo").Params; p["supports_streaming"] != "true" || p["video"] != vid.FileID {
		t.Fatalf("sendVideo params %+v", p)
	}
	aud := srv.AddFile(tokenA, telegramtest.FileSpec{Kind: telegramtest.KindAudio, Name: "a.mp3", Size: 10})
	if ma, err := a.SendAudio(ctx, &bot.SendAudioParams{ChatID: channel, Audio: &models.InputFileString{Data: aud.FileID}}); err != nil || ma.Audio == nil {
		t.Fatalf("sendAudio = %+v, %v", ma, err)
	}
	ani := srv.AddFile(tokenA, telegramtest.FileSpec{Kind: telegramtest.KindAnimation, Name: "a.gif.mp4", Size: 10})
	if man, err := a.SendAnimation(ctx, &bot.SendAnimationParams{ChatID: channel, Animation: &models.InputFileString{Data: ani.FileID}}); err != nil || man.Animation == nil {
		t.Fatalf("sendAnimation = %+v, %v", man, err)
	}
	_, err = a.SendDocument(ctx, &bot.SendDocumentParams{ChatID: channel, Document: &models.InputFileString{Data: doc.FileID}, Caption: strings.Repeat("c", 1025)})
	wantBadRequest(t, err, "Bad Request: message caption is too long")

	// getFile: big files cannot be downloaded through the Bot API.
	_, err = a.GetFile(ctx, &bot.GetFileParams{FileID: doc.FileID})
	wantBadRequest(t, err, "Bad Request: file is too big")
	_, err = a.GetFile(ctx, &bot.GetFileParams{FileID: "nope"})
	wantBadRequest(t, err, "Bad Request: invalid file_id")
}

func TestUploadAndDownload(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	a := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	content := bytes.Repeat([]byte("ferry!"), 10000)
	sum := sha256.Sum256(content)
	m, err := a.SendDocument(ctx, &bot.SendDocumentParams{ChatID: 5, Document: &models.InputFileUpload{Filename: "notes.txt", Data: bytes.NewReader(content)}})
	if err != nil || m.Document == nil || m.Document.FileSize != int64(len(content)) || m.Document.FileName != "notes.txt" || m.Document.MimeType != "text/plain" {
		t.Fatalf("upload = %+v, %v", m, err)
	}
	up := lastCall(t, srv, "sendDocument").Files["document"]
	if up.SHA256 != hex.EncodeToString(sum[:]) || up.Size != int64(len(content)) || up.Filename != "notes.txt" {
		t.Fatalf("recorded upload %+v", up)
	}
	f, err := a.GetFile(ctx, &bot.GetFileParams{FileID: m.Document.FileID})
	if err != nil || f.FilePath == "" || f.FileUniqueID != m.Document.FileUniqueID {
		t.Fatalf("getFile = %+v, %v", f, err)
	}
	resp, err := http.Get(srv.URL() + "/file/bot" + tokenA + "/" + f.FilePath)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, content) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(got))
	}
	// The same bytes uploaded again are a new file (Telegram does not promise dedupe of uploads).
	m2, err := a.SendDocument(ctx, &bot.SendDocumentParams{ChatID: 5, Document: &models.InputFileUpload{Filename: "notes.txt", Data: bytes.NewReader(content)}})
	if err != nil || m2.Document.FileUniqueID == m.Document.FileUniqueID {
		t.Fatalf("second upload = %+v, %v", m2, err)
	}
}

func TestChatMembers(t *testing.T) {
	const channel = -1009876543210
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	srv.AddBot(tokenB)
	a, bb := newBot(t, srv, tokenA), newBot(t, srv, tokenB)
	ctx := ctxT(t)
	srv.SetChat(models.Chat{ID: channel, Type: models.ChatTypeChannel, Title: "Files", Username: "ferryfiles"})
	srv.SetChatAdmins(channel, 123456, 777)

	m, err := a.GetChatMember(ctx, &bot.GetChatMemberParams{ChatID: channel, UserID: 123456})
	if err != nil || m.Type != models.ChatMemberTypeAdministrator || m.Administrator.User.ID != 123456 || !m.Administrator.User.IsBot || !m.Administrator.CanPostMessages {
		t.Fatalf("getChatMember(bot A) = %+v, %v", m, err)
	}
	m, err = a.GetChatMember(ctx, &bot.GetChatMemberParams{ChatID: "@ferryfiles", UserID: 654321})
	if err != nil || m.Type != models.ChatMemberTypeLeft {
		t.Fatalf("getChatMember(bot B) = %+v, %v", m, err)
	}
	admins, err := a.GetChatAdministrators(ctx, &bot.GetChatAdministratorsParams{ChatID: channel})
	if err != nil || len(admins) != 2 || admins[1].Administrator.User.ID != 777 {
		t.Fatalf("getChatAdministrators = %+v, %v", admins, err)
	}
	_, err = a.GetChatAdministrators(ctx, &bot.GetChatAdministratorsParams{ChatID: 5})
	wantBadRequest(t, err, "Bad Request: there are no administrators in the private chat")

	if _, err := a.SendMessage(ctx, &bot.SendMessageParams{ChatID: "@ferryfiles", Text: "ok"}); err != nil {
		t.Fatalf("admin bot post: %v", err)
	}
	_, err = bb.SendMessage(ctx, &bot.SendMessageParams{ChatID: channel, Text: "not admin"})
	if !errors.Is(err, bot.ErrorForbidden) || !strings.HasSuffix(err.Error(), "Forbidden: bot is not a member of the channel chat") {
		t.Fatalf("non-admin post: %v", err)
	}
}

func TestFailNext(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	send := func() error {
		_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 1, Text: "x"})
		return err
	}

	srv.FailNext("sendMessage", 2, telegramtest.TooManyRequests(7))
	for range 2 {
		var tm *bot.TooManyRequestsError
		if err := send(); !errors.As(err, &tm) || tm.RetryAfter != 7 || tm.Message != "too many requests, Too Many Requests: retry after 7" {
			t.Fatalf("429: %v", err)
		}
	}
	if err := send(); err != nil {
		t.Fatalf("after injected failures: %v", err)
	}
	calls := srv.CallsTo("sendMessage")
	if len(calls) != 3 || calls[0].Injected != telegramtest.FailTooManyRequests || calls[0].HTTPStatus != 429 || calls[2].Injected != "" || !calls[2].OK {
		t.Fatalf("recorded %+v", calls)
	}
	// The 429 body is Telegram's.
	srv.FailNext("getMe", 1, telegramtest.TooManyRequests(3))
	resp, err := http.Get(srv.URL() + "/bot" + tokenA + "/getMe")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || string(body) != `{"description":"Too Many Requests: retry after 3","error_code":429,"ok":false,"parameters":{"retry_after":3}}` {
		t.Fatalf("429 body: %d %s", resp.StatusCode, body)
	}

	srv.FailNext("sendMessage", 1, telegramtest.ServerError(502))
	if err := send(); err == nil || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Fatalf("502: %v", err)
	}
	srv.FailNext("sendMessage", 1, telegramtest.ServerError(500))
	if err := send(); err == nil || !strings.Contains(err.Error(), "500 Internal Server Error") {
		t.Fatalf("500: %v", err)
	}
	srv.FailNext("sendMessage", 1, telegramtest.BotBlocked())
	if err := send(); !errors.Is(err, bot.ErrorForbidden) || err.Error() != "forbidden, Forbidden: bot was blocked by the user" {
		t.Fatalf("403: %v", err)
	}
	srv.FailNext("*", 1, telegramtest.DropConnection())
	err = send()
	if err == nil || errors.Is(err, bot.ErrorBadRequest) || bot.IsTooManyRequestsError(err) {
		t.Fatalf("dropped connection: %v", err)
	}
	c := lastCall(t, srv, "sendMessage")
	if c.Injected != telegramtest.FailDropConnection || c.HTTPStatus != 0 {
		t.Fatalf("recorded drop %+v", c)
	}
	// Only successful sends created messages.
	if n := len(srv.Messages(1)); n != 1 {
		t.Fatalf("messages = %d, want 1", n)
	}
	srv.Reset()
	if len(srv.Calls()) != 0 {
		t.Fatal("Reset kept calls")
	}
	srv.FailNext("sendMessage", 1, telegramtest.BotBlocked())
	srv.Reset()
	if err := send(); err != nil {
		t.Fatalf("Reset kept failures: %v", err)
	}
}

func TestLatency(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithLatency(150*time.Millisecond))
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	start := time.Now()
	if _, err := b.GetMe(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("getMe took %v, want ≥150ms", d)
	}
	srv.SetLatency("getMe", 0)
	start = time.Now()
	if _, err := b.GetMe(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("getMe without latency took %v", d)
	}
}

func TestRateLimits(t *testing.T) {
	srv := telegramtest.NewServer(t) // Telegram's limits are the default
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	m, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 5, Text: "0%"})
	if err != nil {
		t.Fatal(err)
	}
	// An edit counts as a send: one a second in a private chat.
	_, err = b.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 5, MessageID: m.ID, Text: "1%"})
	var tm *bot.TooManyRequestsError
	if !errors.As(err, &tm) || tm.RetryAfter != 1 {
		t.Fatalf("edit within 1s of the send: %v", err)
	}
	time.Sleep(time.Second)
	if _, err := b.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 5, MessageID: m.ID, Text: "3%"}); err != nil {
		t.Fatalf("edit after waiting: %v", err)
	}
	// A group takes 20 per minute.
	for i := range 20 {
		if _, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: -100, Text: "m"}); err != nil {
			t.Fatalf("group send %d: %v", i, err)
		}
	}
	_, err = b.SendMessage(ctx, &bot.SendMessageParams{ChatID: -100, Text: "m"})
	if !errors.As(err, &tm) || tm.RetryAfter < 55 || tm.RetryAfter > 60 {
		t.Fatalf("21st group send: %v", err)
	}
	if n := len(srv.LimitRefusals()); n != 2 {
		t.Fatalf("%d calls refused by the limits, want 2", n)
	}
}

// TestLimitsConfigured: scaled limits per chat and per bot, with
// retry_after rounded up to whole seconds; another bot has its own
// budget; WithoutLimits takes anything.
func TestLimitsConfigured(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithLimits(telegramtest.Limits{
		Group: telegramtest.Rate{N: 3, Per: 300 * time.Millisecond}, Bot: telegramtest.Rate{N: 5, Per: 2500 * time.Millisecond}}))
	srv.AddBot(tokenA)
	srv.AddBot(tokenB)
	a, b := newBot(t, srv, tokenA), newBot(t, srv, tokenB)
	ctx := ctxT(t)
	send := func(c *bot.Bot, chat int64) error {
		_, err := c.SendMessage(ctx, &bot.SendMessageParams{ChatID: chat, Text: "m"})
		return err
	}
	for i := range 3 {
		if err := send(a, -100); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	var tm *bot.TooManyRequestsError
	if err := send(a, -100); !errors.As(err, &tm) || tm.RetryAfter != 1 {
		t.Fatalf("4th send in 300ms: %v", err)
	}
	if err := send(b, -100); err != nil {
		t.Fatalf("another bot: %v", err)
	}
	if err := send(a, -200); err != nil {
		t.Fatalf("another chat: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := send(a, -100); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// Five sends of bot a in 2.5 s in all chats: the sixth is refused for
	// about 2.5 s (rounded up: 3).
	if err := send(a, -300); !errors.As(err, &tm) || tm.RetryAfter != 3 {
		t.Fatalf("6th send of the bot: %v", err)
	}
	if n := len(srv.LimitRefusals()); n != 2 {
		t.Fatalf("%d refusals, want 2", n)
	}
	free := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	free.AddBot(tokenA)
	c := newBot(t, free, tokenA)
	for i := range 50 {
		if err := send(c, 7); err != nil {
			t.Fatalf("send %d without limits: %v", i, err)
		}
	}
}

func TestContentTypes(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	base := srv.URL() + "/bot" + tokenA + "/sendMessage"
	post := func(ct string, body string, query string) (int, string) {
		u := base
		if query != "" {
			u += "?" + query
		}
		resp, err := http.Post(u, ct, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("application/json", `{"chat_id":42,"text":"json","reply_markup":{"inline_keyboard":[[{"text":"a","callback_data":"b"}]]},"disable_notification":true}`, ""); code != 200 {
		t.Fatalf("json: %d %s", code, body)
	}
	c := lastCall(t, srv, "sendMessage")
	if c.Params["chat_id"] != "42" || c.Params["text"] != "json" || c.Params["reply_markup"] != `{"inline_keyboard":[[{"text":"a","callback_data":"b"}]]}` || c.Params["disable_notification"] != "true" {
		t.Fatalf("json params %+v", c.Params)
	}
	form := url.Values{"chat_id": {"42"}, "text": {"form & more"}}
	if code, body := post("application/x-www-form-urlencoded", form.Encode(), ""); code != 200 {
		t.Fatalf("form: %d %s", code, body)
	}
	if c := lastCall(t, srv, "sendMessage"); c.Params["text"] != "form & more" {
		t.Fatalf("form params %+v", c.Params)
	}
	if code, body := post("text/plain", "", "chat_id=42&text=query"); code != 200 {
		t.Fatalf("query: %d %s", code, body)
	}
	code, body := post("application/json", `{"text":"no chat"}`, "")
	if code != 400 || body != `{"description":"Bad Request: chat_id is empty","error_code":400,"ok":false}` {
		t.Fatalf("missing chat_id: %d %s", code, body)
	}
	if n := len(srv.Messages(42)); n != 3 {
		t.Fatalf("messages = %d", n)
	}
}

func TestWaitCalls(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	go func() {
		for i := range 3 {
			time.Sleep(20 * time.Millisecond)
			_, _ = b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: 1, Text: "n" + itoa(int64(i))})
		}
	}()
	calls, err := srv.WaitCalls(ctxT(t), "sendmessage", 3)
	if err != nil || len(calls) != 3 || calls[2].Params["text"] != "n2" {
		t.Fatalf("WaitCalls = %d calls, %v", len(calls), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := srv.WaitCalls(ctx, "sendMessage", 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitCalls past deadline: %v", err)
	}
}
