package jobs_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/telegramtest"
)

// unpaced gives d a send budget that paces nothing, for tests that send
// more than Telegram would take and are not about pacing (their stand-in
// needs its limits lifted too).
func unpaced(d *jobs.Deps) {
	d.Senders = botpool.New(d.DB, d.Logger, botpool.WithLimits(botpool.NoLimits()))
}

// scaled are Telegram's limits with the group limit a tenth of a minute
// long: 20 sends per bot per group in any 6 s.
func scaled(group time.Duration) (telegramtest.Limits, botpool.Limits) {
	tl := telegramtest.TelegramLimits()
	tl.Group.Per = group
	bl := botpool.TelegramLimits()
	bl.Group.Per = group
	return tl, bl
}

// submitPosts hands the intake every bot's sighting of posts 1..n in chat,
// as the webhook would, all at once.
func submitPosts(t *testing.T, in *jobs.Intake, chat int64, first, n int, bots []int64) {
	t.Helper()
	var wg sync.WaitGroup
	for p := int64(first); p < int64(first+n); p++ {
		for slot, id := range bots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				raw := channelFileUpdate(p, chat, p, slot+1, p)
				if err := in.Submit(context.Background(), jobs.Update{BotID: id, UpdateID: p, Raw: raw, Sighting: sightingOf(t, raw)}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
}

func okReplies(tg *telegramtest.Server, chat int64) []telegramtest.Call {
	var out []telegramtest.Call
	for _, c := range tg.CallsTo("sendMessage") {
		if c.OK && c.Params["chat_id"] == fmt.Sprint(chat) {
			out = append(out, c)
		}
	}
	return out
}

// TestIndexReplyBurstAcrossBots: 200 posts in one channel that four bots
// see (all admins), the stand-in enforcing 20 sends per bot per chat in
// any 6 s (Telegram's minute scaled by a tenth): every post gets exactly
// one reply, replies come from all four bots, the stand-in refuses at most
// four sends, and the run takes about 200 / (4 × 20) simulated minutes
// (15 s).
func TestIndexReplyBurstAcrossBots(t *testing.T) {
	const posts, nbots, chat = 200, 4, -1001777
	window := 6 * time.Second
	tl, bl := scaled(window)
	tg := telegramtest.NewServer(t, telegramtest.WithLimits(tl))
	var tokens []string
	var ids []int64
	for i := 1; i <= nbots; i++ {
		tok := fmt.Sprintf("%d:AAH%s", 800+i, strings.Repeat(string(rune('a'+i)), 32))
		tokens, ids = append(tokens, tok), append(ids, int64(800+i))
		tg.AddBot(tok)
	}
	pool, d, client := startIndexWorkers(t, tg, tokens, nil)
	d.Senders = botpool.New(pool, d.Logger, botpool.WithLimits(bl))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := jobs.NewIntake(pool, client, d.Logger, jobs.WithSightings(true))
	intakeDone := make(chan struct{})
	go func() { in.Run(ctx); close(intakeDone) }()
	defer func() { cancel(); <-intakeDone }()

	start := time.Now()
	submitPosts(t, in, chat, 1, posts, ids)
	for deadline := time.Now().Add(60 * time.Second); len(okReplies(tg, chat)) < posts; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d posts answered after 60 s; %d refused", len(okReplies(tg, chat)), posts, len(tg.LimitRefusals()))
		}
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // a duplicate would show itself
	replies := okReplies(tg, chat)
	perPost, perBot := map[string]int{}, map[int64]int{}
	timeline := map[int64][]int{}
	minutes := int(took/window) + 2
	for _, c := range replies {
		perPost[c.Params["reply_parameters"]]++
		perBot[c.BotID]++
		if timeline[c.BotID] == nil {
			timeline[c.BotID] = make([]int, minutes)
		}
		if m := int(c.Time.Sub(start) / window); m < minutes {
			timeline[c.BotID][m]++
		}
	}
	if len(perPost) != posts || len(replies) != posts {
		t.Fatalf("%d replies to %d posts, want one to each of %d", len(replies), len(perPost), posts)
	}
	if len(perBot) != nbots {
		t.Fatalf("replies came from %d bots (%v), want all %d", len(perBot), perBot, nbots)
	}
	refused := tg.LimitRefusals()
	var keys []int64
	for id := range timeline {
		keys = append(keys, id)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, id := range keys {
		t.Logf("bot %d: %d replies; per simulated minute (6 s): %v", id, perBot[id], timeline[id])
	}
	t.Logf("%d posts answered in %s (%.1f simulated minutes; expected about %.1f); %d sends refused with 429",
		posts, took.Round(10*time.Millisecond), took.Seconds()/window.Seconds(), float64(posts)/(nbots*20), len(refused))
	if len(refused) > nbots {
		t.Fatalf("the stand-in refused %d sends, want at most %d", len(refused), nbots)
	}
	want := time.Duration(float64(posts) / (nbots * 20) * float64(window)) // 15 s
	if took < want*3/4 || took > want*2 {
		t.Fatalf("the burst took %s, want about %s", took, want)
	}
}

// TestProgressYieldsToReplies: an upload's progress message in a group
// where 30 posts arrive at once, one bot: the 30 replies go at the chat's
// pace with no 429, no progress edit is made while they are queued (edits
// are skipped, replies not delayed), edits resume once the chat is idle,
// and the final message is shown.
func TestProgressYieldsToReplies(t *testing.T) {
	const posts, chat = 30, -1001888
	tl, bl := scaled(2 * time.Second) // 20 per 2 s: a turn every 105 ms
	tg := telegramtest.NewServer(t, telegramtest.WithLimits(tl))
	tok := fmt.Sprintf("%d:AAH%s", 901, strings.Repeat("p", 32))
	tg.AddBot(tok)
	pool, d, client := startIndexWorkers(t, tg, []string{tok}, nil)
	d.Senders = botpool.New(pool, d.Logger, botpool.WithLimits(bl))
	reg := prometheus.NewRegistry()
	botpool.NewMetrics(reg, d.Senders.Budget())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := jobs.NewIntake(pool, client, d.Logger, jobs.WithSightings(true))
	intakeDone := make(chan struct{})
	go func() { in.Run(ctx); close(intakeDone) }()
	defer func() { cancel(); <-intakeDone }()

	b, _ := d.Bots.ByID(901)
	status, err := b.Client.SendMessage(ctx, &bot.SendMessageParams{ChatID: chat, Text: "Queued"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	pm := jobs.NewProgressMessage(b, chat, status.ID, nil, 50*time.Millisecond).WithBudget(d.Senders.Budget())
	editCtx, stopEdits := context.WithCancel(ctx)
	editsDone := make(chan struct{})
	go func() { pm.Run(editCtx); close(editsDone) }()
	setDone := make(chan struct{})
	go func() {
		defer close(setDone)
		for i := 0; editCtx.Err() == nil; i++ {
			pm.Set(fmt.Sprintf("Uploading %d", i))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second) // progress alone: edits go
	submitPosts(t, in, chat, 1, posts, []int64{901})
	for deadline := time.Now().Add(30 * time.Second); len(okReplies(tg, chat)) < posts+1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d replies", len(okReplies(tg, chat))-1, posts)
		}
	}
	time.Sleep(time.Second) // the chat idle again: edits resume
	stopEdits()
	<-editsDone
	<-setDone
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if err := pm.Finish(fctx, "Uploaded <b>movie.mkv</b>", nil); err != nil {
		t.Fatalf("final message: %v", err)
	}

	replies := okReplies(tg, chat)[1:] // after the status message
	first, last := replies[0].Time, replies[len(replies)-1].Time
	var before, during, after int
	for _, c := range tg.CallsTo("editMessageText") {
		switch {
		case !c.OK:
		case c.Time.Before(first):
			before++
		case c.Time.Before(last):
			during++
		default:
			after++
		}
	}
	t.Logf("30 replies in %s; progress edits: %d before, %d during, %d after (final included)",
		last.Sub(first).Round(time.Millisecond), before, during, after)
	if n := len(tg.LimitRefusals()); n != 0 {
		t.Fatalf("the stand-in refused %d calls: %+v", n, tg.LimitRefusals())
	}
	if during != 0 {
		t.Fatalf("%d progress edits between the first and the last reply, want none", during)
	}
	if before == 0 || after < 2 {
		t.Fatalf("progress edits %d before and %d after the replies: edits should go while the chat is idle", before, after)
	}
	// Paced, not delayed: 29 gaps of one turn (plus at most one turn an
	// edit took just before the burst), with room for a loaded machine.
	gap := 2 * time.Second / 20 * 105 / 100
	if span := last.Sub(first); span > 31*gap+time.Second {
		t.Fatalf("30 replies took %s, want about %s", span, 29*gap)
	}
	if m, ok := tg.Message(chat, status.ID); !ok || m.Text != "Uploaded movie.mkv" {
		t.Fatalf("status message after Finish: %q", m.Text)
	}
	// /metrics shows it: the replies queued behind the budget, the edits
	// skipped, no 429.
	turns := counterSum(t, reg, "ferry_send_turns_total")
	queued := counterSum(t, reg, "ferry_sends_queued_total")
	skipped := counterSum(t, reg, "ferry_sends_skipped_total")
	t.Logf("metrics: %v turns, %v queued, %v skipped", turns, queued, skipped)
	if turns < posts || queued < posts/2 || skipped < 1 {
		t.Fatalf("budget metrics: %v turns, %v queued, %v edits skipped; want ≥ %d, ≥ %d, ≥ 1", turns, queued, skipped, posts, posts/2)
	}
	if n := counterSum(t, reg, "ferry_bot_api_429_total"); n != 0 {
		t.Fatalf("%v answers of 429 counted, want none", n)
	}
}

// counterSum adds every series of the counter family name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// TestIndexReplyFailsOverOn403: two bots see a channel, but the first was
// removed from it (the stand-in answers its posts 403 "not a member"): the
// turns it gets are refused, and those replies go through the other bot,
// so every post is still answered exactly once.
func TestIndexReplyFailsOverOn403(t *testing.T) {
	const posts, chat = 6, -1001999
	tl, bl := scaled(6 * time.Second)
	tg := telegramtest.NewServer(t, telegramtest.WithLimits(tl))
	var tokens []string
	var ids []int64
	for i := 1; i <= 2; i++ {
		tok := fmt.Sprintf("%d:AAH%s", 950+i, strings.Repeat(string(rune('k'+i)), 32))
		tokens, ids = append(tokens, tok), append(ids, int64(950+i))
		tg.AddBot(tok)
	}
	tg.SetChat(models.Chat{ID: chat, Type: models.ChatTypeChannel, Title: "Files"})
	tg.SetChatAdmins(chat, ids[1]) // bot 951 is no longer a member
	pool, d, client := startIndexWorkers(t, tg, tokens, nil)
	d.Senders = botpool.New(pool, d.Logger, botpool.WithLimits(bl))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := jobs.NewIntake(pool, client, d.Logger, jobs.WithSightings(true))
	intakeDone := make(chan struct{})
	go func() { in.Run(ctx); close(intakeDone) }()
	defer func() { cancel(); <-intakeDone }()

	submitPosts(t, in, chat, 1, posts, ids)
	for deadline := time.Now().Add(30 * time.Second); len(okReplies(tg, chat)) < posts; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d posts answered", len(okReplies(tg, chat)), posts)
		}
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would show itself
	perPost := map[string]int{}
	for _, c := range okReplies(tg, chat) {
		perPost[c.Params["reply_parameters"]]++
		if c.BotID != ids[1] {
			t.Fatalf("reply from bot %d, which is not in the channel", c.BotID)
		}
	}
	if len(perPost) != posts || len(okReplies(tg, chat)) != posts {
		t.Fatalf("%d replies to %d posts, want one to each of %d", len(okReplies(tg, chat)), len(perPost), posts)
	}
	refused := 0
	for _, c := range tg.CallsTo("sendMessage") {
		if !c.OK && c.BotID == ids[0] {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("bot %d was never refused: the test did not exercise the 403", ids[0])
	}
	t.Logf("%d sends of the removed bot refused with 403, then the other answered", refused)
}
