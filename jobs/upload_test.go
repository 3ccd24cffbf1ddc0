package jobs_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
	"github.com/ferry-dev/ferry/telegramtest"
)

// randomFile writes size pseudo-random bytes and returns their sha256.
func randomFile(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriter(io.MultiWriter(f, h))
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{7}), size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// uploadHarness is workers with MTProto on the local server, an upload
// root and a DATA_DIR of their own.
type uploadHarness struct {
	*harness
	mt   *mtprototest.Server
	root string
	data string
}

func startUploads(t *testing.T, configure ...func(*config.Config)) *uploadHarness {
	t.Helper()
	u := &uploadHarness{root: t.TempDir(), data: t.TempDir()}
	u.mt = mtprototest.New(t, mtprototest.Options{Dir: t.TempDir()})
	keyPath := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyPath, u.mt.PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	u.harness = startWorkers(t, func(d *jobs.Deps) {
		cfg := *d.Config
		cfg.APIID, cfg.APIHash, cfg.SessionKey = 17349, "test-hash", "session-key"
		cfg.MTProtoDCAddr, cfg.MTProtoPublicKey = u.mt.Addr(), keyPath
		cfg.UploadRoots, cfg.UploadThreads, cfg.DataDir = []string{u.root}, 4, u.data
		for _, f := range configure {
			f(&cfg)
		}
		d.Config = &cfg
		clients, err := jobs.NewMTProtoClients(&cfg, d.DB, d.Logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { clients.Close() })
		d.MTProto, d.UploadState = clients, mtproto.NewStateStore(d.DB)
	})
	return u
}

// waitPosts waits for n posts on the MTProto server.
func (u *uploadHarness) waitPosts(t *testing.T, n int, d time.Duration) []mtprototest.Post {
	t.Helper()
	for deadline := time.Now().Add(d); len(u.mt.Posts()) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d posts on the MTProto server, want %d; edits: %+v", len(u.mt.Posts()), n, u.tg.CallsTo("editMessageText"))
		}
	}
	return u.mt.Posts()
}

// waitEdit waits for an accepted edit of a status message containing want.
func (u *uploadHarness) waitEdit(t *testing.T, want string, d time.Duration) telegramtest.Call {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, e := range u.tg.CallsTo("editMessageText") {
			if e.OK && strings.Contains(e.Params["text"], want) {
				return e
			}
		}
	}
	var texts []string
	for _, e := range u.tg.CallsTo("editMessageText") {
		texts = append(texts, e.Params["text"])
	}
	t.Fatalf("no status edit with %q; edits: %q", want, texts)
	return telegramtest.Call{}
}

// TestUploadCommand: /upload of a 24 MiB file goes over MTProto to the local
// server, arrives byte-identical as one channel post, and the admin's status
// message ends with the result and a link to the post.
func TestUploadCommand(t *testing.T) {
	u := startUploads(t)
	h, mt, root := u.harness, u.mt, u.root
	path := filepath.Join(root, "big file.bin")
	sum := randomFile(t, path, 24<<20)

	// Refused at once: a missing file and one outside the roots.
	h.deliver(t, command(1, admin, "/upload "+filepath.Join(root, "nope.mp4")))
	if r := h.wait(t, "sendMessage", 1)[0]; !strings.Contains(r.Params["text"], "File not found") {
		t.Fatalf("missing file answer %q", r.Params["text"])
	}
	h.deliver(t, command(2, admin, "/upload /etc/passwd"))
	if r := h.wait(t, "sendMessage", 2)[1]; !strings.Contains(r.Params["text"], "outside the upload roots") {
		t.Fatalf("outside answer %q", r.Params["text"])
	}

	h.deliver(t, command(3, admin, fmt.Sprintf(`/upload "%s" my caption`, path)))
	status := h.wait(t, "sendMessage", 3)[2]
	if !strings.Contains(status.Params["text"], "Queued") || !strings.Contains(status.Params["text"], "24.00 MB") {
		t.Fatalf("status %q", status.Params["text"])
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(mt.Posts()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no post on the MTProto server; calls: %+v", h.tg.CallsTo("editMessageText"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	posts := mt.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Caption != "my caption" || posts[0].Name != "big file.bin" {
		t.Fatalf("posts %+v, want sha %s", posts, sum)
	}
	// The status message ends with the result and a link to the post.
	var last string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if edits := h.tg.CallsTo("editMessageText"); len(edits) > 0 {
			last = edits[len(edits)-1].Params["text"]
			if strings.Contains(last, "Uploaded") {
				link := edits[len(edits)-1].Params["reply_markup"]
				if !strings.Contains(link, fmt.Sprintf("https://t.me/c/1234567890/%d", posts[0].MessageID)) {
					t.Fatalf("link %s", link)
				}
				return
			}
		}
	}
	t.Fatalf("final status %q", last)
}

