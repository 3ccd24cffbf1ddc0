package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
	"github.com/ferry-dev/ferry/telegramtest"
)

const indexChannel = -1009876543210

// indexWorld is ferry with 11 bots long-polling the stand-in, indexing into
// Postgres and a real S3 server.
type indexWorld struct {
	*world
	s3     *r2test.Server
	store  *r2.Store
	tokens []string
	proc   *proc
}

func newIndexWorld(t *testing.T) *indexWorld {
	t.Helper()
	s3 := r2test.StartVersity(t)
	o := s3.Options()
	var tokens []string
	for i := 1; i <= 11; i++ {
		tokens = append(tokens, fmt.Sprintf("%d:AAH-index-bot-%02d-abcdefghijklmnopqrstu", 800000+i, i))
	}
	w := newWorld(t, map[string]string{
		"BOT_TOKENS": strings.Join(tokens, ","), "UPDATES_MODE": "poll", "WEBHOOK_SECRET": "",
		"PUBLIC_URL":  "https://ferry.example.org",
		"R2_ENDPOINT": o.Endpoint, "R2_BUCKET": o.Bucket, "R2_ACCESS_KEY_ID": o.AccessKeyID,
		"R2_SECRET_ACCESS_KEY": o.SecretAccessKey, "R2_FOLDER": "linkerz",
	})
	for _, tok := range tokens {
		w.tg.AddBot(tok)
	}
	w.tg.SetChat(models.Chat{ID: indexChannel, Type: models.ChatTypeChannel, Title: "Movies"})
	store, err := r2.New(o)
	if err != nil {
		t.Fatal(err)
	}
	iw := &indexWorld{world: w, s3: s3, store: store, tokens: tokens}
	iw.proc = start(t, w.env, "serve")
	iw.proc.waitReady(t, time.Now())
	return iw
}

// replies are the messages ferry sent into the channel.
func (iw *indexWorld) replies() []telegramtest.Call {
	var out []telegramtest.Call
	for _, c := range iw.tg.CallsTo("sendMessage") {
		if c.OK && c.Params["chat_id"] == fmt.Sprint(indexChannel) {
			out = append(out, c)
		}
	}
	return out
}

