package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// makeMP4 encodes a real MP4 (MPEG-4 video of noise, 640x360 at 25 fps, so
// that it is big: about 6.5 MiB a second) with its moov at the end, as
// ffmpeg writes it by default, and returns its sha256.
func makeMP4(t *testing.T, path string, seconds int) string {
	t.Helper()
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg is not installed (apt-get install ffmpeg): the relay tests need a real MP4 and the thumbnail: %v", err)
	}
	cmd := exec.Command(bin, "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc=s=640x360:r=25,geq=lum='random(1)*255':cb=128:cr=128",
		"-t", fmt.Sprint(seconds), "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// relayWorld is an upload world whose ferry process has a TMPDIR and a
// DATA_DIR of its own, to watch, and the target channel known to the Bot
// API stand-in.
type relayWorld struct {
	*uploadWorld
	tmp, data string
}

func newRelayWorld(t *testing.T) *relayWorld {
	t.Helper()
	w := &relayWorld{uploadWorld: newUploadWorld(t, nil), tmp: t.TempDir()}
	if w.env["DATA_DIR"] == "" {
		w.env["DATA_DIR"] = t.TempDir()
	}
	w.data = w.env["DATA_DIR"]
	w.env["TMPDIR"] = w.tmp
	w.tg.SetChat(models.Chat{ID: e2eChannel, Type: models.ChatTypeChannel, Title: "Films"})
	w.tg.SetChatAdmins(e2eChannel, e2eBotID)
	return w
}

// sendPrivately puts the file at path on the MTProto server as a document
// the admin sent the bot as message msgID, tells the Bot API stand-in about
// the message, and delivers its update to ferry's webhook. With expire,
// the file reference in the file_id has expired by the time ferry reads
// it (Telegram's references do expire).
func (w *relayWorld) sendPrivately(t *testing.T, p *proc, updateID int64, msgID int, path, name, mime, caption string, expire bool) *mtprototest.Doc {
	t.Helper()
	doc, err := w.mt.AddDocument(path, name, mime)
	if err != nil {
		t.Fatal(err)
	}
	w.mt.SendPrivately(doc, e2eBotID, adminID, msgID, caption)
	fileID := doc.FileID()
	if expire {
		w.mt.ExpireFileReferences()
	}
	msg := models.Message{
		ID: msgID, Date: int(time.Now().Unix()), Caption: caption,
		Chat: models.Chat{ID: adminID, Type: models.ChatTypePrivate, FirstName: "A"},
		From: &models.User{ID: adminID, FirstName: "A"},
		Document: &models.Document{FileID: fileID, FileUniqueID: fmt.Sprintf("AgAD%d", doc.ID%1e6), FileName: name,
			MimeType: mime, FileSize: doc.Size},
	}
	w.tg.StoreMessage(e2eToken, msg)
	raw, err := json.Marshal(models.Update{ID: updateID, Message: &msg})
	if err != nil {
		t.Fatal(err)
	}
	if code := w.post(t, p, w.secret, raw); code != 200 {
		t.Fatalf("webhook answered %d", code)
	}
	return doc
}

// dirWatch records every file that appears under some directories (or
// grows) while it runs, the embedded database's own files excepted.
type dirWatch struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen []string
}