// fileServer serves path at /files/<name>: with Range support (ServeContent)
// or, without, as one plain 200 body. It counts the requests with a Range.
func fileServer(t *testing.T, path string, ranges bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var ranged atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		fi, _ := f.Stat()
		if !ranges {
			w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
			_, _ = io.Copy(w, f)
			return
		}
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	}))
	t.Cleanup(srv.Close)
	return srv, &ranged
}

// TestUploadFromURL: /upload http://… of a 200 MiB file from a local server
// with Range support arrives as one post, sha256-identical, fetched with
// Range requests and nothing written under DATA_DIR. With
// FERRY_COMPARE_DISK=1 the same file then goes by /upload <path>, for the
// two speeds side by side.
func TestUploadFromURL(t *testing.T) {
	u := startUploads(t, func(c *config.Config) { c.UploadURLAllow = []string{"127.0.0.1"} })
	path := filepath.Join(u.root, "film.mkv")
	const size = 200 << 20
	sum := randomFile(t, path, size)
	srv, ranged := fileServer(t, path, true)

	began := time.Now()
	u.deliver(t, command(1, admin, "/upload "+srv.URL+"/files/film.mkv?sig=abc from the web"))
	if r := u.wait(t, "sendMessage", 1)[0]; !strings.Contains(r.Params["text"], "Queued") || strings.Contains(r.Params["text"], "sig=abc") {
		t.Fatalf("status %q", r.Params["text"])
	}
	posts := u.waitPosts(t, 1, 2*time.Minute)
	fromURL := time.Since(began)
	if posts[0].SHA256 != sum || posts[0].Name != "film.mkv" || posts[0].Caption != "from the web" || posts[0].Size != size {
		t.Fatalf("post %+v, want sha256 %s", posts[0], sum)
	}
	// 100 chunks of 2 MiB plus the probe.
	if n := ranged.Load(); n < 100 {
		t.Fatalf("%d range requests", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(u.data, "tmp")); len(entries) != 0 {
		t.Fatalf("files left in DATA_DIR/tmp: %v", entries)
	}
	u.waitEdit(t, "Uploaded <b>film.mkv</b>", 15*time.Second)
	if os.Getenv("FERRY_COMPARE_DISK") == "" {
		t.Logf("200 MiB from a URL: %.0f MB/s (%s), command to post; FERRY_COMPARE_DISK=1 times /upload <path> of it too",
			float64(size)/1e6/fromURL.Seconds(), fromURL.Round(time.Millisecond))
		return
	}

	began = time.Now()
	u.deliver(t, command(2, admin, "/upload "+path))
	posts = u.waitPosts(t, 2, 2*time.Minute)
	fromDisk := time.Since(began)
	if posts[1].SHA256 != sum {
		t.Fatalf("disk upload sha256 %s, want %s", posts[1].SHA256, sum)
	}
	mb := float64(size) / 1e6
	t.Logf("200 MiB: from a URL %.0f MB/s (%s), from disk %.0f MB/s (%s), command to post",
		mb/fromURL.Seconds(), fromURL.Round(time.Millisecond), mb/fromDisk.Seconds(), fromDisk.Round(time.Millisecond))
}

// TestUploadFromURLWithoutRange: a server that ignores Range: the file is
// spooled in DATA_DIR/tmp while it uploads, arrives intact, and the spool
// is deleted.
func TestUploadFromURLWithoutRange(t *testing.T) {
	u := startUploads(t, func(c *config.Config) { c.UploadURLAllow = []string{"127.0.0.0/8"} })
	path := filepath.Join(u.root, "plain.bin")
	sum := randomFile(t, path, 24<<20+5)
	srv, ranged := fileServer(t, path, false)
	u.deliver(t, command(1, admin, "/upload "+srv.URL+"/files/plain.bin"))
	posts := u.waitPosts(t, 1, time.Minute)
	if len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Name != "plain.bin" {
		t.Fatalf("posts %+v", posts)
	}
	if n := ranged.Load(); n != 0 {
		t.Fatalf("%d range requests to a server without Range", n)
	}
	u.waitEdit(t, "Uploaded", 15*time.Second)
	if entries, _ := os.ReadDir(filepath.Join(u.data, "tmp")); len(entries) != 0 {
		t.Fatalf("spool left in DATA_DIR/tmp: %v", entries)
	}
}

// TestUploadURLRefused: without UPLOAD_URL_ALLOW a URL to 127.0.0.1 is
// refused at once, and one whose name resolves to it when it is dialled;
// the server sees no request and nothing is posted.
func TestUploadURLRefused(t *testing.T) {
	u := startUploads(t)
	path := filepath.Join(u.root, "secret.bin")
	randomFile(t, path, 1<<20)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.ServeFile(w, r, path)
	}))
	defer srv.Close()
	u.deliver(t, command(1, admin, "/upload "+srv.URL+"/secret.bin"))
	if r := u.wait(t, "sendMessage", 1)[0]; !strings.Contains(r.Params["text"], "Cannot fetch") || !strings.Contains(r.Params["text"], "UPLOAD_URL_ALLOW") {
		t.Fatalf("answer %q", r.Params["text"])
	}
	byName := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	u.deliver(t, command(2, admin, "/upload "+byName+"/secret.bin"))
	u.waitEdit(t, "Cannot fetch", 30*time.Second)
	if n := hits.Load(); n != 0 || len(u.mt.Posts()) != 0 {
		t.Fatalf("%d requests reached the server, %d posts", n, len(u.mt.Posts()))
	}
	u.waitJobs(t, rivertype.JobStateCancelled, 1)
}

