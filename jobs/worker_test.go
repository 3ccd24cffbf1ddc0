package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/telegramtest"
)

const (
	workerToken = "111:AAHqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
	otherToken  = "222:AAHwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"
	admin       = 4242
	stranger    = 5151
	channel     = -1001234567890
)

type harness struct {
	tg     *telegramtest.Server
	client db.River
	// db is the workers' database; its faults are off until a test sets one.
	db *faultDB
}

// startWorkers runs real River workers on a fresh database against the Bot
// API stand-in.
func startWorkers(t *testing.T, configure ...func(*jobs.Deps)) *harness {
	t.Helper()
	tg := telegramtest.NewServer(t)
	tg.AddBot(workerToken)
	tg.AddBot(otherToken)
	faulty := withFaults(dbtest.New(t))
	d := testDeps(t, faulty, tg.URL(), map[string]string{"ADMIN_IDS": fmt.Sprint(admin), "CHANNEL_ID": fmt.Sprint(channel),
		"BOT_TOKENS": workerToken + "," + otherToken})
	ix, err := index.New(index.Options{DB: faulty, Logger: d.Logger})
	if err != nil {
		t.Fatal(err)
	}
	d.Index = ix
	for _, f := range configure {
		f(d)
	}
	return &harness{tg: tg, client: startClient(t, d), db: faulty}
}

// startClient starts a River client that works every queue for d; it stops
// when the test ends.
func startClient(t *testing.T, d *jobs.Deps) db.River {
	t.Helper()
	client, err := jobs.NewClient(d, jobs.ClientOptions{Work: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = client.Stop(sctx)
		cancel()
	})
	return client
}

func (h *harness) deliver(t *testing.T, u models.Update) {
	t.Helper()
	h.deliverTo(t, 111, u)
}

func (h *harness) deliverTo(t *testing.T, botID int64, u models.Update) {
	t.Helper()
	raw, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Insert(context.Background(), jobs.UpdateArgs{BotID: botID, UpdateID: u.ID, Update: raw}, nil); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) wait(t *testing.T, method string, n int) []telegramtest.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	calls, err := h.tg.WaitCalls(ctx, method, n)
	if err != nil {
		t.Fatalf("waiting for %d %s: %v (calls: %+v)", n, method, err, h.tg.Calls())
	}
	return calls
}

func TestPrivateFileIsCopiedToChannel(t *testing.T) {
	h := startWorkers(t)
	h.tg.SetChat(models.Chat{ID: channel, Type: models.ChatTypeChannel, Title: "Files"})
	h.tg.SetChatAdmins(channel, 111)
	msg := models.Message{
		ID: 10, Date: int(time.Now().Unix()),
		Chat:     models.Chat{ID: admin, Type: models.ChatTypePrivate},
		From:     &models.User{ID: admin, FirstName: "A"},
		Document: &models.Document{FileID: "BQACAgQAAx0", FileUniqueID: "AgADxx", FileName: "movie.mkv", MimeType: "video/x-matroska", FileSize: 1774606367},
	}
	h.tg.StoreMessage(workerToken, msg)
	h.deliver(t, models.Update{ID: 1, Message: &msg})

	copies := h.wait(t, "copyMessage", 1)
	if copies[0].Params["chat_id"] != fmt.Sprint(channel) || copies[0].Params["from_chat_id"] != fmt.Sprint(admin) || copies[0].Params["message_id"] != "10" || !copies[0].OK {
		t.Fatalf("copyMessage %+v", copies[0])
	}
	var posted struct {
		MessageID int `json:"message_id"`
	}
	_ = json.Unmarshal(copies[0].Result, &posted)
	replies := h.wait(t, "sendMessage", 1)
	want := fmt.Sprintf("https://t.me/c/1234567890/%d", posted.MessageID)
	if replies[0].Params["chat_id"] != fmt.Sprint(admin) || !strings.Contains(replies[0].Params["reply_markup"], want) {
		t.Fatalf("reply %+v, want link %s", replies[0].Params, want)
	}

	// A stranger's file is refused and nothing is posted.
	other := msg
	other.ID, other.Chat.ID, other.From = 11, stranger, &models.User{ID: stranger, FirstName: "S"}
	h.deliver(t, models.Update{ID: 2, Message: &other})
	r := h.wait(t, "sendMessage", 2)[1]
	if r.Params["chat_id"] != fmt.Sprint(stranger) || !strings.Contains(r.Params["text"], "for the admins") {
		t.Fatalf("stranger reply %+v", r.Params)
	}
	if n := len(h.tg.CallsTo("copyMessage")); n != 1 {
		t.Fatalf("%d copies", n)
	}
}

