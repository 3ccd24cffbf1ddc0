package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotd/td/session"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

var e2eUser = mtprototest.PremiumUser{Phone: "+15550100", Code: "54321", Password: "hunter2 hunter2", Premium: true,
	FirstName: "Pat", Username: "pat_premium"}

// newPremiumWorld is newUploadWorld with a user account on the MTProto
// server that `ferry login` can sign in.
func newPremiumWorld(t *testing.T, user mtprototest.PremiumUser) *uploadWorld {
	t.Helper()
	mt := mtprototest.New(t, mtprototest.Options{PremiumUser: &user})
	root := t.TempDir()
	env := map[string]string{
		"API_ID": "17349", "API_HASH": "e2e-hash", "SESSION_KEY": "e2e-session-key",
		"MTPROTO_DC_ADDR": mt.Addr(), "MTPROTO_PUBLIC_KEY": mt.KeyPath(),
		"CHANNEL_ID": fmt.Sprint(e2eChannel), "UPLOAD_ROOTS": root, "UPLOAD_THREADS": "4",
	}
	return &uploadWorld{world: newWorld(t, env), mt: mt, root: root}
}

// ferryLogin runs `ferry login` with stdin from a pipe and returns stdout,
// stderr and the exit code.
func ferryLogin(t *testing.T, env map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"login"}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LOG_FORMAT=text"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.WriteString(in, stdin); _ = in.Close() }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("ferry login did not finish:\n%s\n%s", out.String(), errb.String())
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// `ferry login` driven through a pipe (phone, code, 2FA password) signs
// the account in with SRP, says who it is and that it is premium, and
// stores the session sealed: the raw row holds no piece of the auth key
// in clear, and another SESSION_KEY cannot open it.
func TestLoginCommandStoresSealedSession(t *testing.T) {
	w := newPremiumWorld(t, e2eUser)
	stdout, stderr, code := ferryLogin(t, w.env, e2eUser.Phone+"\n"+e2eUser.Code+"\n"+e2eUser.Password+"\n")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"Logged in as Pat (@pat_premium), id 5550001.", "Premium: yes", "stored, encrypted with SESSION_KEY"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("stdout does not say %q:\n%s", want, stdout)
		}
	}
	for _, prompt := range []string{"Phone number", "Login code (sent to your Telegram app)", "2FA password"} {
		if !strings.Contains(stderr, prompt) {
			t.Fatalf("no prompt %q:\n%s", prompt, stderr)
		}
	}
	if strings.Contains(stdout+stderr, e2eUser.Password) {
		t.Fatal("the password was echoed")
	}
	if w.mt.UserLogins() != 1 || w.mt.Calls("auth.checkPassword") != 1 {
		t.Fatalf("logins %d, checkPassword %d", w.mt.UserLogins(), w.mt.Calls("auth.checkPassword"))
	}
	ctx := context.Background()
	raw, err := w.db.SessionGet(ctx, mtproto.UserSessionOwner)
	if err != nil {
		t.Fatalf("no session row: %v", err)
	}
	store, _ := mtproto.NewUserSessionStore(w.db, w.env["SESSION_KEY"])
	data, err := (&session.Loader{Storage: store}).Load(ctx)
	if err != nil || len(data.AuthKey) != 256 {
		t.Fatalf("open with SESSION_KEY: %v (%d key bytes)", err, len(data.AuthKey))
	}
	row := append(append([]byte(nil), raw.Nonce...), raw.Data...)
	for _, clear := range [][]byte{data.AuthKey[:24], data.AuthKey[200:224], []byte(base64.StdEncoding.EncodeToString(data.AuthKey)[:32]),
		[]byte(hex.EncodeToString(data.AuthKey)[:32]), []byte(e2eUser.Phone)} {
		if bytes.Contains(row, clear) {
			t.Fatalf("the stored row contains %q in clear", clear)
		}
	}
	wrong, _ := mtproto.NewUserSessionStore(w.db, "another-session-key")
	if _, err := wrong.LoadSession(ctx); !errors.Is(err, mtproto.ErrUserSessionSealed) {
		t.Fatalf("another SESSION_KEY opened the session: %v", err)
	}

	// Again: the new session replaces the old one.
	stdout, stderr, code = ferryLogin(t, w.env, e2eUser.Code+"\n"+e2eUser.Password+"\n", "--phone", e2eUser.Phone)
	if code != 0 || !strings.Contains(stdout, "replaces the one stored before") {
		t.Fatalf("second login: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if again, _ := w.db.SessionGet(ctx, mtproto.UserSessionOwner); bytes.Equal(again.Data, raw.Data) {
		t.Fatal("the second login left the first session in place")
	}
}

