package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/mtproto/mtprototest"
	"github.com/ferry-dev/ferry/telegramtest"
)

// series is a /metrics scrape: each sample line's series (name and
// labels, as printed) and value.
type series map[string]float64

func scrape(t *testing.T, p *proc) series {
	t.Helper()
	res, err := http.Get(p.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/metrics: %d", res.StatusCode)
	}
	out := series{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the samples of name whose labels include every one of labels
// (`kind="command"`).
func (s series) sum(name string, labels ...string) float64 {
	var n float64
	for k, v := range s {
		base, rest, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			n += v
		}
	}
	return n
}

// TestMetricsAndOpsCommands: a real `ferry serve` against the Bot API
// stand-in and the local MTProto server takes a few commands (one reply
// refused with 429, one with 502), a channel file and an upload whose
// parts meet a 500 and a FLOOD_WAIT; /bots during the upload shows it in
// flight; /stats after shows the bytes uploaded, and still does after a
// restart; /metrics shows every family moving by the amounts that
// happened.
func TestMetricsAndOpsCommands(t *testing.T) {
	const channel = -1001234567890
	const second = adminID + 1 // a second admin: its chat is not paced by the upload's edits
	mt := mtprototest.New(t, mtprototest.Options{Latency: 500 * time.Millisecond})
	mt.InjectFaults(
		mtprototest.Fault{Method: mtprototest.MethodUploadPart, Kind: mtprototest.Internal, Rate: 1, Max: 1, AfterParts: 2},
		mtprototest.Fault{Method: mtprototest.MethodUploadPart, Kind: mtprototest.FloodWait, Rate: 1, Seconds: 1, Max: 1, AfterParts: 4},
	)
	root := t.TempDir()
	const size = 4 << 20 // 8 parts of 512 KiB
	path := filepath.Join(root, "clip.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w := newWorld(t, map[string]string{
		"ADMIN_IDS": fmt.Sprintf("%d,%d", adminID, second), "PUBLIC_URL": "https://ferry.example.org",
		"API_ID": "17349", "API_HASH": "test-hash", "SESSION_KEY": "metrics-session-key",
		"MTPROTO_DC_ADDR": mt.Addr(), "MTPROTO_PUBLIC_KEY": mt.KeyPath(),
		"UPLOAD_ROOTS": root, "UPLOAD_THREADS": "2", "CHANNEL_ID": fmt.Sprint(channel),
	})
	w.tg.SetChat(models.Chat{ID: channel, Type: models.ChatTypeChannel, Title: "Files"})
	w.tg.SetChatAdmins(channel, e2eBotID)
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())

	// Commands: the first reply is refused with 429 (snoozed), the next
	// with 502 (failed, retried).
	w.tg.FailNext("sendMessage", 1, telegramtest.TooManyRequests(1))
	w.tg.FailNext("sendMessage", 1, telegramtest.ServerError(502))
	w.post(t, p, w.secret, commandUpdate(1, userID, "/start"))
	w.post(t, p, w.secret, commandUpdate(2, userID, "/help"))
	w.waitSent(t, userID, 2)

	// A channel file: indexed, answered once, its record written.
	ref := w.tg.AddFile(e2eToken, telegramtest.FileSpec{Kind: telegramtest.KindDocument, Name: "notes.pdf", MimeType: "application/pdf", Size: 123456, UniqueKey: "notes"})
	post := fmt.Sprintf(`{"update_id":3,"channel_post":{"message_id":40,"date":%d,"chat":{"id":%d,"type":"channel","title":"Files"},"document":{"file_id":%q,"file_unique_id":%q,"file_name":"notes.pdf","mime_type":"application/pdf","file_size":123456}}}`,
		time.Now().Unix(), channel, ref.FileID, ref.FileUniqueID)
	if code := w.post(t, p, w.secret, []byte(post)); code != 200 {
		t.Fatalf("channel post: %d", code)
	}
	if r := w.waitSent(t, channel, 1)[0]; !strings.Contains(r.Params["text"], "File Stored Successfully") {
		t.Fatalf("index reply %q", r.Params["text"])
	}

	// The upload; /bots while it runs.
	w.post(t, p, w.secret, commandUpdate(4, adminID, "/upload "+path))
	for deadline := time.Now().Add(30 * time.Second); len(w.jobsOf(t, "upload", rivertype.JobStateRunning)) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the upload never ran: %v", w.jobsOf(t, "upload"))
		}
	}
	w.post(t, p, w.secret, commandUpdate(5, second, "/bots"))
	bots := w.waitSent(t, second, 1)[0].Params["text"]
	if !regexp.MustCompile(`^<b>Bots</b>\nb_1: 700100 @\w+ — \d+ sends, 0 failed; \d+ sends?, 1 upload in flight; no webhook set\n$`).MatchString(bots) {
		t.Fatalf("/bots during the upload:\n%s", bots)
	}
	var final string
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(final, "Uploaded"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no final upload status; last %q", final)
		}
		if edits := w.tg.CallsTo("editMessageText"); len(edits) > 0 {
			final = edits[len(edits)-1].Params["text"]
		}
	}
	if posts := mt.Posts(); len(posts) != 1 || posts[0].Size != size {
		t.Fatalf("posts %+v", posts)
	}
	uploaded := "\n<b>Uploads</b>: 1 file, 4.00 MB uploaded\n<b>Uptime</b>: "
	w.post(t, p, w.secret, commandUpdate(6, second, "/stats"))
	if stats := w.waitSent(t, second, 2)[1].Params["text"]; !strings.Contains(stats, uploaded) || !strings.Contains(stats, "<b>Index</b>: 1 files") {
		t.Fatalf("/stats after the upload:\n%s", stats)
	}

	// Job results arrive from River's events a little after the jobs end:
	// scrape until every family shows what happened, or give up.
	var m series
	var wrong []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		m = scrape(t, p)
		if wrong = checkFamilies(m, size); len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics after the run:\n%s\nscrape: %v", strings.Join(wrong, "\n"), m)
		}
	}

	// Restarted, ferry still knows what it uploaded.
	p.stop()
	p = start(t, w.env, "serve")
	p.waitReady(t, time.Now())
	w.post(t, p, w.secret, commandUpdate(7, second, "/stats"))
	if stats := w.waitSent(t, second, 3)[2].Params["text"]; !strings.Contains(stats, uploaded) {
		t.Fatalf("/stats after a restart:\n%s", stats)
	}
	if n := scrape(t, p).sum("ferry_upload_bytes_total"); n != 0 {
		t.Fatalf("a new process's upload bytes: %v", n)
	}
}