func (iw *indexWorld) waitObject(t *testing.T, uniqueID string, fileIDs int, within time.Duration) r2.Record {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rec, _, err := iw.store.Get(context.Background(), uniqueID)
		if err == nil && len(rec.BotFileIDs) == fileIDs {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("R2 object %s: %+v, %v (want %d file_ids)", uniqueID, rec, err, fileIDs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestIndexElevenBotsOneReplyOneObject(t *testing.T) {
	iw := newIndexWorld(t)
	spec := telegramtest.FileSpec{Kind: telegramtest.KindDocument, Name: "movie.mkv", MimeType: "video/x-matroska", Size: 1774606367, DC: 4, UniqueKey: "movie"}
	posted := iw.tg.PostFile(indexChannel, 0, spec, "movie.mkv", iw.tokens...)

	rec := iw.waitObject(t, posted.FileUniqueID, 11, 30*time.Second)
	for i, tok := range iw.tokens {
		if got := rec.BotFileIDs[fmt.Sprintf("b_%d_file_id", i+1)]; got != posted.FileIDs[tok] {
			t.Fatalf("b_%d_file_id = %q, want %q", i+1, got, posted.FileIDs[tok])
		}
	}
	if rec.UniqueID != posted.FileUniqueID || rec.FileSizeBytes != 1774606367 || rec.FileName != "movie.mkv" ||
		rec.MimeType != "video/x-matroska" || rec.SourceChannelID != indexChannel || rec.OriginalMessageID != int64(posted.MessageID) || rec.FileType != "document" {
		t.Fatalf("record %+v", rec)
	}
	time.Sleep(500 * time.Millisecond) // let any duplicate reply show itself
	replies := iw.replies()
	if len(replies) != 1 {
		t.Fatalf("%d replies to one post seen by 11 bots", len(replies))
	}
	text := plain(replies[0].Params["text"])
	for _, want := range []string{"File Stored Successfully", "movie.mkv", "1.65 GB", "video/x-matroska", "Location: DC 4"} {
		if !strings.Contains(text, want) {
			t.Fatalf("reply %q lacks %q", text, want)
		}
	}
	if !strings.Contains(replies[0].Params["reply_markup"], "https://ferry.example.org/f/"+posted.FileUniqueID) ||
		replies[0].Params["reply_parameters"] == "" {
		t.Fatalf("reply params %+v", replies[0].Params)
	}

	// The View button's page.
	page := httpGet(t, iw.proc.url("/f/"+posted.FileUniqueID))
	if !strings.Contains(page, "<h1>movie.mkv</h1>") || !strings.Contains(page, "1.65 GB") || !strings.Contains(page, "DC 4") {
		t.Fatalf("file page: %s", page)
	}
	if res, err := http.Get(iw.proc.url("/f/AgADnotthere")); err != nil || res.StatusCode != 404 {
		t.Fatalf("unknown file page: %v %v", res, err)
	}

	// The same file posted again: "File Already Exists", once.
	again := iw.tg.PostFile(indexChannel, 0, spec, "", iw.tokens[:3]...)
	if again.FileUniqueID != posted.FileUniqueID {
		t.Fatalf("stand-in gave a new unique id")
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(iw.replies()) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	replies = iw.replies()
	if len(replies) != 2 || !strings.Contains(plain(replies[1].Params["text"]), "File Already Exists") {
		t.Fatalf("second post: %d replies, last %q", len(replies), replies[len(replies)-1].Params["text"])
	}
	if n := iw.stats(t).Files; n != 1 {
		t.Fatalf("%d file rows", n)
	}
	// Sightings went through the intake to the drain, not a job per bot,
	// and none is left.
	if n := len(iw.jobsOf(t, "update")); n != 0 {
		t.Fatalf("%d update jobs for channel files", n)
	}
	drains := iw.jobsOf(t, "index_drain")
	if n := len(drains); n < 1 || n >= 14 {
		t.Fatalf("%d index_drain jobs for 14 sightings: %s", n, iw.jobs(t))
	}
	notDone := 0
	for _, j := range drains {
		if j.State != rivertype.JobStateCompleted {
			notDone++
		}
	}
	if notDone != 0 {
		t.Fatalf("%d index_drain jobs not completed: %s", notDone, iw.jobs(t))
	}
	if s := iw.stats(t); s.SightingsWaiting+s.SightingsFailed != 0 {
		t.Fatalf("%d sightings left unindexed, %d refused", s.SightingsWaiting, s.SightingsFailed)
	}
}

func TestIndexSurvivesS3Outage(t *testing.T) {
	iw := newIndexWorld(t)
	iw.s3.Stop()
	posted := iw.tg.PostFile(indexChannel, 0, telegramtest.FileSpec{Kind: telegramtest.KindVideo, Name: "clip.mp4", MimeType: "video/mp4", Size: 5 << 20, Duration: 12, Width: 1280, Height: 720}, "clip", iw.tokens[:2]...)
	deadline := time.Now().Add(20 * time.Second)
	for len(iw.replies()) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no reply while S3 is down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(iw.replies()[0].Params["text"], "File Stored Successfully") {
		t.Fatalf("reply %q", iw.replies()[0].Params["text"])
	}
	// The R2 write fails (after the SDK's own retries) and waits to retry.
	deadline = time.Now().Add(60 * time.Second)
	for !iw.failing(t, "r2_sync") {
		if time.Now().After(deadline) {
			t.Fatalf("no failing R2 job while S3 is down; jobs: %s", iw.jobs(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	iw.s3.Start()
	rec := iw.waitObject(t, posted.FileUniqueID, 2, 90*time.Second)
	if rec.FileType != "video" || rec.Caption != "clip" {
		t.Fatalf("record %+v", rec)
	}
}

// failing reports whether a job of kind has failed at least once and is
// still to be run again.
func (iw *indexWorld) failing(t *testing.T, kind string) bool {
	t.Helper()
	for _, j := range iw.jobsOf(t, kind, rivertype.JobStateRetryable, rivertype.JobStateAvailable,
		rivertype.JobStateRunning, rivertype.JobStateScheduled) {
		if len(j.Errors) > 0 {
			return true
		}
	}
	return false
}

// jobs describes every job, for a failure message.
func (iw *indexWorld) jobs(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for _, j := range iw.jobsOf(t, "") {
		fmt.Fprintf(&sb, "\n#%d %s %s attempt %d", j.ID, j.Kind, j.State, j.Attempt)
		for _, e := range j.Errors {
			fmt.Fprintf(&sb, " [attempt %d: %s]", e.Attempt, e.Error)
		}
	}
	return sb.String()
}

// plain is message text as the user sees it (HTML tags removed).
func plain(html string) string {
	return regexp.MustCompile(`<[^>]+>`).ReplaceAllString(html, "")
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	return string(b)
}
