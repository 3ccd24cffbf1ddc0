package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/telegramtest"
)

// binary is the ferry binary built once for this test process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "ferry")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build ferry: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running ferry process.
type proc struct {
	cmd  *exec.Cmd
	port int
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs `ferry <args>` with env (and nothing of the caller's FERRY-
// relevant environment) in a temp dir, and stops it at test end.
func start(tb testing.TB, env map[string]string, args ...string) *proc {
	tb.Helper()
	return startIn(tb, tb.TempDir(), env, args...)
}

// startIn is start in the working directory dir (whose ./data is the
// default DATA_DIR), for a process that restarts where the last one was.
func startIn(tb testing.TB, dir string, env map[string]string, args ...string) *proc {
	tb.Helper()
	p := &proc{port: freePort(tb), done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir = dir
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), fmt.Sprintf("PORT=%d", p.port)}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	stderr, _ := p.cmd.StderrPipe()
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("ferry %v log:\n%s", args, p.logs())
		}
	})
	return p
}

func (p *proc) logs() string { p.mu.Lock(); defer p.mu.Unlock(); return p.log.String() }

func (p *proc) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path) }

// waitReady polls /readyz until 200 and returns how long it took from start.
func (p *proc) waitReady(tb testing.TB, started time.Time) time.Duration {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			tb.Fatalf("ferry exited before ready:\n%s", p.logs())
		default:
		}
		res, err := http.Get(p.url("/readyz"))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return time.Since(started)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	tb.Fatalf("ferry not ready after 30s:\n%s", p.logs())
	return 0
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// With nothing configured the only thing missing is a bot token (the
// database is embedded, updates are polled); asked for webhooks, ferry also
// names the secret. Nothing is created before the check fails.
func TestMissingSettingsAreNamed(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{nil, []string{"BOT_TOKENS"}},
		{[]string{"UPDATES_MODE=webhook"}, []string{"BOT_TOKENS", "WEBHOOK_SECRET", "UPDATES_MODE=poll, needs neither"}},
	} {
		cmd := exec.Command(binary, "serve")
		cmd.Dir = t.TempDir()
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%v: serve started without a bot token", tc.env)
		}
		for _, name := range tc.want {
			if !strings.Contains(string(out), name) {
				t.Fatalf("%v: error does not name %s: %s", tc.env, name, out)
			}
		}
		if strings.Contains(string(out), "DATABASE_URL") {
			t.Fatalf("%v: DATABASE_URL named as missing: %s", tc.env, out)
		}
		if _, err := os.Stat(filepath.Join(cmd.Dir, "data")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v: DATA_DIR made before the settings were checked (%v)", tc.env, err)
		}
	}
}

func TestMalformedTokenStopsStartWithoutLeakingIt(t *testing.T) {
	cmd := exec.Command(binary, "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BOT_TOKENS=12:short-SECRETISH", "DATABASE_URL=postgres://x@127.0.0.1:1/x", "WEBHOOK_SECRET=s"}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "malformed") || strings.Contains(string(out), "SECRETISH") {
		t.Fatalf("err %v, output %s", err, out)
	}
}

// runCLI runs the CLI in-process (for commands that exit quickly).
func runCLI(out *bytes.Buffer, args ...string) error {
	return run(context.Background(), args, out, io.Discard)
}

// Every command's --help (and help itself) prints its usage, exits 0 and
// does nothing: no database is created, nothing is contacted. Unknown
// commands and stray arguments are usage errors (exit 2).
func TestHelpOfEveryCommandChangesNothing(t *testing.T) {
	env := []string{"PATH=" + os.Getenv("PATH"), "BOT_TOKENS=700300:AAH-help-token-0123456789abcdefghijk",
		"BOT_API_URL=http://127.0.0.1:9", "R2_BUCKET=b", "R2_ENDPOINT=http://127.0.0.1:9"}
	runIn := func(args ...string) (string, int) {
		t.Helper()
		dir := t.TempDir()
		cmd := exec.Command(binary, args...)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("ferry %v left %d entries in its directory (%s): it did something", args, len(entries), entries[0].Name())
		}
		return string(out), code
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"serve", "--help"}, {"web", "-h"}, {"worker", "--help"},
		{"migrate", "--help"}, {"webhook", "--help"}, {"webhook", "set", "--help"}, {"webhook", "info", "-h"},
		{"webhook", "delete", "--help"}, {"r2", "--help"}, {"r2", "sync", "--help"}, {"version", "--help"}} {
		out, code := runIn(args...)
		if code != 0 || !strings.HasPrefix(out, "usage: ferry") {
			t.Fatalf("ferry %v: exit %d, output %q", args, code, out)
		}
	}
	if out, _ := runIn("serve", "--help"); !strings.Contains(out, "DATABASE_URL") || !strings.Contains(out, "BOT_TOKENS") {
		t.Fatalf("serve --help names no settings: %s", out)
	}
	if out, code := runIn("version"); code != 0 || !strings.HasPrefix(out, "ferry ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	for _, args := range [][]string{{"bogus"}, {"migrate", "now"}, {"serve", "--port=1"}, {"webhook"}, {"webhook", "set", "--nope"}, {"webhook", "renew"}, {"r2"}} {
		if out, code := runIn(args...); code != 2 || !strings.Contains(out, "usage: ferry") {
			t.Fatalf("ferry %v: exit %d, want 2 with usage; output %q", args, code, out)
		}
	}
}