// count is how many series of name carry every one of labels.
func (s series) count(name string, labels ...string) int {
	n := 0
	for k := range s {
		base, rest, _ := strings.Cut(k, "{")
		ok := base == name
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			n++
		}
	}
	return n
}

// checkFamilies lists what m gets wrong about the run of
// TestMetricsAndOpsCommands.
func checkFamilies(m series, size float64) []string {
	bot := `bot="700100"`
	var wrong []string
	for _, c := range []struct {
		what      string
		got, want float64
		atLeast   bool
	}{
		{"command updates", m.sum("ferry_updates_total", bot, `kind="command"`), 5, false},
		{"channel file updates", m.sum("ferry_updates_total", bot, `kind="channel_file"`), 1, false},
		{"update jobs completed", m.sum("ferry_job_results_total", `kind="update"`, `result="completed"`), 5, false},
		{"update jobs snoozed (429)", m.sum("ferry_job_results_total", `kind="update"`, `result="snoozed"`), 1, true},
		{"update jobs failed (502)", m.sum("ferry_job_results_total", `kind="update"`, `result="failed"`), 1, false},
		{"upload jobs completed", m.sum("ferry_job_results_total", `kind="upload"`, `result="completed"`), 1, false},
		{"index drains completed", m.sum("ferry_job_results_total", `kind="index_drain"`, `result="completed"`), 1, true},
		{"upload bytes", m.sum("ferry_upload_bytes_total"), size, false},
		{"upload parts sent", m.sum("ferry_upload_parts_total", `outcome="sent"`), 8, false},
		{"upload parts re-sent after the 500", m.sum("ferry_upload_parts_total", `outcome="resent"`), 1, false},
		{"saveFilePart calls (8 parts, the 500's retry, the flood wait's retry)", m.sum("ferry_mtproto_requests_total", `method="upload.saveFilePart"`), 10, false},
		{"saveFilePart INTERNAL errors", m.sum("ferry_mtproto_errors_total", `method="upload.saveFilePart"`, `error="INTERNAL"`), 1, false},
		{"saveFilePart flood waits", m.sum("ferry_mtproto_flood_waits_total", `method="upload.saveFilePart"`), 1, false},
		{"saveFilePart flood wait seconds", m.sum("ferry_mtproto_flood_wait_seconds_total", `method="upload.saveFilePart"`), 1, false},
		{"sendMedia calls", m.sum("ferry_mtproto_requests_total", `method="messages.sendMedia"`), 1, true},
		{"sendMessage calls", m.sum("ferry_botapi_requests_total", `method="sendMessage"`), 8, true},
		{"sendMessage errors (429, 502)", m.sum("ferry_botapi_errors_total", `method="sendMessage"`), 2, true},
		{"editMessageText calls", m.sum("ferry_botapi_requests_total", `method="editMessageText"`), 1, true},
		{"getWebhookInfo calls", m.sum("ferry_botapi_requests_total", `method="getWebhookInfo"`), 1, false},
		{"record creates", m.sum("ferry_r2_operations_total", `store="local"`, `op="create"`), 1, false},
		{"record errors", m.sum("ferry_r2_errors_total"), 0, false},
		{"sightings indexed", m.sum("ferry_index_sightings_total"), 1, false},
		{"posts indexed as new", m.sum("ferry_index_posts_total", `result="new"`), 1, false},
		{"new files", m.sum("ferry_index_new_files_total"), 1, false},
		{"webhook 200s", m.sum("ferry_webhook_requests_total", `code="200"`), 6, false},
		{"sendMessage 429s (the budget's count)", m.sum("ferry_bot_api_429_total", `method="sendMessage"`, bot), 1, false},
		{"send turns taken", m.sum("ferry_send_turns_total", bot), 8, true},
		{"budget gauge series for the bot", float64(m.count("ferry_send_budget_next_seconds", bot)), 1, false},
		{"budget blocked series for the bot", float64(m.count("ferry_send_budget_blocked_seconds", bot)), 1, false},
		{"Bot API durations observed", m.sum("ferry_botapi_request_duration_seconds_count", `method="sendMessage"`), 8, true},
		{"job run times observed", m.sum("ferry_job_run_seconds_count", `kind="update"`), 6, true},
		{"intake commits observed", m.sum("ferry_intake_commit_seconds_count"), 1, true},
		{"record operation durations", m.sum("ferry_r2_operation_duration_seconds_count", `op="create"`), 1, true},
		{"jobs completed in River's table", m.sum("ferry_jobs", `state="completed"`), 7, true},
	} {
		if c.got != c.want && !(c.atLeast && c.got > c.want) {
			wrong = append(wrong, fmt.Sprintf("%s: %v, want %v%s", c.what, c.got, c.want, map[bool]string{true: " or more"}[c.atLeast]))
		}
	}
	return wrong
}
