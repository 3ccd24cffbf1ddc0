package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
	"github.com/ferry-dev/ferry/telegramtest"
)

// TestEmbeddedFromAnEmptyDirectory runs the binary as a newcomer would: an
// empty directory, a bot token, the Bot API's address and an admin, no
// database server, no R2, no public URL. ferry makes its database in
// ./data, long-polls, answers /start, indexes a channel post with the right
// DC and keeps its record in the seed's format under ./data/r2. Killed with
// SIGKILL and started again, it still knows the file: a repost is "File
// Already Exists" and /find finds it. A second process on the same
// directory is refused while the first runs.
func TestEmbeddedFromAnEmptyDirectory(t *testing.T) {
	const token, admin, channel = "700200:AAH-embedded-token-0123456789abcdefgh", int64(4343), int64(-1002222333444)
	tg := telegramtest.NewServer(t)
	tg.AddBot(token)
	tg.SetChat(models.Chat{ID: channel, Type: models.ChatTypeChannel, Title: "Films"})
	dir := t.TempDir()
	env := map[string]string{"BOT_TOKENS": token, "BOT_API_URL": tg.URL(), "ADMIN_IDS": fmt.Sprint(admin)}
	sent := func(chatID int64) []string {
		var out []string
		for _, c := range tg.CallsTo("sendMessage") {
			if c.OK && c.Params["chat_id"] == fmt.Sprint(chatID) {
				out = append(out, plain(c.Params["text"]))
			}
		}
		return out
	}
	waitSent := func(chatID int64, n int) []string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got := sent(chatID); len(got) >= n {
				return got
			}
		}
		t.Fatalf("want %d messages to chat %d, got %q", n, chatID, sent(chatID))
		return nil
	}

	p := startIn(t, dir, env, "serve")
	p.waitReady(t, time.Now())
	if _, err := os.Stat(filepath.Join(dir, "data", "ferry.db")); err != nil {
		t.Fatalf("no embedded database: %v", err)
	}
	tg.PushMessage(token, admin, admin, "/start")
	if got := waitSent(admin, 1); !strings.Contains(got[0], "ferry") {
		t.Fatalf("/start answered %q", got[0])
	}

	spec := telegramtest.FileSpec{Kind: telegramtest.KindDocument, Name: "film.mkv", MimeType: "video/x-matroska", Size: 734003200, DC: 4, UniqueKey: "film"}
	posted := tg.PostFile(channel, 0, spec, "a film", token)
	reply := waitSent(channel, 1)[0]
	for _, want := range []string{"File Stored Successfully", "film.mkv", "700.00 MB", "Location: DC 4"} {
		if !strings.Contains(reply, want) {
			t.Fatalf("reply %q lacks %q", reply, want)
		}
	}
	record := filepath.Join(dir, "data", "r2", "linkerz", posted.FileUniqueID+".json")
	var raw []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if raw, err = os.ReadFile(record); err == nil || time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("local record: %v", err)
			}
			break
		}
	}
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("record %s: %v", raw, err)
	}
	want := map[string]any{"unique_id": posted.FileUniqueID, "bot_file_ids": map[string]any{"b_1_file_id": posted.FileIDs[token]},
		"caption": "a film", "file_size_bytes": float64(734003200), "file_type": "document", "original_message_id": float64(posted.MessageID),
		"source_channel_id": float64(channel), "file_name": "film.mkv", "mime_type": "video/x-matroska"}
	for k, v := range want {
		if fmt.Sprint(rec[k]) != fmt.Sprint(v) {
			t.Fatalf("record %s: %s = %v, want %v", raw, k, rec[k], v)
		}
	}

	// One ferry per directory.
	second := exec.Command(binary, "serve")
	second.Dir = dir
	second.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + fmt.Sprint(freePort(t)), "BOT_TOKENS=" + token, "BOT_API_URL=" + tg.URL()}
	if out, err := second.CombinedOutput(); err == nil || !strings.Contains(string(out), "another ferry is using data/ferry.db") {
		t.Fatalf("second ferry on the same directory: %v\n%s", err, out)
	}

	p.kill() // SIGKILL: no shutdown of any kind
	p = startIn(t, dir, env, "serve")
	p.waitReady(t, time.Now())
	tg.PostFile(channel, 0, spec, "", token)
	if got := waitSent(channel, 2); !strings.Contains(got[1], "File Already Exists") {
		t.Fatalf("repost after the restart: %q", got[1])
	}
	tg.PushMessage(token, admin, admin, "/find film")
	if got := waitSent(admin, 2); !strings.Contains(got[1], "film.mkv") || !strings.Contains(got[1], "/get "+posted.FileUniqueID) {
		t.Fatalf("/find after the restart: %q", got[1])
	}

	// Later a bucket is configured: `ferry r2 sync` copies the local record
	// to it byte for byte.
	p.stop()
	o := r2test.StartVersity(t).Options()
	sync := exec.Command(binary, "r2", "sync")
	sync.Dir = dir
	sync.Env = []string{"PATH=" + os.Getenv("PATH"), "BOT_TOKENS=" + token, "R2_ENDPOINT=" + o.Endpoint, "R2_BUCKET=" + o.Bucket,
		"R2_ACCESS_KEY_ID=" + o.AccessKeyID, "R2_SECRET_ACCESS_KEY=" + o.SecretAccessKey}
	out, err := sync.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 local records copied") {
		t.Fatalf("r2 sync: %v\n%s", err, out)
	}
	store, err := r2.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.GetRaw(context.Background(), posted.FileUniqueID); err != nil || string(got) != string(raw) {
		t.Fatalf("bucket object %s (%v), want the local record %s", got, err, raw)
	}
}
