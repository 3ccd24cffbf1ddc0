package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/telegramtest"
	"github.com/ferry-dev/ferry/webhook"
)

const (
	e2eToken = "700100:AAH-e2e-token-0123456789abcdefghijklmn"
	e2eBotID = 700100
	adminID  = 4242
	userID   = 5151
)

type world struct {
	tg     *telegramtest.Server
	db     db.Driver // the processes' database, for the test to look at
	env    map[string]string
	secret string
}

func newWorld(t *testing.T, extra map[string]string) *world {
	t.Helper()
	w := &world{tg: telegramtest.NewServer(t), env: dbtest.NewEnv(t)}
	w.db = dbtest.OpenEnv(t, w.env)
	w.tg.AddBot(e2eToken)
	for k, v := range map[string]string{
		"BOT_TOKENS":     e2eToken,
		"WEBHOOK_SECRET": "e2e-master-secret",
		"BOT_API_URL":    w.tg.URL(),
		"ADMIN_IDS":      fmt.Sprint(adminID),
	} {
		w.env[k] = v
	}
	for k, v := range extra {
		w.env[k] = v
	}
	w.secret = config.DeriveSecretToken("e2e-master-secret", e2eBotID)
	return w
}

func commandUpdate(updateID int64, from int64, text string) []byte {
	return []byte(fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"date":%d,"chat":{"id":%d,"type":"private","first_name":"U"},"from":{"id":%d,"is_bot":false,"first_name":"U"},"text":%q}}`,
		updateID, updateID, time.Now().Unix(), from, from, text))
}

func (w *world) post(t *testing.T, p *proc, secret string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.url(fmt.Sprintf("/tg/%d", e2eBotID)), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.SecretHeader, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post update: %v", err)
	}
	res.Body.Close()
	return res.StatusCode
}

// jobsOf lists the jobs of kind in states (every state when none).
func (w *world) jobsOf(t *testing.T, kind string, states ...rivertype.JobState) []*rivertype.JobRow {
	t.Helper()
	return dbtest.Jobs(t, w.db, kind, states...)
}

// stats are the counts /stats shows of ferry's own tables.
func (w *world) stats(t *testing.T) db.Stats {
	t.Helper()
	s, err := w.db.StatsCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sentTo returns the sendMessage calls to chatID that Telegram accepted.
func (w *world) sentTo(chatID int64) []telegramtest.Call {
	var out []telegramtest.Call
	for _, c := range w.tg.CallsTo("sendMessage") {
		if c.Params["chat_id"] == fmt.Sprint(chatID) && c.OK {
			out = append(out, c)
		}
	}
	return out
}

func (w *world) waitSent(t *testing.T, chatID int64, n int) []telegramtest.Call {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if got := w.sentTo(chatID); len(got) >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("want %d replies to chat %d, got %d (all calls: %d)", n, chatID, len(w.sentTo(chatID)), len(w.tg.Calls()))
	return nil
}

func TestEndToEndWebhookToReply(t *testing.T) {
	w := newWorld(t, nil)
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())

	// The same update delivered five times: one job, one reply.
	for i := 0; i < 5; i++ {
		if code := w.post(t, p, w.secret, commandUpdate(1001, userID, "/start")); code != 200 {
			t.Fatalf("delivery %d: status %d", i, code)
		}
	}
	replies := w.waitSent(t, userID, 1)
	if !strings.Contains(replies[0].Params["text"], "ferry") || replies[0].Params["parse_mode"] != "HTML" {
		t.Fatalf("reply %+v", replies[0].Params)
	}
	if n := len(w.jobsOf(t, "update")); n != 1 {
		t.Fatalf("%d jobs for one update", n)
	}

	// Bad input: each refused, nothing enqueued, the process keeps serving.
	if code := w.post(t, p, "wrong", commandUpdate(1002, userID, "/start")); code != 401 {
		t.Fatalf("wrong secret: %d", code)
	}
	big := append([]byte(`{"update_id":1003,"pad":"`), bytes.Repeat([]byte("x"), 2<<20)...)
	if code := w.post(t, p, w.secret, append(big, '"', '}')); code != 413 {
		t.Fatalf("2 MiB body: %d", code)
	}
	if code := w.post(t, p, w.secret, []byte(`{"update_id":`)); code != 400 {
		t.Fatalf("malformed JSON: %d", code)
	}
	if n := len(w.jobsOf(t, "update")); n != 1 {
		t.Fatalf("%d jobs after bad input", n)
	}

	// Admin commands: refused politely for a user, answered for an admin.
	w.post(t, p, w.secret, commandUpdate(1004, userID, "/stats"))
	got := w.waitSent(t, userID, 2)
	if !strings.Contains(got[1].Params["text"], "for the admins") {
		t.Fatalf("non-admin /stats answered: %q", got[1].Params["text"])
	}
	w.post(t, p, w.secret, commandUpdate(1005, adminID, "/stats"))
	stats := w.waitSent(t, adminID, 1)[0].Params["text"]
	// Three updates were accepted, so three update jobs exist in some
	// state (River records completion asynchronously), besides the index
	// drain and R2 sweep jobs a serving process queues at start.
	jobsTotal := 0
	for _, m := range regexp.MustCompile(`(?m)^(available|running|completed|retryable|scheduled): (\d+)$`).FindAllStringSubmatch(stats, -1) {
		n, _ := strconv.Atoi(m[2])
		jobsTotal += n
	}
	periodic := len(w.jobsOf(t, "index_drain")) + len(w.jobsOf(t, "r2_sweep"))
	if !strings.Contains(stats, "Updates received: 3") || jobsTotal < 3 || jobsTotal > 3+periodic {
		t.Fatalf("stats (%d jobs, %d of them drains and sweeps at most): %q", jobsTotal, periodic, stats)
	}
	if res, err := http.Get(p.url("/healthz")); err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz after bad input: %v %v", res, err)
	}
	// The command menu was registered for everyone and for the admin.
	if _, err := w.tg.WaitCalls(ctxTimeout(t, 10*time.Second), "setMyCommands", 2); err != nil {
		t.Fatal(err)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestUpdateSurvivesCrashBeforeReply: the web process commits the update and
// answers 200, dies (SIGKILL) before any worker ran, and the reply is sent by
// the next process.
func TestUpdateSurvivesCrashBeforeReply(t *testing.T) {
	dbtest.SkipOnSQLite(t, "ferry web runs apart from the workers on Postgres only")
	w := newWorld(t, nil)
	web := start(t, w.env, "web")
	web.waitReady(t, time.Now())
	if code := w.post(t, web, w.secret, commandUpdate(2001, userID, "/help")); code != 200 {
		t.Fatalf("status %d", code)
	}
	web.kill()
	if n := len(w.sentTo(userID)); n != 0 {
		t.Fatalf("web process replied itself (%d)", n)
	}
	if n := len(w.jobsOf(t, "update", rivertype.JobStateAvailable)); n != 1 {
		t.Fatalf("%d durable jobs after the crash", n)
	}
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	got := w.waitSent(t, userID, 1)
	if !strings.Contains(got[0].Params["text"], "/start") {
		t.Fatalf("help reply: %q", got[0].Params["text"])
	}
}

// TestTooManyRequestsIsObeyed: Telegram answers 429 twice; the job waits
// retry_after (snoozed, no attempt burnt) and the reply goes out once.
func TestTooManyRequestsIsObeyed(t *testing.T) {
	w := newWorld(t, nil)
	w.tg.FailNext("sendMessage", 2, telegramtest.TooManyRequests(1))
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.post(t, p, w.secret, commandUpdate(3001, userID, "/start"))
	first := time.Now()
	w.waitSent(t, userID, 1)
	if waited := time.Since(first); waited < 2*time.Second {
		t.Fatalf("reply after %v: retry_after was not obeyed", waited)
	}
	calls := w.tg.CallsTo("sendMessage")
	if len(calls) != 3 || calls[0].Injected != telegramtest.FailTooManyRequests {
		t.Fatalf("calls: %d", len(calls))
	}
	if gap := calls[1].Time.Sub(calls[0].Time); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v, before retry_after", gap)
	}
	time.Sleep(300 * time.Millisecond)
	firstTry := 0
	for _, j := range w.jobsOf(t, "update", rivertype.JobStateCompleted) {
		if j.Attempt == 1 {
			firstTry++
		}
	}
	if firstTry != 1 {
		t.Fatalf("job not completed on its first attempt (snoozes must not burn attempts)")
	}
}

