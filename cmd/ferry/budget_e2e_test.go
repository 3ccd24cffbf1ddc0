package main

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/telegramtest"
)

// TestTwoWorkersShareTheSendBudget: one `ferry web` and two `ferry worker`
// processes on one Postgres, one bot, posts arriving in waves into one
// channel, Telegram's limit for it scaled to 10 sends per 2 s (the
// stand-in enforces the same): both workers send replies, and together
// they stay within the limit (no 429, at most 10 sends in any 2 s), so
// the budget is the database's, not each process's.
func TestTwoWorkersShareTheSendBudget(t *testing.T) {
	dbtest.SkipOnSQLite(t, "one ferry process per embedded database")
	const chat, posts, waves = int64(-1001234000777), 40, 8
	window := 2 * time.Second
	w := newWorld(t, map[string]string{"SEND_LIMITS": "group=10/2s"})
	limits := telegramtest.TelegramLimits()
	limits.Group = telegramtest.Rate{N: 10, Per: window}
	w.tg.SetLimits(limits)
	web := start(t, w.env, "web")
	workers := []*proc{start(t, w.env, "worker"), start(t, w.env, "worker")}
	for _, p := range append(workers, web) {
		p.waitReady(t, time.Now())
	}
	begin := time.Now()
	for p := 1; p <= posts; p++ {
		fid := telegramtest.EncodeFileID(telegramtest.KindDocument, 4, int64(p), 1, nil)
		body := fmt.Sprintf(`{"update_id":%d,"channel_post":{"message_id":%d,"date":%d,"chat":{"id":%d,"type":"channel","title":"C"},"document":{"file_id":%q,"file_unique_id":"AgADbudget%04d","file_name":"f%d.mkv","mime_type":"video/x-matroska","file_size":%d}}}`,
			9000+p, p, time.Now().Unix(), chat, fid, p, p, 1000+p)
		if code := w.post(t, web, w.secret, []byte(body)); code != 200 {
			t.Fatalf("post %d: status %d", p, code)
		}
		if p%(posts/waves) == 0 {
			time.Sleep(400 * time.Millisecond) // a wave each drain round: several reply jobs
		}
	}
	for deadline := time.Now().Add(60 * time.Second); len(w.sentTo(chat)) < posts; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d posts answered; %d refused", len(w.sentTo(chat)), posts, len(w.tg.LimitRefusals()))
		}
	}
	took := time.Since(begin)
	replies := w.sentTo(chat)
	if n := len(w.tg.LimitRefusals()); n != 0 {
		t.Fatalf("the stand-in refused %d sends", n)
	}
	times := make([]time.Time, len(replies))
	for i, c := range replies {
		times[i] = c.Time
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	most := 0
	for i := range times {
		j := i
		for j < len(times) && times[j].Sub(times[i]) < window {
			j++
		}
		most = max(most, j-i)
	}
	if most > 10 {
		t.Fatalf("%d replies within %s, limit 10", most, window)
	}
	by := map[string]int{}
	for _, j := range w.jobsOf(t, "index_reply", rivertype.JobStateCompleted) {
		by[j.AttemptedBy[len(j.AttemptedBy)-1]]++
	}
	t.Logf("%d replies in %s; at most %d in any %s; reply jobs by worker: %v", len(replies), took.Round(10*time.Millisecond), most, window, by)
	if len(by) != 2 {
		t.Fatalf("reply jobs were worked by %d processes (%v), want both workers", len(by), by)
	}
	if len(replies) != posts {
		t.Fatalf("%d replies for %d posts", len(replies), posts)
	}
}
