package jobs_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// sendPrivately makes the file at path a document the admin sent bot 111
// as message msgID (on the MTProto server and the Bot API stand-in) and
// delivers the update. kind "video" sends it as a video, else a document.
func (u *uploadHarness) sendPrivately(t *testing.T, msgID int, path, name, mime, caption, kind string) *mtprototest.Doc {
	t.Helper()
	doc, err := u.mt.AddDocument(path, name, mime)
	if err != nil {
		t.Fatal(err)
	}
	u.mt.SendPrivately(doc, 111, admin, msgID, caption)
	msg := models.Message{
		ID: msgID, Date: int(time.Now().Unix()), Caption: caption,
		Chat: models.Chat{ID: admin, Type: models.ChatTypePrivate}, From: &models.User{ID: admin, FirstName: "A"},
	}
	unique := fmt.Sprintf("AgAD%d", doc.ID%1e6)
	if kind == "video" {
		msg.Video = &models.Video{FileID: doc.FileID(), FileUniqueID: unique, FileName: name, MimeType: mime, FileSize: doc.Size, Width: 1, Height: 1, Duration: 1}
	} else {
		msg.Document = &models.Document{FileID: doc.FileID(), FileUniqueID: unique, FileName: name, MimeType: mime, FileSize: doc.Size}
	}
	u.tg.StoreMessage(workerToken, msg)
	u.deliver(t, models.Update{ID: int64(msgID), Message: &msg})
	return doc
}

func (u *uploadHarness) channel() {
	u.tg.SetChat(models.Chat{ID: channel, Type: models.ChatTypeChannel, Title: "Files"})
	u.tg.SetChatAdmins(channel, 111)
}

// TestStreamTagRelaysAnyDocument: "#stream" in the caption of a document
// that is not a video still relays it over MTProto (24 MiB, over the Bot
// API's 20 MB getFile limit; the Bot API's getFile is never called). It
// cannot be probed as a video, so it is posted as a document, byte-
// identical, with the tag taken out of the caption, and the status says so.
func TestStreamTagRelaysAnyDocument(t *testing.T) {
	u := startUploads(t)
	u.channel()
	path := filepath.Join(u.root, "data.bin")
	sum := randomFile(t, path, 24<<20+17)
	u.sendPrivately(t, 20, path, "data.bin", "application/octet-stream", "#stream raw dump", "document")
	posts := u.waitPosts(t, 1, time.Minute)
	if p := posts[0]; p.SHA256 != sum || p.Video != nil || p.Caption != "raw dump" || p.Name != "data.bin" {
		t.Fatalf("post %+v, want a document of sha256 %s captioned %q", p, sum, "raw dump")
	}
	final := u.waitEdit(t, "Relayed <b>data.bin</b>", 15*time.Second)
	if !strings.Contains(final.Params["text"], "as a document (not a video") {
		t.Fatalf("final status %q", final.Params["text"])
	}
	if n := len(u.tg.CallsTo("copyMessage")) + len(u.tg.CallsTo("getFile")); n != 0 {
		t.Fatalf("%d copyMessage/getFile Bot API calls for a relay", n)
	}
	u.waitJobsOf(t, "relay", rivertype.JobStateCompleted, 1)
}