// waitJobs waits until n upload jobs are in state (River records outcomes
// asynchronously).
func (u *uploadHarness) waitJobs(t *testing.T, state rivertype.JobState, n int) []*rivertype.JobRow {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		jobs := dbtest.Jobs(t, u.db, "upload", state)
		if len(jobs) == n {
			return jobs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d upload jobs %s, want %d", len(jobs), state, n)
		}
	}
}

// TestCancelRunningUpload: Cancel pressed while parts are being sent stops
// the upload: no post, and the status says it was cancelled.
func TestCancelRunningUpload(t *testing.T) {
	u := startUploads(t)
	path := filepath.Join(u.root, "long.bin")
	randomFile(t, path, 48<<20)
	u.mt.SetLatency(150 * time.Millisecond) // 96 parts, 4 in flight: about 4 s
	u.deliver(t, command(1, admin, "/upload "+path))
	for deadline := time.Now().Add(30 * time.Second); u.mt.PartRequests() < 8; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upload did not start")
		}
	}
	running := dbtest.Jobs(t, u.db, "upload", rivertype.JobStateRunning)
	if len(running) != 1 {
		t.Fatalf("%d running uploads", len(running))
	}
	u.deliver(t, models.Update{ID: 2, CallbackQuery: &models.CallbackQuery{
		ID: "2", From: models.User{ID: admin}, Data: fmt.Sprintf("cancel:%d", running[0].ID),
	}})
	u.waitEdit(t, "Cancelled the upload of <b>long.bin</b>", 30*time.Second)
	parts := u.mt.PartRequests()
	time.Sleep(time.Second)
	if n := len(u.mt.Posts()); n != 0 {
		t.Fatalf("%d posts after a cancel", n)
	}
	if parts >= 96 || u.mt.PartRequests() > parts+4 {
		t.Fatalf("parts kept going after the cancel: %d then %d", parts, u.mt.PartRequests())
	}
	u.waitJobs(t, rivertype.JobStateCancelled, 1)
}