// TestServerErrorIsRetried: a 502 from Telegram makes the job retry, not drop.
func TestServerErrorIsRetried(t *testing.T) {
	w := newWorld(t, nil)
	w.tg.FailNext("sendMessage", 1, telegramtest.Failure{Kind: telegramtest.FailServerError, Status: 502})
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.post(t, p, w.secret, commandUpdate(4001, userID, "/start"))
	w.waitSent(t, userID, 1)
	if n := len(w.tg.CallsTo("sendMessage")); n != 2 {
		t.Fatalf("%d sendMessage calls, want 2 (one failed, one retried)", n)
	}
}

// TestPollingMode: no public URL; updates are read with getUpdates and go
// through the same durable path.
func TestPollingMode(t *testing.T) {
	w := newWorld(t, map[string]string{"UPDATES_MODE": "poll", "WEBHOOK_SECRET": ""})
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	for i := int64(0); i < 3; i++ {
		w.tg.PushUpdate(e2eToken, commandUpdate(0, userID, "/start"))
	}
	w.waitSent(t, userID, 3)
	deadline := time.Now().Add(10 * time.Second)
	for w.tg.PendingUpdates(e2eToken) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("updates never confirmed to Telegram")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := w.stats(t).Updates; n != 3 {
		t.Fatalf("%d updates recorded", n)
	}
}

