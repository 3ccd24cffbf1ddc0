// Package browsertest runs a real headless Chromium (Debian's chromium
// package) for tests that check pages the way a user's browser sees them.
// A missing browser fails the test with what to install: it never skips.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is where Debian's chromium package puts the browser.
const Path = "/usr/bin/chromium"

// This chromedp (v0.23.0) has the generic API: an action returns its value,
// chromedp.Do runs actions that return nothing and chromedp.Run runs one that
// returns something, e.g. text, err := chromedp.Run(ctx, chromedp.Text("#p")).
//
// New starts a headless Chromium with a fresh profile and returns a context
// for chromedp actions; the browser stops when the test ends. The flags are
// the ones that work on a machine with a closed network: background
// networking off, no sandbox (tests run as root), no GPU, no QUIC.
func New(tb testing.TB, timeout time.Duration) context.Context {
	tb.Helper()
	path := Path
	if p := os.Getenv("FERRY_CHROMIUM"); p != "" {
		path = p
	}
	if _, err := exec.LookPath(path); err != nil {
		tb.Fatalf("headless Chromium is needed at %s (apt-get install chromium, or set FERRY_CHROMIUM): %v", path, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, timeout)
	tb.Cleanup(func() {
		tcancel()
		cancel()
		acancel()
	})
	// Start the browser now, so a broken install fails here and not in the
	// middle of a test's first action.
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// Screenshot saves a full-page PNG of the current page to path.
func Screenshot(ctx context.Context, path string) error {
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		return err
	}
	return os.WriteFile(path, buf, 0o644)
}
