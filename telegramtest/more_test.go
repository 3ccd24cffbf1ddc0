package telegramtest_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/telegramtest"
)

func TestCaptionChatActionAndGetChat(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	f := srv.AddFile(tokenA, telegramtest.FileSpec{Name: "a.zip", Size: 10})
	m, err := b.SendDocument(ctx, &bot.SendDocumentParams{ChatID: 5, Document: &models.InputFileString{Data: f.FileID}, Caption: "old"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.EditMessageCaption(ctx, &bot.EditMessageCaptionParams{ChatID: 5, MessageID: m.ID, Caption: "<b>new</b>", ParseMode: models.ParseModeHTML})
	if err != nil || e.Caption != "new" || len(e.CaptionEntities) != 1 {
		t.Fatalf("editMessageCaption = %+v, %v", e, err)
	}
	_, err = b.EditMessageCaption(ctx, &bot.EditMessageCaptionParams{ChatID: 5, MessageID: m.ID, Caption: "<b>new</b>", ParseMode: models.ParseModeHTML})
	wantBadRequest(t, err, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
	txt, _ := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 5, Text: "text"})
	_, err = b.EditMessageCaption(ctx, &bot.EditMessageCaptionParams{ChatID: 5, MessageID: txt.ID, Caption: "c"})
	wantBadRequest(t, err, "Bad Request: there is no caption in the message to edit")
	_, err = b.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 5, MessageID: m.ID, Text: "c"})
	wantBadRequest(t, err, "Bad Request: there is no text in the message to edit")

	if ok, err := b.SendChatAction(ctx, &bot.SendChatActionParams{ChatID: 5, Action: models.ChatActionUploadDocument}); err != nil || !ok {
		t.Fatalf("sendChatAction = %v, %v", ok, err)
	}
	_, err = b.SendChatAction(ctx, &bot.SendChatActionParams{ChatID: 5, Action: "dancing"})
	wantBadRequest(t, err, "Bad Request: wrong parameter action in request")

	srv.SetChat(models.Chat{ID: -1002000000000, Type: models.ChatTypeChannel, Title: "Files", Username: "files"})
	c, err := b.GetChat(ctx, &bot.GetChatParams{ChatID: "@files"})
	if err != nil || c.ID != -1002000000000 || c.Type != models.ChatTypeChannel || c.Title != "Files" {
		t.Fatalf("getChat = %+v, %v", c, err)
	}
}

func TestUploadTooLarge(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	big := bytes.NewReader(make([]byte, 50<<20+1))
	_, err := b.SendDocument(ctxT(t), &bot.SendDocumentParams{ChatID: 5, Document: &models.InputFileUpload{Filename: "big.bin", Data: big}})
	if err == nil || !strings.Contains(err.Error(), "413 Request Entity Too Large") {
		t.Fatalf("50 MiB + 1 upload: %v", err)
	}
	if c := lastCall(t, srv, "sendDocument"); c.HTTPStatus != 413 || c.OK {
		t.Fatalf("recorded %+v", c)
	}
}

func TestCloseEndsLongPolls(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(srv.URL() + "/bot" + tokenA + "/getUpdates?timeout=30")
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v with a long poll pending", d)
	}
	select {
	case code := <-done:
		if code != 200 {
			t.Fatalf("pending poll ended with %d", code)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending poll did not end")
	}
}

func TestExplicitEntitiesAndKeyboards(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	m, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 5, Text: "😀 bold", Entities: []models.MessageEntity{{Type: "bold", Offset: 3, Length: 4}}})
	if err != nil || len(m.Entities) != 1 || m.Entities[0].Offset != 3 {
		t.Fatalf("explicit entities = %+v, %v", m, err)
	}
	_, err = b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 5, Text: "😀 bold", Entities: []models.MessageEntity{{Type: "bold", Offset: 3, Length: 5}}})
	wantBadRequest(t, err, "Bad Request: entity beginning at UTF-16 offset 3 ends after the end of the text at UTF-16 offset 7")
	// Reply keyboards are fine on sendMessage.
	if _, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 5, Text: "k", ReplyMarkup: &models.ReplyKeyboardMarkup{
		Keyboard: [][]models.KeyboardButton{{{Text: "/stats"}}}, ResizeKeyboard: true}}); err != nil {
		t.Fatalf("reply keyboard: %v", err)
	}
	if _, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 5, Text: "k", ReplyMarkup: &models.ReplyKeyboardRemove{RemoveKeyboard: true}}); err != nil {
		t.Fatalf("remove keyboard: %v", err)
	}
	_, err = b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 5, Text: "k", ReplyMarkup: map[string]any{"inline_keyboard": "x"}})
	wantBadRequest(t, err, `Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays`)
}