// TestVideoAsVideoIsCopied: a video sent as a video (no #stream) is
// already streamable: one copyMessage, nothing over MTProto. A video
// document over the bots' 2000 MiB limit is refused before any job.
func TestVideoAsVideoIsCopied(t *testing.T) {
	u := startUploads(t)
	u.channel()
	path := filepath.Join(u.root, "clip.mp4")
	randomFile(t, path, 1<<20)
	u.sendPrivately(t, 30, path, "clip.mp4", "video/mp4", "as is", "video")
	if c := u.wait(t, "copyMessage", 1)[0]; !c.OK || c.Params["message_id"] != "30" {
		t.Fatalf("copyMessage %+v", c)
	}
	if r := u.wait(t, "sendMessage", 1)[0]; !strings.Contains(r.Params["text"], "Posted to the channel") {
		t.Fatalf("reply %q", r.Params["text"])
	}

	huge := models.Message{ID: 31, Date: int(time.Now().Unix()), Chat: models.Chat{ID: admin, Type: models.ChatTypePrivate},
		From:     &models.User{ID: admin, FirstName: "A"},
		Document: &models.Document{FileID: "BQACAgQAAx0", FileUniqueID: "AgADhuge", FileName: "huge.mkv", MimeType: "video/x-matroska", FileSize: 3000 << 20}}
	u.tg.StoreMessage(workerToken, huge)
	u.deliver(t, models.Update{ID: 31, Message: &huge})
	// Over the 2000 MiB a bot can upload: copied by reference instead,
	// and the reply says why it is not streamable.
	if c := u.wait(t, "copyMessage", 2)[1]; !c.OK || c.Params["message_id"] != "31" {
		t.Fatalf("copyMessage of the huge video %+v", c)
	}
	if r := u.wait(t, "sendMessage", 2)[1]; !strings.Contains(r.Params["text"], "Posted to the channel as it came, not as a streamable video") || !strings.Contains(r.Params["text"], "2000 MiB") {
		t.Fatalf("reply to the huge video %q", r.Params["text"])
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(u.tg.CallsTo("copyMessage")); n != 2 || len(u.mt.Posts()) != 0 || u.mt.Calls("upload.getFile") != 0 {
		t.Fatalf("%d copies, %d MTProto posts, %d getFile", n, len(u.mt.Posts()), u.mt.Calls("upload.getFile"))
	}
	if n := len(dbtest.Jobs(t, u.db, "relay")); n != 0 {
		t.Fatalf("%d relay jobs", n)
	}
}

// TestCancelRunningRelay: Cancel pressed while a relay is moving parts
// stops it: no post, the status says cancelled, the job is cancelled.
func TestCancelRunningRelay(t *testing.T) {
	u := startUploads(t)
	u.channel()
	path := filepath.Join(u.root, "long.mkv")
	randomFile(t, path, 48<<20)
	u.mt.SetLatency(100 * time.Millisecond) // getFile and part: 200 ms a part, 4 in flight
	u.sendPrivately(t, 40, path, "long.mkv", "video/x-matroska", "", "document")
	for deadline := time.Now().Add(30 * time.Second); u.mt.PartRequests() < 8; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not start; edits %+v", u.tg.CallsTo("editMessageText"))
		}
	}
	running := dbtest.Jobs(t, u.db, "relay", rivertype.JobStateRunning)
	if len(running) != 1 {
		t.Fatalf("%d running relays", len(running))
	}
	// /bots counts the running relay against the bot whose session moves it.
	bots := models.Message{ID: 42, Date: int(time.Now().Unix()), Chat: models.Chat{ID: admin, Type: models.ChatTypePrivate},
		From: &models.User{ID: admin, FirstName: "A"}, Text: "/bots"}
	u.deliver(t, models.Update{ID: 42, Message: &bots})
	if r := u.wait(t, "sendMessage", 2)[1].Params["text"]; !strings.Contains(r, "b_1: 111 @bot111_bot — 0 sends, 0 failed; 0 sends, 1 upload in flight") {
		t.Fatalf("/bots during a relay: %q", r)
	}
	u.deliver(t, models.Update{ID: 41, CallbackQuery: &models.CallbackQuery{
		ID: "41", From: models.User{ID: admin}, Data: fmt.Sprintf("cancel:%d", running[0].ID),
	}})
	u.waitEdit(t, "Cancelled the relay of <b>long.mkv</b>", 30*time.Second)
	parts := u.mt.PartRequests()
	time.Sleep(time.Second)
	if n := len(u.mt.Posts()); n != 0 {
		t.Fatalf("%d posts after a cancel", n)
	}
	if parts >= 96 || u.mt.PartRequests() > parts+4 {
		t.Fatalf("parts kept going after the cancel: %d then %d", parts, u.mt.PartRequests())
	}
	u.waitJobsOf(t, "relay", rivertype.JobStateCancelled, 1)
}

// waitJobsOf waits until n jobs of kind are in state.
func (u *uploadHarness) waitJobsOf(t *testing.T, kind string, state rivertype.JobState, n int) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if got := len(dbtest.Jobs(t, u.db, kind, state)); got == n {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%d %s jobs %s, want %d", got, kind, state, n)
		}
	}
}
