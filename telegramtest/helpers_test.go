package telegramtest_test

import (
	"encoding/json"
	"testing"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/telegramtest"
)

func pollOne(t *testing.T, srv *telegramtest.Server, token string) models.Update {
	t.Helper()
	code, a := getUpdatesFor(t, srv, token, "limit=1")
	if code != 200 || len(a.Result) != 1 {
		t.Fatalf("getUpdates: %d, %d updates", code, len(a.Result))
	}
	var u models.Update
	if err := json.Unmarshal(a.Result[0], &u); err != nil {
		t.Fatal(err)
	}
	// Confirm it, as a client does with its next call.
	if code, _ := getUpdatesFor(t, srv, token, "timeout=0&offset="+itoa(u.ID+1)); code != 200 {
		t.Fatalf("confirming getUpdates: %d", code)
	}
	return u
}

func TestPostFileMultiBot(t *testing.T) {
	const channel = -1001111111111
	srv := telegramtest.NewServer(t, telegramtest.WithDC(5))
	srv.AddBot(tokenA)
	srv.AddBot(tokenB)
	srv.SetChatAdmins(channel, 123456, 654321)
	p := srv.PostFile(channel, 0, telegramtest.FileSpec{Kind: telegramtest.KindVideo, Name: "clip.mp4", MimeType: "video/mp4",
		Size: 5 << 20, Duration: 12, Width: 1280, Height: 720}, "clip.mp4", tokenA, tokenB)
	if p.FileIDs[tokenA] == p.FileIDs[tokenB] || p.FileUniqueID == "" || p.MessageID != 1 {
		t.Fatalf("posted %+v", p)
	}
	ua, ub := pollOne(t, srv, tokenA), pollOne(t, srv, tokenB)
	for _, u := range []models.Update{ua, ub} {
		if u.ChannelPost == nil || u.ChannelPost.Video == nil || u.ChannelPost.ID != 1 || u.ChannelPost.Chat.ID != channel ||
			u.ChannelPost.Video.FileUniqueID != p.FileUniqueID || u.ChannelPost.Video.Duration != 12 || u.ChannelPost.Caption != "clip.mp4" {
			t.Fatalf("update %+v", u)
		}
	}
	if ua.ChannelPost.Video.FileID != p.FileIDs[tokenA] || ub.ChannelPost.Video.FileID != p.FileIDs[tokenB] {
		t.Fatal("each bot must see its own file_id")
	}
	if d, err := telegramtest.DecodeFileID(p.FileIDs[tokenB]); err != nil || d.DC != 5 || d.TypeID != 4 {
		t.Fatalf("decode: %+v %v", d, err)
	}
	a, b := newBot(t, srv, tokenA), newBot(t, srv, tokenB)
	ctx := ctxT(t)
	if _, err := b.SendVideo(ctx, &bot.SendVideoParams{ChatID: 5, Video: &models.InputFileString{Data: p.FileIDs[tokenB]}}); err != nil {
		t.Fatalf("bot B with its own file_id: %v", err)
	}
	_, err := a.SendVideo(ctx, &bot.SendVideoParams{ChatID: 5, Video: &models.InputFileString{Data: p.FileIDs[tokenB]}})
	wantBadRequest(t, err, "Bad Request: wrong file identifier/HTTP URL specified")
	// The post can be copied by either bot.
	if _, err := a.CopyMessage(ctx, &bot.CopyMessageParams{ChatID: 5, FromChatID: channel, MessageID: p.MessageID}); err != nil {
		t.Fatalf("copy the post: %v", err)
	}
}

func TestPushMessageAndCallback(t *testing.T) {
	srv := telegramtest.NewServer(t)
	srv.AddBot(tokenA)
	b := newBot(t, srv, tokenA)
	ctx := ctxT(t)
	m, id := srv.PushMessage(tokenA, 77, 77, "/upload /content/video.mp4 My video")
	if id == 0 || m.ID != 1 || m.From == nil || m.From.ID != 77 || len(m.Entities) != 1 || m.Entities[0].Type != models.MessageEntityTypeBotCommand || m.Entities[0].Length != 7 {
		t.Fatalf("pushed %+v", m)
	}
	u := pollOne(t, srv, tokenA)
	if u.ID != id || u.Message == nil || u.Message.Text != "/upload /content/video.mp4 My video" {
		t.Fatalf("update %+v", u)
	}
	// The bot replies to it with a progress message and a Cancel button.
	status, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 77, Text: "0%", ReplyParameters: &models.ReplyParameters{MessageID: m.ID},
		ReplyMarkup: &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "Cancel", CallbackData: "cancel:1"}}}}})
	if err != nil || status.ID != 2 {
		t.Fatalf("reply = %+v, %v", status, err)
	}
	qid, _ := srv.PushCallback(tokenA, 77, status.ID, 77, "cancel:1")
	u = pollOne(t, srv, tokenA)
	if u.CallbackQuery == nil || u.CallbackQuery.ID != qid || u.CallbackQuery.Data != "cancel:1" || u.CallbackQuery.Message.Message == nil ||
		u.CallbackQuery.Message.Message.ID != status.ID || u.CallbackQuery.From.ID != 77 {
		t.Fatalf("callback update %+v", u)
	}
	if ok, err := b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: qid, Text: "Cancelled"}); err != nil || !ok {
		t.Fatalf("answer = %v, %v", ok, err)
	}
}