func TestStoreMessageAndCustomFailures(t *testing.T) {
	srv := telegramtest.NewServer(t, telegramtest.WithoutLimits())
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	// A message delivered to the code under test without PushUpdate.
	srv.StoreMessage(tokenA, models.Message{ID: 10, Date: 1, Chat: models.Chat{ID: 42, Type: models.ChatTypePrivate},
		From: &models.User{ID: 42}, Document: &models.Document{FileID: "BQACAgQAAxkBAAIBZGZ", FileUniqueID: "AgADxyz", FileName: "x.pdf", FileSize: 100}})
	if _, err := b.CopyMessage(ctx, &bot.CopyMessageParams{ChatID: 43, FromChatID: 42, MessageID: 10}); err != nil {
		t.Fatalf("copy stored message: %v", err)
	}
	if m, err := b.SendDocument(ctx, &bot.SendDocumentParams{ChatID: 43, Document: &models.InputFileString{Data: "BQACAgQAAxkBAAIBZGZ"}}); err != nil || m.Document.FileUniqueID != "AgADxyz" {
		t.Fatalf("send stored file_id = %+v, %v", m, err)
	}
	if f, err := b.GetFile(ctx, &bot.GetFileParams{FileID: "BQACAgQAAxkBAAIBZGZ"}); err != nil || f.FileSize != 100 || !strings.HasSuffix(f.FilePath, ".pdf") {
		t.Fatalf("getFile = %+v, %v", f, err)
	}
	// A message from the user cannot be edited by the bot.
	_, err := b.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: 42, MessageID: 10, Text: "x"})
	wantBadRequest(t, err, "Bad Request: message can't be edited")

	srv.FailNext("copyMessage", 1, telegramtest.Forbidden("Forbidden: bot is not a member of the channel chat"))
	_, err = b.CopyMessage(ctx, &bot.CopyMessageParams{ChatID: 43, FromChatID: 42, MessageID: 10})
	if err == nil || err.Error() != "forbidden, Forbidden: bot is not a member of the channel chat" {
		t.Fatalf("injected 403: %v", err)
	}
	srv.FailNext("copyMessage", 1, telegramtest.BadRequest("Bad Request: message to copy not found"))
	_, err = b.CopyMessage(ctx, &bot.CopyMessageParams{ChatID: 43, FromChatID: 42, MessageID: 10})
	wantBadRequest(t, err, "Bad Request: message to copy not found")
	if c := lastCall(t, srv, "copyMessage"); c.Injected != telegramtest.FailBadRequest {
		t.Fatalf("recorded %+v", c)
	}

	if ok, err := b.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: []models.BotCommand{{Command: "a", Description: "b"}}, LanguageCode: "de"}); err != nil || !ok {
		t.Fatal(err)
	}
	if ok, err := b.DeleteMyCommands(ctx, &bot.DeleteMyCommandsParams{LanguageCode: "de"}); err != nil || !ok {
		t.Fatal(err)
	}
	if got, err := b.GetMyCommands(ctx, &bot.GetMyCommandsParams{LanguageCode: "de"}); err != nil || len(got) != 0 {
		t.Fatalf("after delete: %+v %v", got, err)
	}
	if ms := telegramtest.Methods(); len(ms) < 20 || ms[0] != "answerCallbackQuery" {
		t.Fatalf("Methods() = %v", ms)
	}
}
