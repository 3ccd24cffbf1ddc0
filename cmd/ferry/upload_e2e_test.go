package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

const e2eChannel = -1001234567890

// uploadWorld is a world with the local MTProto server (in this process;
// ferry reaches it at MTPROTO_DC_ADDR) and an upload root.
type uploadWorld struct {
	*world
	mt   *mtprototest.Server
	root string
}

func newUploadWorld(t *testing.T, extra map[string]string) *uploadWorld {
	t.Helper()
	mt := mtprototest.New(t, mtprototest.Options{})
	root := t.TempDir()
	env := map[string]string{
		"API_ID": "17349", "API_HASH": "e2e-hash", "SESSION_KEY": "e2e-session-key",
		"MTPROTO_DC_ADDR": mt.Addr(), "MTPROTO_PUBLIC_KEY": mt.KeyPath(),
		"CHANNEL_ID": fmt.Sprint(e2eChannel), "UPLOAD_ROOTS": root, "UPLOAD_THREADS": "4",
	}
	for k, v := range extra {
		env[k] = v
	}
	return &uploadWorld{world: newWorld(t, env), mt: mt, root: root}
}

// randomUploadFile writes size pseudo-random bytes to path and returns their sha256.
func randomUploadFile(t testing.TB, path string, size int64, seed byte) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{seed}), size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// waitPost waits for n posts on the MTProto server.
func (w *uploadWorld) waitPost(t testing.TB, n int, d time.Duration) []mtprototest.Post {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%d posts on the MTProto server", n), func() bool { return len(w.mt.Posts()) >= n })
	return w.mt.Posts()
}

// lastEdit is the text of the last accepted edit of the admin's status message.
func (w *uploadWorld) lastEdit() string {
	edits := w.tg.CallsTo("editMessageText")
	for i := len(edits) - 1; i >= 0; i-- {
		if edits[i].OK {
			return edits[i].Params["text"]
		}
	}
	return ""
}

// TestUploadResumesWithinSecondsOfACrash: ferry is killed (SIGKILL) in the
// middle of an upload and started again at once; the upload's parts resume
// at the MTProto server within 15 s of the restart (River's own rescue
// would take over three minutes), it resumes rather than starts over, and
// the channel gets exactly one post, byte-identical.
func TestUploadResumesWithinSecondsOfACrash(t *testing.T) {
	w := newUploadWorld(t, nil)
	path := filepath.Join(w.root, "crash.bin")
	const size = 64 << 20
	sum := randomUploadFile(t, path, size, 3)
	const parts = size / (512 << 10)
	// 100 ms per part, 4 in flight: about 3 s for the file.
	w.mt.SetLatency(100 * time.Millisecond)

	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.post(t, p, w.secret, commandUpdate(9001, adminID, "/upload "+path))
	waitFor(t, 30*time.Second, "a third of the parts", func() bool { return w.mt.PartRequests() >= parts/3 })
	p.kill()
	// Requests the server had already taken are answered into the void.
	time.Sleep(300 * time.Millisecond)
	atKill := w.mt.PartRequests()
	if atKill >= parts {
		t.Fatalf("all %d parts were sent before the kill", atKill)
	}

	restarted := time.Now()
	q := start(t, w.env, "serve")
	q.waitReady(t, restarted)
	took := waitFor(t, 15*time.Second, "parts resuming after the restart", func() bool { return w.mt.PartRequests() > atKill })
	t.Logf("parts resumed %s after the restart (%d of %d parts were in before the kill)", took.Round(10*time.Millisecond), atKill, parts)

	posts := w.waitPost(t, 1, 60*time.Second)
	time.Sleep(500 * time.Millisecond)
	if posts = w.mt.Posts(); len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Name != "crash.bin" {
		t.Fatalf("posts %+v, want one of sha256 %s", posts, sum)
	}
	// Resumed, not started over: parts re-sent are at most those in flight.
	if sent := w.mt.PartRequests(); sent > parts+8 {
		t.Fatalf("%d part requests for %d parts: the upload started over", sent, parts)
	}
	if !strings.Contains(q.logs(), "handed back") {
		t.Fatalf("the restarted process did not hand the job back:\n%s", q.logs())
	}
	waitFor(t, 15*time.Second, "final status", func() bool { return strings.Contains(w.lastEdit(), "Uploaded") })
}
