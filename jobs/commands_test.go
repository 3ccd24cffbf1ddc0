package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/telegramtest"
)

// asker sends admin commands and returns their replies.
type asker struct {
	h      *harness
	next   int64
	admins []int64 // each command comes from the next one
}

// answered are the sendMessage calls into the admins' chats that Telegram
// accepted. The stand-in refuses more than one a second into a private
// chat, as Telegram does (the job then waits and sends again), so a batch
// is asked by several admins.
func (a *asker) answered() []telegramtest.Call {
	var out []telegramtest.Call
	for _, c := range a.h.tg.CallsTo("sendMessage") {
		for _, id := range a.admins {
			if c.OK && c.Params["chat_id"] == fmt.Sprint(id) {
				out = append(out, c)
			}
		}
	}
	return out
}

// ask delivers text from the admin and returns the one reply it gets.
func (a *asker) ask(t *testing.T, text string) telegramtest.Call {
	t.Helper()
	return a.askAll(t, text)[0]
}

// askAll delivers commands at once and returns their replies in the order
// they were sent (not necessarily the order of the commands).
func (a *asker) askAll(t *testing.T, texts ...string) []telegramtest.Call {
	t.Helper()
	before := len(a.answered())
	for _, text := range texts {
		a.next++
		a.h.deliver(t, command(1000+a.next, a.admins[int(a.next)%len(a.admins)], text))
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(a.answered()) < before+len(texts) {
		if time.Now().After(deadline) {
			t.Fatalf("%q: %d replies of %d", texts, len(a.answered())-before, len(texts))
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := a.answered()[before:]
	for _, c := range out {
		// Exactly these parameters: HTML text, no link preview, and no
		// keyboard (commands answer in text alone), as a reply to no one.
		var keys []string
		for k := range c.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != "chat_id,link_preview_options,parse_mode,text" || c.Params["parse_mode"] != "HTML" ||
			c.Params["link_preview_options"] != `{"is_disabled":true}` {
			t.Fatalf("%q: reply %q with parameters %v", texts, c.Params["text"], c.Params)
		}
	}
	return out
}

// methodsSince counts the Bot API calls after the first n, by method.
func methodsSince(tg *telegramtest.Server, n int) map[string]int {
	out := map[string]int{}
	for _, c := range tg.Calls()[n:] {
		out[c.Method]++
	}
	return out
}

// queueGetter is River's QueueGet, which db.River leaves out; its client
// has it.
type queueGetter interface {
	QueueGet(ctx context.Context, name string) (*rivertype.Queue, error)
}

// TestAdminCommandReplies: each admin command's reply, exactly as sent,
// and the job or queue state it changed.
func TestAdminCommandReplies(t *testing.T) {
	started := time.Now().Add(-90 * time.Minute)
	var deps *jobs.Deps
	h := startWorkers(t, func(d *jobs.Deps) {
		cfg := *d.Config
		cfg.PublicURL, cfg.UpdatesMode = "https://ferry.example.org", "webhook"
		cfg.AdminIDs = []int64{admin, admin + 1, admin + 2, admin + 3}
		d.Config, d.Started = &cfg, started
		deps = d
	})
	ctx := context.Background()
	a := &asker{h: h, admins: []int64{admin, admin + 1, admin + 2, admin + 3}}

	// /jobs lists a job waiting an hour; /cancel and /retry act on it.
	later, err := h.client.Insert(ctx, jobs.UpdateArgs{BotID: 111, UpdateID: 77, Update: []byte(`{"update_id":77}`)},
		&river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := later.Job.ID
	callsBefore := len(h.tg.Calls())
	// The list also has the update jobs of the commands themselves
	// (running, or completed but not yet recorded so).
	line := fmt.Sprintf("\n#%d update scheduled (attempt 0/25)\n", id)
	if got := a.ask(t, "/jobs").Params["text"]; !strings.HasPrefix(got, "<b>Jobs</b>\n") || !strings.Contains(got, line) ||
		!regexp.MustCompile(`^<b>Jobs</b>\n(#\d+ \w+ \w+ \(attempt \d+/\d+\)\n)+$`).MatchString(got) {
		t.Fatalf("/jobs: %q, want a list with %q", got, line)
	}
	if got, want := a.ask(t, fmt.Sprintf("/cancel %d", id)).Params["text"], fmt.Sprintf("Job #%d (update) is now cancelled.", id); got != want {
		t.Fatalf("/cancel: %q, want %q", got, want)
	}
	if j, err := h.client.JobGet(ctx, id); err != nil || j.State != rivertype.JobStateCancelled {
		t.Fatalf("after /cancel: %+v %v", j, err)
	}
	if got, want := a.ask(t, fmt.Sprintf("/retry #%d", id)).Params["text"], fmt.Sprintf("Job #%d (update) is now available.", id); got != want {
		t.Fatalf("/retry: %q, want %q", got, want)
	}
	// Retried, the job runs (an update about nothing) and completes.
	waitState(t, h.client, id, rivertype.JobStateCompleted)
	// Commands that change nothing, and /start, asked at once.
	want := map[string]bool{
		"<b>ferry</b> moves big files into Telegram and keeps an index of them.\n" +
			"Admins: send me a file or use /upload. Add me to a channel as admin to index its files.\nSend /help for the commands.": true,
		"Usage: /retry &lt;job id&gt;":  true,
		"Usage: /cancel &lt;job id&gt;": true,
		"No job #999999.":               true,
	}
	for _, c := range a.askAll(t, "/start", "/retry", "/cancel x", "/cancel 999999") {
		if got := c.Params["text"]; !want[got] {
			t.Fatalf("unexpected reply %q; want each of %v once", got, want)
		} else {
			delete(want, got)
		}
	}
	if len(want) > 0 {
		t.Fatalf("replies missing: %v", want)
	}

	// /pause pauses the work queues (not the updates queue, or /resume
	// could not run); a job queued meanwhile waits until /resume.
	if got := a.ask(t, "/pause").Params["text"]; got != "Paused uploads and indexing. Send /resume to continue." {
		t.Fatalf("/pause: %q", got)
	}
	// An insert-only client on the same database reads the queue rows.
	probe, err := h.db.NewRiver(&river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	qg, ok := probe.(queueGetter)
	if !ok {
		t.Fatalf("%T has no QueueGet", probe)
	}
	for _, q := range append(jobs.WorkQueues(), jobs.QueueUpdates) {
		queue, err := qg.QueueGet(ctx, q)
		if err != nil {
			t.Fatalf("queue %s: %v", q, err)
		}
		if paused := queue.PausedAt != nil; paused != (q != jobs.QueueUpdates) {
			t.Fatalf("queue %s paused %v after /pause", q, paused)
		}
	}
	// Without LISTEN/NOTIFY (SQLite) a producer learns of the pause within
	// River's queue poll interval, 2 s; on Postgres it is notified.
	if dbtest.Backend() == "sqlite" {
		time.Sleep(2500 * time.Millisecond)
	} else {
		time.Sleep(300 * time.Millisecond)
	}
	drain, err := h.client.Insert(ctx, jobs.IndexDrainArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if j, _ := h.client.JobGet(ctx, drain.Job.ID); j.State != rivertype.JobStateAvailable {
		t.Fatalf("a job in a paused queue is %s, want available", j.State)
	}
	if got := a.ask(t, "/resume").Params["text"]; got != "Resumed uploads and indexing." {
		t.Fatalf("/resume: %q", got)
	}
	for _, q := range jobs.WorkQueues() {
		if queue, err := qg.QueueGet(ctx, q); err != nil || queue.PausedAt != nil {
			t.Fatalf("queue %s after /resume: %+v %v", q, queue, err)
		}
	}
	waitState(t, h.client, drain.Job.ID, rivertype.JobStateCompleted)
	// /jobs … /resume made no Bot API call but their answers (nine commands;
	// sends the stand-in refused as over the per-chat limit are retried).
	if m := methodsSince(h.tg, callsBefore); len(m) != 1 || m["sendMessage"] < 9 {
		t.Fatalf("Bot API calls of /jobs … /resume: %v, want sendMessage alone", m)
	}

	// /bots: bot 111 has its webhook at PUBLIC_URL and one send; bot 222
	// no webhook, a failed send and a flood wait of an hour.
	b111, _ := bot.New(workerToken, bot.WithServerURL(h.tg.URL()), bot.WithSkipGetMe())
	if _, err := b111.SetWebhook(ctx, &bot.SetWebhookParams{URL: "https://ferry.example.org/tg/111"}); err != nil {
		t.Fatal(err)
	}
	lease, err := h.db.BotSendLease(ctx, 111, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := h.db.BotSendRelease(ctx, &db.BotSendReleaseParams{BotID: 111, Lease: lease, OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.db.BotSendRelease(ctx, &db.BotSendReleaseParams{BotID: 222, FloodWaitUntil: until}); err != nil {
		t.Fatal(err)
	}
	// Two sends of bot 222 under way (in some process), neither ended yet.
	for range 2 {
		if _, err := h.db.BotSendLease(ctx, 222, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	callsBefore = len(h.tg.Calls())
	bots := a.ask(t, "/bots").Params["text"]
	// /bots asks each bot's webhook of Telegram, once, and its username
	// unless known already.
	if m := methodsSince(h.tg, callsBefore); m["getWebhookInfo"] != 2 || m["sendMessage"] != 1 || m["getMe"] > 2 ||
		len(m) != 2+min(m["getMe"], 1) {
		t.Fatalf("Bot API calls of /bots: %v, want getWebhookInfo twice, getMe at most twice, and the answer", m)
	}
	wantBots := regexp.MustCompile("^<b>Bots</b>\n" +
		`b_1: 111 @\w+ — 1 sends, 0 failed; 0 sends, 0 uploads in flight; webhook set \(0 pending\)` + "\n" +
		`b_2: 222 @\w+ — 0 sends, 1 failed; 2 sends, 0 uploads in flight; no webhook set; flood wait until ` +
		regexp.QuoteMeta(until.UTC().Format("15:04:05 UTC")) + ` \((59m5\d|1h0m0)s\)` + "\n$")
	if !wantBots.MatchString(bots) {
		t.Fatalf("/bots:\n%s\nwant %s", bots, wantBots)
	}

	// /stats: the counts, the send budget (bot 222 answered 429 with a
	// two-minute retry_after: blocked in every chat), no uploads yet, and
	// the process's uptime.
	deps.Senders.Budget().Refused(ctx, 222, 0, "sendMessage", 2*time.Minute)
	stats := a.ask(t, "/stats").Params["text"]
	for _, re := range []string{
		`\n<b>Send budget</b>: [1-9]\d* sends, \d+ queued behind the budget, 1 answer of 429 \(Too Many Requests\)\n` +
			`(b_1: busy in \d+ chats \(chat \d+: next turn in [\d.]+m?s\)\n)?` + // the answers just sent
			`b_2: blocked in every chat for (1m[0-5]\d(\.\d)?s|2m0s); next turn in 0s\n`,
		`^<b>ferry stats</b>\nUpdates received: \d+ \(last 24 h: \d+\)\n<b>Jobs</b>\n`,
		"(?m)^completed: [1-9]",
		"\n<b>Bots</b>: 2\n",
		"\n<b>Index</b>: 0 files; 0 posts answered; 0 sightings waiting; 0 records waiting for their write",
		"\n<b>Uploads</b>: 0 files, 0 B uploaded",
		`\n<b>Uptime</b>: 1h30m\d+s$`,
	} {
		if !regexp.MustCompile(re).MatchString(stats) {
			t.Fatalf("/stats lacks %q:\n%s", re, stats)
		}
	}
	// A stranger gets the refusal for each admin command.
	before := len(h.tg.CallsTo("sendMessage"))
	for i, c := range []string{"/pause", "/cancel 1"} {
		h.deliver(t, command(int64(2000+i), stranger, c))
	}
	for _, c := range h.wait(t, "sendMessage", before+2)[before:] {
		if c.Params["chat_id"] != fmt.Sprint(stranger) || c.Params["text"] != "Sorry, this command is for the admins of this bot." {
			t.Fatalf("stranger's answer %+v", c.Params)
		}
	}
	for _, q := range jobs.WorkQueues() {
		if queue, err := qg.QueueGet(ctx, q); err != nil || queue.PausedAt != nil {
			t.Fatalf("a stranger's /pause paused queue %s: %+v %v", q, queue, err)
		}
	}
}

func waitState(t *testing.T, c db.River, id int64, want rivertype.JobState) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, err := c.JobGet(context.Background(), id)
		if err == nil && j.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d: %+v %v, want %s", id, j, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBotsWhenPolling: with long polling /bots says so for every bot and
// asks Telegram for no webhook.
func TestBotsWhenPolling(t *testing.T) {
	h := startWorkers(t, func(d *jobs.Deps) {
		cfg := *d.Config
		cfg.UpdatesMode, cfg.AdminIDs = "poll", []int64{admin}
		d.Config = &cfg
	})
	a := &asker{h: h, admins: []int64{admin}}
	bots := a.ask(t, "/bots").Params["text"]
	want := regexp.MustCompile("^<b>Bots</b>\n" +
		`b_1: 111 @\w+ — 0 sends, 0 failed; 0 sends, 0 uploads in flight; polling \(getUpdates\)` + "\n" +
		`b_2: 222 @\w+ — 0 sends, 0 failed; 0 sends, 0 uploads in flight; polling \(getUpdates\)` + "\n$")
	if !want.MatchString(bots) {
		t.Fatalf("/bots:\n%s\nwant %s", bots, want)
	}
	if n := len(h.tg.CallsTo("getWebhookInfo")); n != 0 {
		t.Fatalf("%d getWebhookInfo calls while polling", n)
	}
}

// TestUpdateLogLinesNameTheirJobAndUpdate: a line logged deep inside an
// update's handling (a command dropped by the burst limit) carries the
// job's id, kind and attempt, and the update's bot and id.
func TestUpdateLogLinesNameTheirJobAndUpdate(t *testing.T) {
	logs := &syncBuffer{}
	h := startWorkers(t, unpaced, func(d *jobs.Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h.tg.SetLimits(telegramtest.Limits{})
	const user = 6262
	// 45 commands: however the limit's 10 s windows split them, one window
	// holds more than 21, so one is dropped.
	for i := range 45 {
		h.deliver(t, command(int64(300+i), user, "/start"))
	}
	h.wait(t, "sendMessage", 21)
	var line map[string]any
	for deadline := time.Now().Add(10 * time.Second); line == nil; time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "command dropped") {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatal(err)
				}
			}
		}
		if line == nil && time.Now().After(deadline) {
			t.Fatalf("no line about the dropped command:\n%s", logs)
		}
	}
	bot, _ := line["bot"].(map[string]any)
	uid, _ := line["update_id"].(float64)
	if line["kind"] != "update" || line["attempt"] != float64(1) || line["job_id"] == nil || bot["id"] != float64(111) ||
		bot["slot"] != float64(1) || uid < 300 || uid > 344 {
		t.Fatalf("the dropped command's line %v lacks its job (update, attempt 1) or its update (bot 111 slot 1, id 300..344)", line)
	}
	j, err := h.client.JobGet(context.Background(), int64(line["job_id"].(float64)))
	if err != nil || j.Kind != "update" {
		t.Fatalf("job_id %v names %+v (%v)", line["job_id"], j, err)
	}
}
