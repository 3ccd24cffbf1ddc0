package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/internal/browsertest"
	"github.com/ferry-dev/ferry/telegramtest"
)

// riverUIShot is where the test leaves its screenshot of the jobs list,
// for a person to look at (FERRY_RIVERUI_SHOT overrides it).
func riverUIShot(t *testing.T) string {
	if p := os.Getenv("FERRY_RIVERUI_SHOT"); p != "" {
		return p
	}
	if _, err := os.Stat("/work/notes"); err == nil {
		return "/work/notes/riverui.png"
	}
	return filepath.Join(t.TempDir(), "riverui.png")
}

// TestRiverUIInBrowser: headless Chromium gets 401 from /riverui and its
// API without credentials, and with them renders River UI's jobs list with ferry's
// job in it: an update whose reply Telegram refused with retry_after of
// an hour, so it waits snoozed (scheduled).
func TestRiverUIInBrowser(t *testing.T) {
	w := newWorld(t, map[string]string{"RIVERUI_USER": "admin", "RIVERUI_PASSWORD": "s3cret"})
	w.tg.FailNext("sendMessage", 1, telegramtest.TooManyRequests(3600))
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.post(t, p, w.secret, commandUpdate(501, userID, "/start"))
	var job *rivertype.JobRow
	for deadline := time.Now().Add(20 * time.Second); job == nil; time.Sleep(50 * time.Millisecond) {
		if js := w.jobsOf(t, "update", rivertype.JobStateScheduled); len(js) == 1 {
			job = js[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("the refused reply's job was never snoozed: %v", w.jobsOf(t, "update"))
		}
	}

	ctx := browsertest.New(t, 60*time.Second)
	// Without credentials: the page itself would be an auth prompt, which
	// a headless browser cannot answer; the page's API, fetched from a
	// page of the same origin, is refused.
	if err := chromedp.Do(ctx, chromedp.Navigate(p.url("/healthz"))); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/riverui/", "/riverui/api/jobs?state=scheduled"} {
		status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch(`+strconv.Quote(path)+`, {credentials: "omit"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		if err != nil || status != http.StatusUnauthorized {
			t.Fatalf("%s without credentials: %d %v", path, status, err)
		}
	}

	// Every request of the page (its scripts, its API calls) carries the
	// credentials, as a browser that was asked for them would.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:s3cret"))
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Run(ctx, chromedp.NavigateResponse(p.url("/riverui/jobs?state=scheduled")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("/riverui/jobs with credentials: %d", res.Status)
	}
	// The list is rendered by the page's script from the API: wait for the
	// job's row (its kind and its id) to appear.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id := job.ID
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](
		`(() => { const t = document.body.innerText; return t.includes("update") && /\b`+strconv.FormatInt(id, 10)+`\b/.test(t); })()`,
		chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("the jobs list never showed job %d: %v\npage text:\n%s", id, err, text)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(text), "scheduled") {
		t.Fatalf("jobs list without its state filter:\n%s", text)
	}
	shot := riverUIShot(t)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the jobs list: %s", shot)
}