// LOG_LEVEL and LOG_FORMAT are read from .env like every other setting;
// text is one key=value line per record, JSON one object; a wrong value
// stops ferry with a clear error.
func TestLogSettingsFromDotenv(t *testing.T) {
	migrate := func(dotenv string, env ...string) (string, error) {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binary, "migrate")
		cmd.Dir = dir
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := migrate("LOG_FORMAT=text\n")
	if err != nil || !strings.Contains(out, `level=INFO msg="migration applied"`) || strings.Contains(out, `{"time"`) {
		t.Fatalf("text log: %v\n%s", err, out)
	}
	out, err = migrate("LOG_FORMAT=text\n", "LOG_FORMAT=json") // the environment wins
	if err != nil || !strings.Contains(out, `"msg":"migration applied"`) {
		t.Fatalf("JSON log: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`"took":"[0-9.]+(µs|ms|s)"`).MatchString(out) {
		t.Fatalf("durations are not logged readably (\"1.5ms\"):\n%s", out)
	}
	if out, err = migrate("LOG_LEVEL=warn\n"); err != nil || strings.Contains(out, "migration applied") {
		t.Fatalf("LOG_LEVEL=warn from .env still logs info: %v\n%s", err, out)
	}
	if out, err = migrate("LOG_FORMAT=yaml\n"); err == nil || !strings.Contains(out, "LOG_FORMAT must be text or json") {
		t.Fatalf("bad LOG_FORMAT: %v\n%s", err, out)
	}
}

// A token Telegram refuses (401) stops ferry at start-up with the bot's
// slot, never the token, instead of polling forever with /readyz green.
func TestRefusedTokenStopsStartUp(t *testing.T) {
	tg := telegramtest.NewServer(t)
	const known = "700400:AAH-known-token-0123456789abcdefghij"
	const unknown = "700401:AAH-REFUSEDSECRET-0123456789abcdefgh"
	tg.AddBot(known)
	cmd := exec.Command(binary, "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + fmt.Sprint(freePort(t)), "BOT_TOKENS=" + known + "," + unknown, "BOT_API_URL=" + tg.URL()}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("ferry kept running with a refused token:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "bot token for slot b_2 was refused by Telegram") {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
	if strings.Contains(string(out), "REFUSEDSECRET") {
		t.Fatalf("the refused token reached the output:\n%s", out)
	}
}

// web and worker apart need Postgres: on the embedded database each would
// have its own, and the updates web takes would never be worked.
func TestWebAndWorkerNeedPostgres(t *testing.T) {
	for _, mode := range []string{"web", "worker"} {
		cmd := exec.Command(binary, mode)
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BOT_TOKENS=700500:AAH-apart-token-0123456789abcdefghijk"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ferry "+mode+" needs DATABASE_URL") {
			t.Fatalf("%s without DATABASE_URL: %v\n%s", mode, err, out)
		}
		if _, err := os.Stat(filepath.Join(cmd.Dir, "data")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s made an embedded database it cannot share (%v)", mode, err)
		}
	}
}

// Fly's release machine has no volume: `ferry migrate` there without
// DATABASE_URL would migrate a file that vanishes, so it refuses, while
// the same command on a laptop migrates DATA_DIR/ferry.db.
func TestMigrateRefusesSQLiteOnFlyRelease(t *testing.T) {
	run := func(env ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(binary, "migrate")
		cmd.Dir = t.TempDir()
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LOG_FORMAT=text"}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("FLY_APP_NAME=ferry-test", "RELEASE_COMMAND=1")
	if err == nil || !strings.Contains(out, "DATABASE_URL is empty on a Fly release machine") {
		t.Fatalf("migrate on a Fly release machine without DATABASE_URL: %v\n%s", err, out)
	}
	if out, err := run("FLY_APP_NAME=ferry-test"); err != nil || !strings.Contains(out, "migration applied") {
		t.Fatalf("migrate on a Fly machine (not the release one) with SQLite: %v\n%s", err, out)
	}
}