// TestWebhookCommand registers, inspects and deletes the webhook.
func TestWebhookCommand(t *testing.T) {
	w := newWorld(t, map[string]string{"PUBLIC_URL": "https://ferry.example.org/"})
	run := func(args ...string) string {
		var out bytes.Buffer
		for k, v := range w.env {
			t.Setenv(k, v)
		}
		t.Chdir(t.TempDir())
		if err := runCLI(&out, args...); err != nil {
			t.Fatalf("ferry %v: %v", args, err)
		}
		return out.String()
	}
	run("webhook", "set")
	set := w.tg.CallsTo("setWebhook")
	if len(set) != 1 || set[0].Params["url"] != fmt.Sprintf("https://ferry.example.org/tg/%d", e2eBotID) ||
		set[0].Params["secret_token"] != w.secret || !strings.Contains(set[0].Params["allowed_updates"], "channel_post") {
		t.Fatalf("setWebhook: %+v", set)
	}
	info := run("webhook", "info")
	if !strings.Contains(info, "url=https://ferry.example.org/tg/700100") || strings.Contains(info, w.secret) {
		t.Fatalf("info: %s", info)
	}
	run("webhook", "delete")
	if info := run("webhook", "info"); !strings.Contains(info, "url=(none)") {
		t.Fatalf("after delete: %s", info)
	}
}

// TestRiverUIBehindBasicAuth: the real River UI is served only with
// credentials, and not at all when none are configured.
func TestRiverUIBehindBasicAuth(t *testing.T) {
	w := newWorld(t, map[string]string{"RIVERUI_USER": "admin", "RIVERUI_PASSWORD": "s3cret"})
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	get := func(user, pass, path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, p.url(path), nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("", "", "/riverui/"); code != 401 {
		t.Fatalf("no credentials: %d", code)
	}
	if code, _ := get("admin", "wrong", "/riverui/api/jobs?state=available"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	if code, body := get("admin", "s3cret", "/riverui/"); code != 200 || !strings.Contains(strings.ToLower(body), "<html") {
		t.Fatalf("with credentials: %d %.200s", code, body)
	}
	if code, body := get("admin", "s3cret", "/riverui/api/jobs?state=available"); code != 200 || !strings.Contains(body, "data") {
		t.Fatalf("River UI API: %d %.200s", code, body)
	}

	open := start(t, newWorld(t, nil).env, "serve")
	open.waitReady(t, time.Now())
	if res, err := http.Get(open.url("/riverui/")); err != nil || res.StatusCode != 404 {
		t.Fatalf("River UI without configured credentials: %v %v", res, err)
	}
}