func TestCancelButtonCancelsJob(t *testing.T) {
	h := startWorkers(t)
	// A job that will not run for an hour stands in for a running upload.
	res, err := h.client.Insert(context.Background(), jobs.UpdateArgs{BotID: 111, UpdateID: 999, Update: []byte(`{"update_id":999}`)},
		&river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	press := func(updateID int64, from int64) {
		h.deliver(t, models.Update{ID: updateID, CallbackQuery: &models.CallbackQuery{
			ID: fmt.Sprint(updateID), From: models.User{ID: from}, Data: fmt.Sprintf("cancel:%d", res.Job.ID),
		}})
	}
	press(1, stranger)
	if a := h.wait(t, "answerCallbackQuery", 1)[0]; !strings.Contains(a.Params["text"], "for the admins") {
		t.Fatalf("stranger answer %+v", a.Params)
	}
	press(2, admin)
	if a := h.wait(t, "answerCallbackQuery", 2)[1]; !strings.Contains(a.Params["text"], "Cancelling") {
		t.Fatalf("admin answer %+v", a.Params)
	}
	job, err := h.client.JobGet(context.Background(), res.Job.ID)
	if err != nil || job.State != "cancelled" {
		t.Fatalf("job %+v %v", job, err)
	}
}

func command(id int64, from int64, text string) models.Update {
	return models.Update{ID: id, Message: &models.Message{ID: int(id), Date: int(time.Now().Unix()),
		Chat: models.Chat{ID: from, Type: models.ChatTypePrivate}, From: &models.User{ID: from, FirstName: "A"}, Text: text}}
}

// TestFindAndGetWithFailover: two bots index one channel post; /find lists
// it; /get is sent by one bot, and when that bot is refused, by the other
// with its own file_id.
func TestFindAndGetWithFailover(t *testing.T) {
	h := startWorkers(t)
	spec := telegramtest.FileSpec{Kind: telegramtest.KindDocument, Name: "Big Buck Bunny.mkv", MimeType: "video/x-matroska", Size: 734003200, UniqueKey: "bbb"}
	refs := map[string]telegramtest.FileRef{workerToken: h.tg.AddFile(workerToken, spec), otherToken: h.tg.AddFile(otherToken, spec)}
	for i, tok := range []string{workerToken, otherToken} {
		botID := int64(111)
		if tok == otherToken {
			botID = 222
		}
		post := &models.Message{ID: 500, Date: int(time.Now().Unix()), Chat: models.Chat{ID: channel, Type: models.ChatTypeChannel},
			Document: &models.Document{FileID: refs[tok].FileID, FileUniqueID: refs[tok].FileUniqueID, FileName: spec.Name, MimeType: spec.MimeType, FileSize: spec.Size}}
		h.deliverTo(t, botID, models.Update{ID: int64(10 + i), ChannelPost: post})
	}
	// One reply for the post, from whichever bot claimed it.
	reply := h.wait(t, "sendMessage", 1)[0]
	if reply.Params["chat_id"] != fmt.Sprint(channel) || !strings.Contains(reply.Params["text"], "File Stored Successfully") {
		t.Fatalf("index reply %+v", reply.Params)
	}
	uid := refs[workerToken].FileUniqueID
	// The other bot's sighting may still be in its job: /get needs both.
	for deadline := time.Now().Add(15 * time.Second); len(holders(t, h.db, uid)) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second bot's file_id was never recorded")
		}
	}

	h.deliver(t, command(20, admin, "/find bunny"))
	found := h.wait(t, "sendMessage", 2)[1]
	if !strings.Contains(found.Params["text"], "Big Buck Bunny.mkv") || !strings.Contains(found.Params["text"], "/get "+uid) || !strings.Contains(found.Params["text"], "700.00 MB") {
		t.Fatalf("/find answer %q", found.Params["text"])
	}

	h.tg.FailNext("sendDocument", 1, telegramtest.BotBlocked())
	h.deliver(t, command(21, admin, "/get "+uid))
	sends := h.wait(t, "sendDocument", 2)
	if sends[0].Injected != telegramtest.FailForbidden || sends[1].BotID == sends[0].BotID || !sends[1].OK {
		t.Fatalf("failover: %+v", sends)
	}
	want := refs[workerToken].FileID
	if sends[1].BotID == 222 {
		want = refs[otherToken].FileID
	}
	if sends[1].Params["document"] != want || sends[1].Params["chat_id"] != fmt.Sprint(admin) {
		t.Fatalf("sent %+v, want file_id %s", sends[1].Params, want)
	}
	// /bots shows what the failover counted: the refused bot's failure and
	// the other's send. The stand-in records the send before the job records
	// its outcome, so wait for the count before asking.
	refused, sender := sends[0].BotID, sends[1].BotID
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		loads, err := h.db.BotLoadList(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		counted := false
		for _, l := range loads {
			counted = counted || (l.BotID == sender && l.Sends == 1)
		}
		if counted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the send by bot %d was never counted: %+v", sender, loads)
		}
	}
	h.deliver(t, command(22, admin, "/bots"))
	var bots string
	for _, m := range h.wait(t, "sendMessage", 3) {
		if strings.HasPrefix(m.Params["text"], "<b>Bots</b>") {
			bots = m.Params["text"]
		}
	}
	if !strings.Contains(bots, fmt.Sprintf(": %d", refused)) || !regexp.MustCompile(fmt.Sprintf(`%d[^\n]*— 0 sends, 1 failed`, refused)).MatchString(bots) ||
		!regexp.MustCompile(fmt.Sprintf(`%d[^\n]*— 1 sends, 0 failed`, sender)).MatchString(bots) {
		t.Fatalf("/bots after the failover:\n%s", bots)
	}
}