func watchDirs(t *testing.T, dirs ...string) *dirWatch {
	t.Helper()
	snap := func() map[string]int64 {
		m := map[string]int64{}
		for _, d := range dirs {
			_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
				if err != nil || strings.HasPrefix(e.Name(), "ferry.db") {
					return nil
				}
				if info, err := e.Info(); err == nil {
					m[p] = info.Size()
				}
				return nil
			})
		}
		return m
	}
	before := snap()
	dw := &dirWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(dw.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			for p, size := range snap() {
				old, ok := before[p]
				if fi, err := os.Stat(p); ok && (size <= old || err != nil || fi.IsDir()) {
					continue // known, and not grown (a directory's size means nothing)
				}
				dw.mu.Lock()
				dw.seen = append(dw.seen, fmt.Sprintf("%s (%d bytes)", p, size))
				dw.mu.Unlock()
				before[p] = size
			}
			select {
			case <-dw.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return dw
}

// sees waits until the watch has recorded path at its full size (the
// watch's self-check), then forgets what it recorded. Waiting for the
// size, not just the name, matters: a tick can fall between os.WriteFile's
// create and its write, and the empty file's growth would otherwise be
// recorded again after the forgetting.
func (dw *dirWatch) sees(t *testing.T, path string, size int) {
	t.Helper()
	want := fmt.Sprintf("%s (%d bytes)", path, size)
	waitFor(t, 5*time.Second, "the directory watch to see "+want, func() bool {
		dw.mu.Lock()
		defer dw.mu.Unlock()
		for _, s := range dw.seen {
			if s == want {
				dw.seen = nil
				return true
			}
		}
		return false
	})
}

// written stops the watch and returns what was written.
func (dw *dirWatch) written() []string {
	close(dw.stop)
	<-dw.done
	dw.mu.Lock()
	defer dw.mu.Unlock()
	return dw.seen
}

// transcript is the Bot API calls the stand-in recorded, one line each,
// with the texts.
func (w *relayWorld) transcript() string {
	var b strings.Builder
	start := time.Time{}
	for _, c := range w.tg.Calls() {
		if c.Method == "setMyCommands" || c.Method == "getMe" || c.Method == "getUpdates" {
			continue
		}
		if start.IsZero() {
			start = c.Time
		}
		text := c.Params["text"]
		if text == "" {
			text = c.Params["caption"]
		}
		fmt.Fprintf(&b, "+%6.2fs %-16s ok=%-5v chat=%s msg=%s %q\n", c.Time.Sub(start).Seconds(), c.Method, c.OK,
			c.Params["chat_id"], c.Params["message_id"], strings.ReplaceAll(text, "\n", " | "))
	}
	return b.String()
}

// TestRelayPrivateVideoEndToEnd: a 52 MiB MP4 (moov at the end) that the
// admin sends the bot as a document, through the webhook, arrives in the
// channel as one streamable video post over MTProto: sha256-identical,
// duration/width/height from the file, a thumbnail, downloaded with
// upload.getFile from the file_id's own location after refreshing its
// expired file reference with messages.getMessages; nothing is written
// under DATA_DIR or the process's TMPDIR during the relay; one status
// message, edited, ends with the link; no copyMessage.
func TestRelayPrivateVideoEndToEnd(t *testing.T) {
	w := newRelayWorld(t)
	path := filepath.Join(w.root, "clip.mp4")
	sum := makeMP4(t, path, 8)
	fi, _ := os.Stat(path)
	if fi.Size() < 50<<20 {
		t.Fatalf("test video is %d bytes, want at least 50 MiB", fi.Size())
	}
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())

	watch := watchDirs(t, w.data, w.tmp)
	canary := filepath.Join(w.tmp, "canary")
	if err := os.WriteFile(canary, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	watch.sees(t, canary, 1)
	began := time.Now()
	w.sendPrivately(t, p, 7001, 41, path, "clip.mp4", "video/mp4", "", true)
	posts := w.waitPost(t, 1, 2*time.Minute)
	took := time.Since(began)
	waitFor(t, 20*time.Second, "final status", func() bool { return strings.Contains(w.lastEdit(), "Relayed") })
	written := watch.written()

	time.Sleep(300 * time.Millisecond)
	posts = w.mt.Posts()
	if len(posts) != 1 {
		t.Fatalf("%d posts, want 1: %+v", len(posts), posts)
	}
	post := posts[0]
	if post.SHA256 != sum || post.Size != fi.Size() || post.Name != "clip.mp4" || post.MimeType != "video/mp4" {
		t.Fatalf("post %+v, want sha256 %s, %d bytes", post, sum, fi.Size())
	}
	v := post.Video
	if v == nil || !v.SupportsStreaming || v.W != 640 || v.H != 360 || math.Abs(v.Duration-8) > 0.1 {
		t.Fatalf("video attribute %+v, want streamable 640x360, 8 s", v)
	}
	if !post.HasThumb {
		t.Fatal("no thumbnail, though ffmpeg is installed")
	}
	if len(written) != 0 {
		t.Fatalf("files written during the relay: %v", written)
	}
	if n := w.mt.Calls("messages.getMessages"); n < 1 {
		t.Fatalf("the expired reference was not refreshed with messages.getMessages (%d calls)", n)
	}
	if n := w.mt.Calls("channels.getMessages"); n != 0 {
		t.Fatalf("%d channels.getMessages for a private chat", n)
	}
	parts := int((fi.Size() + 512<<10 - 1) / (512 << 10))
	if n := w.mt.Calls("upload.getFile"); n < parts {
		t.Fatalf("%d getFile calls for %d chunks", n, parts)
	}
	if n, g := len(w.tg.CallsTo("copyMessage")), len(w.tg.CallsTo("getFile")); n != 0 || g != 0 {
		t.Fatalf("%d copyMessage and %d Bot API getFile calls for a relayed video (over 20 MB)", n, g)
	}
	// One status message, edited in place, ending with the post's link.
	status := w.sentTo(adminID)
	if len(status) != 1 || !strings.Contains(status[0].Params["text"], "Queued <b>clip.mp4</b>") {
		t.Fatalf("messages to the admin: %+v", status)
	}
	var res struct {
		MessageID int `json:"message_id"`
	}
	_ = json.Unmarshal(status[0].Result, &res)
	for _, e := range w.tg.CallsTo("editMessageText") {
		if e.Params["message_id"] != fmt.Sprint(res.MessageID) {
			t.Fatalf("an edit of another message: %+v", e.Params)
		}
	}
	last := w.tg.CallsTo("editMessageText")
	final := last[len(last)-1]
	if !strings.Contains(final.Params["text"], "Relayed <b>clip.mp4</b>") || !strings.Contains(final.Params["text"], "streamable video") ||
		!strings.Contains(final.Params["reply_markup"], fmt.Sprintf("https://t.me/c/1234567890/%d", post.MessageID)) {
		t.Fatalf("final status %+v", final.Params)
	}
	t.Logf("relayed %.1f MiB in %s (%.0f MB/s command to post), %d getFile calls\nBot API transcript:\n%s",
		float64(fi.Size())/(1<<20), took.Round(time.Millisecond), float64(fi.Size())/1e6/took.Seconds(), w.mt.Calls("upload.getFile"), w.transcript())
}

// TestPrivatePlainDocumentIsCopied: a document that is not a video goes by
// exactly one copyMessage, and nothing over MTProto.
func TestPrivatePlainDocumentIsCopied(t *testing.T) {
	w := newRelayWorld(t)
	path := filepath.Join(w.root, "notes.pdf")
	randomUploadFile(t, path, 3<<20, 5)
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.sendPrivately(t, p, 7101, 51, path, "notes.pdf", "application/pdf", "my notes", false)
	copies, err := w.tg.WaitCalls(ctxTimeout(t, 20*time.Second), "copyMessage", 1)
	if err != nil {
		t.Fatal(err)
	}
	c := copies[0]
	if !c.OK || c.Params["chat_id"] != fmt.Sprint(e2eChannel) || c.Params["from_chat_id"] != fmt.Sprint(adminID) || c.Params["message_id"] != "51" {
		t.Fatalf("copyMessage %+v", c)
	}
	replies := w.waitSent(t, adminID, 1)
	if !strings.Contains(replies[0].Params["text"], "Posted to the channel") {
		t.Fatalf("reply %q", replies[0].Params["text"])
	}
	time.Sleep(time.Second)
	if n := len(w.tg.CallsTo("copyMessage")); n != 1 {
		t.Fatalf("%d copyMessage calls", n)
	}
	if n, parts := len(w.mt.Posts()), w.mt.PartRequests(); n != 0 || parts != 0 || w.mt.Calls("upload.getFile") != 0 {
		t.Fatalf("MTProto was used for a plain document: %d posts, %d parts", n, parts)
	}
}

// TestRelayResumesAfterKill: ferry is killed (SIGKILL) in the middle of a
// relay and started again at once: the relay resumes within 15 s from the
// parts Telegram acknowledged (it does not start over), and the channel
// gets exactly one post, byte-identical and streamable.
func TestRelayResumesAfterKill(t *testing.T) {
	w := newRelayWorld(t)
	path := filepath.Join(w.root, "long.mp4")
	sum := makeMP4(t, path, 8)
	fi, _ := os.Stat(path)
	parts := int64((fi.Size() + 512<<10 - 1) / (512 << 10))
	// Each part costs a getFile and a saveBigFilePart of 80 ms: about 4 s
	// for the file with 4 in flight.
	w.mt.SetLatency(80 * time.Millisecond)
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.sendPrivately(t, p, 7201, 61, path, "long.mp4", "video/mp4", "#stream a long one", false)
	waitFor(t, 60*time.Second, "a third of the parts", func() bool { return w.mt.PartRequests() >= parts/3 })
	p.kill()
	time.Sleep(300 * time.Millisecond)
	atKill := w.mt.PartRequests()
	if atKill >= parts {
		t.Fatalf("all %d parts were sent before the kill", atKill)
	}
	restarted := time.Now()
	q := start(t, w.env, "serve")
	q.waitReady(t, restarted)
	took := waitFor(t, 15*time.Second, "parts resuming after the restart", func() bool { return w.mt.PartRequests() > atKill })
	t.Logf("relay resumed %s after the restart (%d of %d parts were in before the kill)", took.Round(10*time.Millisecond), atKill, parts)
	posts := w.waitPost(t, 1, 90*time.Second)
	time.Sleep(500 * time.Millisecond)
	if posts = w.mt.Posts(); len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Video == nil || !posts[0].Video.SupportsStreaming ||
		posts[0].Caption != "a long one" {
		t.Fatalf("posts %+v, want one streamable video of sha256 %s", posts, sum)
	}
	// Resumed, not started over: re-sent parts are at most those in flight
	// (and the thumbnail's part, once per attempt).
	if sent := w.mt.PartRequests(); sent > parts+10 {
		t.Fatalf("%d part requests for %d parts: the relay started over", sent, parts)
	}
	waitFor(t, 20*time.Second, "final status", func() bool { return strings.Contains(w.lastEdit(), "Relayed") })
	if n := len(w.sentTo(adminID)); n != 1 {
		t.Fatalf("%d status messages, want 1", n)
	}
}

// TestRelayVsUploadSpeed (FERRY_BENCH_RELAY=1, `make bench`): a 300 MiB
// MP4 relayed from a private message, then the same file by /upload from
// disk, in the same run: MB/s of each, command to post. FERRY_BENCH_LATENCY
// (e.g. 50ms) adds that latency to every getFile and part request.
func TestRelayVsUploadSpeed(t *testing.T) {
	if os.Getenv("FERRY_BENCH_RELAY") == "" {
		t.Skip("set FERRY_BENCH_RELAY=1 (make bench) to time a 300 MiB relay against /upload")
	}
	w := newRelayWorld(t)
	path := filepath.Join(w.root, "big.mp4")
	sum := makeMP4(t, path, 46)
	fi, _ := os.Stat(path)
	if l := os.Getenv("FERRY_BENCH_LATENCY"); l != "" {
		// Per request, as a far server: then what matters is whether
		// downloads overlap uploads, not CPU.
		d, err := time.ParseDuration(l)
		if err != nil {
			t.Fatal(err)
		}
		w.mt.SetLatency(d)
	}
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())

	began := time.Now()
	w.sendPrivately(t, p, 7301, 71, path, "big.mp4", "video/mp4", "", false)
	posts := w.waitPost(t, 1, 10*time.Minute)
	relay := time.Since(began)
	waitFor(t, 30*time.Second, "relay final status", func() bool { return strings.Contains(w.lastEdit(), "Relayed") })
	if posts[0].SHA256 != sum || posts[0].Video == nil {
		t.Fatalf("relay post %+v", posts[0])
	}
	transcript := w.transcript()

	began = time.Now()
	w.post(t, p, w.secret, commandUpdate(7302, adminID, "/upload "+path))
	posts = w.waitPost(t, 2, 10*time.Minute)
	upload := time.Since(began)
	if posts[1].SHA256 != sum {
		t.Fatalf("upload post %+v", posts[1])
	}
	mb := float64(fi.Size()) / 1e6
	t.Logf("%.1f MiB: relay %.1f MB/s (%s), /upload from disk %.1f MB/s (%s), command to post\nrelay transcript:\n%s",
		float64(fi.Size())/(1<<20), mb/relay.Seconds(), relay.Round(time.Millisecond), mb/upload.Seconds(), upload.Round(time.Millisecond), transcript)
}
