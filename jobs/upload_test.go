package jobs_test

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

	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
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

// TestUploadCommand: /upload of a 24 MiB file goes over MTProto to the local
// server, arrives byte-identical as one channel post, and the admin's status
// message ends with the result and a link to the post.
func TestUploadCommand(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "big file.bin")
	sum := randomFile(t, path, 24<<20)
	mt := mtprototest.New(t, mtprototest.Options{Dir: t.TempDir()})
	keyPath := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyPath, mt.PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startWorkers(t, func(d *jobs.Deps) {
		cfg := *d.Config
		cfg.APIID, cfg.APIHash, cfg.SessionKey = 17349, "test-hash", "session-key"
		cfg.MTProtoDCAddr, cfg.MTProtoPublicKey = mt.Addr(), keyPath
		cfg.UploadRoots, cfg.UploadThreads = []string{root}, 4
		d.Config = &cfg
		clients, err := jobs.NewMTProtoClients(&cfg, d.DB, d.Logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { clients.Close() })
		d.MTProto, d.UploadState = clients, mtproto.NewStateStore(d.DB)
	})

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