// TestHelpListsWhatTheAskerMayUse: an admin's /help lists every command; a
// stranger's only those open to everyone.
func TestHelpListsWhatTheAskerMayUse(t *testing.T) {
	h := startWorkers(t)
	const stranger = 5151
	h.deliver(t, command(30, admin, "/help"))
	h.deliver(t, command(31, stranger, "/help"))
	texts := map[string]string{}
	for _, m := range h.wait(t, "sendMessage", 2) {
		texts[m.Params["chat_id"]] = m.Params["text"]
	}
	all, some := texts[fmt.Sprint(admin)], texts[fmt.Sprint(stranger)]
	for _, c := range jobs.Commands() {
		if !strings.Contains(all, "/"+c.Name+" ") {
			t.Fatalf("admin's /help lacks /%s:\n%s", c.Name, all)
		}
		if strings.Contains(some, "/"+c.Name+" ") == c.Admin {
			t.Fatalf("stranger's /help and /%s (admin %v):\n%s", c.Name, c.Admin, some)
		}
	}
}

// holders lists the bots holding a file_id for a file.
func holders(t *testing.T, d db.Executor, uniqueID string) []db.Holder {
	t.Helper()
	hs, err := d.HolderList(context.Background(), uniqueID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestCommandBurstIsAnsweredOnceThenDropped: a user's 21st command within
// the window gets one "slow down"; the rest of the burst gets nothing.
func TestCommandBurstIsAnsweredOnceThenDropped(t *testing.T) {
	h := startWorkers(t, unpaced)
	h.tg.SetLimits(telegramtest.Limits{}) // 21 answers in one chat at once: room beyond Telegram's limits
	const stranger = 6161
	for i := range 25 {
		h.deliver(t, command(int64(100+i), stranger, "/start"))
	}
	h.wait(t, "sendMessage", 21)
	time.Sleep(500 * time.Millisecond) // the dropped four have had their chance
	var answers, slowDowns int
	for _, m := range h.tg.CallsTo("sendMessage") {
		switch text := m.Params["text"]; {
		case strings.Contains(text, "too fast"):
			slowDowns++
		case strings.Contains(text, "moves big files"):
			answers++
		}
	}
	if answers != 20 || slowDowns != 1 {
		t.Fatalf("%d answers and %d slow-downs for 25 commands in a burst; want 20 and 1", answers, slowDowns)
	}
}
