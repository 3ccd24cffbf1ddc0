package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbsqlite"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
	"github.com/ferry-dev/ferry/telegramtest"
	"github.com/ferry-dev/ferry/webhook"
)

// TestIdleExitScalesToZero runs `ferry serve` with IDLE_EXIT_AFTER=3s as
// Fly would in the scale-to-zero layout. An upload that outlasts the idle
// window keeps the process up, and it exits 0 about 3 s after the upload's
// final message, though a job is scheduled an hour ahead. The next webhook
// starts a new process (as Fly's proxy does), which is answered, reuses the
// saved MTProto session, and stays up while a reply snoozed twice for 2 s
// (429 retry_after) waits, then exits 3 s after it, though /healthz,
// /readyz and /metrics are probed all along. Across both exits no job is
// lost or left running.
func TestIdleExitScalesToZero(t *testing.T) {
	const channel = -1001234567890
	mt := mtprototest.New(t, mtprototest.Options{Latency: 700 * time.Millisecond})
	root := t.TempDir()
	bigPath, smallPath := filepath.Join(root, "big.bin"), filepath.Join(root, "small.bin")
	bigSum, smallSum := randomUploadFile(t, bigPath, 6<<20, 1), randomUploadFile(t, smallPath, 1<<20, 2)
	w := newWorld(t, map[string]string{
		"IDLE_EXIT_AFTER": "3s",
		"API_ID":          "17349", "API_HASH": "test-hash", "SESSION_KEY": "idle-session-key",
		"MTPROTO_DC_ADDR": mt.Addr(), "MTPROTO_PUBLIC_KEY": mt.KeyPath(),
		"UPLOAD_ROOTS": root, "UPLOAD_THREADS": "2", "CHANNEL_ID": fmt.Sprint(channel),
	})
	// Due in an hour: not a reason to stay up, and still there after.
	later := insertUpdateJob(t, w.env, 9001, userID, "/help", time.Now().Add(time.Hour))

	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	asked := time.Now()
	if code := w.post(t, p, w.secret, commandUpdate(9101, adminID, "/upload "+bigPath)); code != 200 {
		t.Fatalf("upload command: status %d", code)
	}
	final := waitEdit(t, w.tg, "Uploaded <b>big.bin</b>", 60*time.Second)
	exited, code := p.waitExit(t, 20*time.Second)
	if took := final.Time.Sub(asked); took < 3500*time.Millisecond {
		t.Fatalf("the upload took %s: shorter than IDLE_EXIT_AFTER, so it proves nothing", took)
	}
	if gap := exited.Sub(final.Time); code != 0 || gap < 3*time.Second || gap > 6*time.Second {
		t.Fatalf("exit %d %s after the upload's final message, want 0 about 3s after", code, gap)
	}
	if posts := mt.Posts(); len(posts) != 1 || posts[0].SHA256 != bigSum {
		t.Fatalf("posts %+v, want one with sha256 %s", posts, bigSum)
	}
	if !strings.Contains(p.logs(), "idle: no request, no job running or due soon; exiting") {
		t.Fatalf("no idle exit in the log:\n%s", p.logs())
	}
	checkRiverAfterExit(t, w, later)

	// Fly's proxy starts the stopped machine on the next webhook: the
	// update is accepted once the port listens, and answered.
	p = start(t, w.env, "serve")
	woke := time.Now()
	if code := postWhenUp(t, p, w.secret, commandUpdate(9102, adminID, "/upload "+smallPath)); code != 200 {
		t.Fatalf("the webhook that wakes ferry: status %d", code)
	}
	t.Logf("cold start to the webhook's 200: %s", time.Since(woke))
	waitEdit(t, w.tg, "Uploaded <b>small.bin</b>", 30*time.Second)
	if posts := mt.Posts(); len(posts) != 2 || posts[1].SHA256 != smallSum {
		t.Fatalf("posts %+v, want a second with sha256 %s", posts, smallSum)
	}
	if n := mt.Logins(); n != 1 || !strings.Contains(p.logs(), "mtproto session reused") {
		t.Fatalf("%d bot logins over two processes: the first process's MTProto session was not kept", n)
	}

	// A reply refused twice with 429 retry_after=2: the job is snoozed past
	// the idle window, and the process waits for it.
	w.tg.FailNext("sendMessage", 2, telegramtest.TooManyRequests(2))
	asked = time.Now()
	w.post(t, p, w.secret, commandUpdate(9103, userID, "/start"))
	// Fly's checks and a metrics scraper keep probing: that is no work.
	probing := make(chan struct{})
	go func() {
		defer close(probing)
		for i := 0; ; i++ {
			select {
			case <-p.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if res, err := http.Get(p.url([]string{"/healthz", "/readyz", "/metrics"}[i%3])); err == nil {
				res.Body.Close()
			}
		}
	}()
	reply := w.waitSent(t, userID, 1)[0]
	exited, code = p.waitExit(t, 30*time.Second)
	<-probing
	if waited := reply.Time.Sub(asked); waited < 3500*time.Millisecond {
		t.Fatalf("the snoozed reply came %s after the update: within the idle window, so it proves nothing", waited)
	}
	if gap := exited.Sub(reply.Time); code != 0 || gap < 3*time.Second || gap > 6*time.Second {
		t.Fatalf("exit %d %s after the snoozed reply, want 0 about 3s after", code, gap)
	}
	refused := 0
	for _, c := range w.tg.CallsTo("sendMessage") {
		if c.Params["chat_id"] == fmt.Sprint(userID) && c.Injected == telegramtest.FailTooManyRequests {
			refused++
		}
	}
	if refused != 2 {
		t.Fatalf("%d refused replies, want 2", refused)
	}
	checkRiverAfterExit(t, w, later)
	if n := len(w.jobsOf(t, "update", rivertype.JobStateCompleted)); n != 3 {
		t.Fatalf("%d update jobs completed, want 3: %v", n, w.jobsOf(t, "update"))
	}
	if n := len(w.jobsOf(t, "upload", rivertype.JobStateCompleted)); n != 2 {
		t.Fatalf("%d upload jobs completed, want 2: %v", n, w.jobsOf(t, "upload"))
	}
}

// checkRiverAfterExit: nothing running, nothing due left behind; the job
// scheduled an hour ahead is untouched.
func checkRiverAfterExit(t *testing.T, w *world, later *rivertype.JobRow) {
	t.Helper()
	for _, j := range w.jobsOf(t, "") {
		switch {
		case j.ID == later.ID:
			if j.State != rivertype.JobStateScheduled || j.Attempt != 0 || !j.ScheduledAt.Equal(later.ScheduledAt) {
				t.Fatalf("the job due in an hour is %s (attempt %d, at %s), want scheduled at %s", j.State, j.Attempt, j.ScheduledAt, later.ScheduledAt)
			}
		case j.State != rivertype.JobStateCompleted:
			t.Fatalf("job %d (%s) left %s across the idle exit", j.ID, j.Kind, j.State)
		}
	}
}

// insertUpdateJob queues an update job scheduled at at, before any ferry
// runs on the database (SQLite admits one writer process).
func insertUpdateJob(t *testing.T, env map[string]string, updateID, from int64, text string, at time.Time) *rivertype.JobRow {
	t.Helper()
	var d db.Driver
	if url := env["DATABASE_URL"]; url != "" {
		d = dbtest.Open(t, url)
	} else {
		lite, err := dbsqlite.Open(context.Background(), filepath.Join(env["DATA_DIR"], "ferry.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer lite.Close()
		d = lite
	}
	rc, err := d.NewRiver(&river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rc.Insert(context.Background(), jobs.UpdateArgs{BotID: e2eBotID, UpdateID: updateID, Update: commandUpdate(updateID, from, text)},
		&river.InsertOpts{ScheduledAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return res.Job
}

// waitEdit waits for an accepted editMessageText whose text contains want.
func waitEdit(t *testing.T, tg *telegramtest.Server, want string, within time.Duration) telegramtest.Call {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, c := range tg.CallsTo("editMessageText") {
			if c.OK && strings.Contains(c.Params["text"], want) {
				return c
			}
		}
	}
	t.Fatalf("no edit with %q within %s; sendMessage: %d, editMessageText: %d", want, within, len(tg.CallsTo("sendMessage")), len(tg.CallsTo("editMessageText")))
	return telegramtest.Call{}
}

// waitExit waits for the process to exit by itself and returns when it did
// and its exit code.
func (p *proc) waitExit(t *testing.T, within time.Duration) (time.Time, int) {
	t.Helper()
	select {
	case <-p.done:
		at := time.Now()
		code := p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("ferry was killed by %s", ws.Signal())
		}
		return at, code
	case <-time.After(within):
		t.Fatalf("ferry still running %s later:\n%s", within, p.logs())
	}
	return time.Time{}, 0
}

// postWhenUp posts an update as soon as the process listens, as Fly's
// proxy holds a request until the machine it starts accepts connections.
func postWhenUp(t testing.TB, p *proc, secret string, body []byte) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodPost, p.url(fmt.Sprintf("/tg/%d", e2eBotID)), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.SecretHeader, secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			t.Fatalf("post update: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	t.Fatalf("ferry never listened:\n%s", p.logs())
	return 0
}

// An IDLE_EXIT_AFTER too short to be meant (or not a duration) stops
// start-up before anything is created.
func TestIdleExitAfterIsChecked(t *testing.T) {
	for value, want := range map[string]string{"500ms": "IDLE_EXIT_AFTER must be at least 1s", "soon": `invalid duration "soon"`} {
		cmd := exec.Command(binary, "serve")
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BOT_TOKENS=" + e2eToken, "IDLE_EXIT_AFTER=" + value}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("IDLE_EXIT_AFTER=%s: %v\n%s", value, err, out)
		}
		if _, err := os.Stat(filepath.Join(cmd.Dir, "data")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("IDLE_EXIT_AFTER=%s: DATA_DIR made before the check (%v)", value, err)
		}
	}
}