// A wrong code, a wrong 2FA password and stdin ending early each fail
// with a clear message and a non-zero exit, and store nothing.
func TestLoginCommandRefusedStoresNothing(t *testing.T) {
	w := newPremiumWorld(t, e2eUser)
	for _, tc := range []struct {
		stdin, want string
	}{
		{e2eUser.Phone + "\n00000\n" + e2eUser.Password + "\n", "the login code is wrong or expired"},
		{e2eUser.Phone + "\n" + e2eUser.Code + "\nhunter3\n", "the 2FA password is wrong"},
		{e2eUser.Phone + "\n", "stdin ended before the login code was given"},
	} {
		stdout, stderr, code := ferryLogin(t, w.env, tc.stdin)
		if code != 1 || !strings.Contains(stderr, "login failed, nothing was stored") || !strings.Contains(stderr, tc.want) {
			t.Fatalf("stdin %q: exit %d, want 1 saying %q\n%s\n%s", tc.stdin, code, tc.want, stdout, stderr)
		}
		if _, err := w.db.SessionGet(context.Background(), mtproto.UserSessionOwner); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("stdin %q: a session was stored (%v)", tc.stdin, err)
		}
	}
	if w.mt.UserFailures("PHONE_CODE_INVALID") != 1 || w.mt.UserFailures("PASSWORD_HASH_INVALID") != 1 || w.mt.UserLogins() != 0 {
		t.Fatalf("server saw %d wrong codes, %d wrong passwords, %d logins", w.mt.UserFailures("PHONE_CODE_INVALID"),
			w.mt.UserFailures("PASSWORD_HASH_INVALID"), w.mt.UserLogins())
	}
	// Missing settings are named before anything is asked or opened.
	_, stderr, code := ferryLogin(t, map[string]string{"API_ID": "1", "API_HASH": "h"}, "")
	if code != 1 || !strings.Contains(stderr, "SESSION_KEY") || strings.Contains(stderr, "Phone number") {
		t.Fatalf("without SESSION_KEY: exit %d\n%s", code, stderr)
	}
}

// `ferry login --help` prints its usage and exits 0 without asking,
// opening or creating anything.
func TestLoginHelpDoesNothing(t *testing.T) {
	for _, args := range [][]string{{"login", "--help"}, {"login", "-h"}, {"help", "login"}} {
		cmd := exec.Command(binary, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "API_ID=1", "API_HASH=h", "SESSION_KEY=k"}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "usage: ferry login") || !strings.Contains(string(out), "SESSION_KEY") {
			t.Fatalf("ferry %v: %v\n%s", args, err, out)
		}
		if entries, _ := os.ReadDir(cmd.Dir); len(entries) != 0 {
			t.Fatalf("ferry %v created %s", args, entries[0].Name())
		}
	}
	out, _ := exec.Command(binary, "help").CombinedOutput()
	if !strings.Contains(string(out), "login ") {
		t.Fatalf("ferry help does not list login:\n%s", out)
	}
	for _, args := range [][]string{{"login", "now"}, {"login", "--nope"}} {
		cmd := exec.Command(binary, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "usage: ferry login") {
			t.Fatalf("ferry %v: %v, want exit 2 with usage\n%s", args, err, out)
		}
	}
}

// sparseRandomFile makes a file of size bytes that costs little disk: holes,
// with 1 MiB of random bytes every 128 MiB and at the end, so a part out of
// place changes the sha256. It returns the sha256.
func sparseRandomFile(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{12})
	block := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 128 << 20 {
		_, _ = rng.Read(block)
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = rng.Read(block)
	if _, err := f.WriteAt(block, size-int64(len(block))); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// A 3000 MiB /upload is refused up front without a premium session (the
// reply says why, no part reaches the server); after `ferry login` of a
// premium account the same command uploads it through that account: one
// post, sha256-identical, every part and the post the user's.
func TestUploadOver2000MiBNeedsPremiumSession(t *testing.T) {
	w := newPremiumWorld(t, e2eUser)
	path := filepath.Join(w.root, "huge.bin")
	const size = 3000 << 20
	sum := sparseRandomFile(t, path, size)

	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.post(t, p, w.secret, commandUpdate(9101, adminID, "/upload "+path))
	reply := w.waitSent(t, adminID, 1)[0].Params["text"]
	if want := "Cannot upload <b>huge.bin</b>: 3000.0 MiB is over the 2000 MiB limit for bots; a file over 2000 MiB needs a premium session: run ferry login"; reply != want {
		t.Fatalf("reply %q, want %q", reply, want)
	}
	if n := len(w.jobsOf(t, "upload")); n != 0 || w.mt.PartRequests() != 0 || len(w.mt.Posts()) != 0 {
		t.Fatalf("%d upload jobs, %d parts, %d posts after the refusal", n, w.mt.PartRequests(), len(w.mt.Posts()))
	}
	p.stop() // the embedded database admits one process

	if stdout, stderr, code := ferryLogin(t, w.env, e2eUser.Phone+"\n"+e2eUser.Code+"\n"+e2eUser.Password+"\n"); code != 0 {
		t.Fatalf("login: exit %d\n%s\n%s", code, stdout, stderr)
	}
	q := start(t, w.env, "serve")
	q.waitReady(t, time.Now())
	began := time.Now()
	w.post(t, q, w.secret, commandUpdate(9102, adminID, "/upload "+path))
	posts := w.waitPost(t, 1, 10*time.Minute)
	took := time.Since(began)
	time.Sleep(500 * time.Millisecond)
	posts = w.mt.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Size != size || posts[0].Parts != size/(512<<10) || !posts[0].Big {
		t.Fatalf("posts %+v, want one of %d bytes, sha256 %s", posts, int64(size), sum)
	}
	if up := w.mt.UserPosts(); len(up) != 1 || up[0].MessageID != posts[0].MessageID {
		t.Fatalf("the post was not made by the user account: %+v", up)
	}
	if n := w.mt.UserPartRequests(); n < size/(512<<10) || int64(n) != w.mt.PartRequests() {
		t.Fatalf("%d of %d part requests by the user account", n, w.mt.PartRequests())
	}
	waitFor(t, 30*time.Second, "final status", func() bool { return strings.Contains(w.lastEdit(), "Uploaded <b>huge.bin</b>") })
	t.Logf("3000 MiB through the premium session in %s (%.0f MB/s, from the command to the post)", took.Round(100*time.Millisecond),
		float64(size)/1e6/took.Seconds())
	if err := os.Remove(posts[0].Path); err != nil { // 3000 MiB of disk back at once
		t.Log(err)
	}
}
