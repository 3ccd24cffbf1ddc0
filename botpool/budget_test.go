package botpool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/db/dbtest"
)

// TestBudgetTurns: turns go round the bots that can send into a chat, one
// bot's turns in one chat a gap apart, each bot's turns in every chat a
// (smaller) gap apart; a 429 blocks the bot there for every budget on the
// database; an idle take refuses a chat with turns taken ahead.
func TestBudgetTurns(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	limits := botpool.Limits{Group: botpool.Rate{N: 10, Per: time.Second}, Private: botpool.Rate{N: 1, Per: time.Second},
		Bot: botpool.Rate{N: 100, Per: time.Second}}
	b := botpool.NewBudget(d, limits, nil)
	other := botpool.NewBudget(d, limits, nil) // another process on the database

	turns, next, err := b.Take(ctx, -100, []int64{1, 2, 3}, 7, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// 100 ms apart per bot in the chat: bots 1, 2, 3 now, 1, 2, 3 at
	// +100 ms, 1 at +200 ms; the 8th (bot 2 at +200 ms) fits too but was
	// not asked for.
	want := []int64{1, 2, 3, 1, 2, 3, 1}
	if len(turns) != len(want) {
		t.Fatalf("%d turns, want %d: %+v", len(turns), len(want), turns)
	}
	for i, tr := range turns {
		if tr.BotID != want[i] {
			t.Fatalf("turn %d went to bot %d, want %d (%+v)", i, tr.BotID, want[i], turns)
		}
		if lag := tr.At.Sub(turns[0].At) - time.Duration(i/3)*100*time.Millisecond; lag < 0 || lag > time.Millisecond {
			t.Fatalf("turn %d at +%s", i, tr.At.Sub(turns[0].At))
		}
	}
	if !next.IsZero() {
		t.Fatalf("next = %v with every turn given", next)
	}
	// The other process continues where this one left off.
	more, next, err := other.Take(ctx, -100, []int64{1, 2, 3}, 10, time.Until(turns[0].At.Add(250*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	if len(more) != 2 || more[0].BotID != 2 || more[1].BotID != 3 || more[0].At.Before(turns[4].At.Add(99*time.Millisecond)) {
		t.Fatalf("the other budget's turns: %+v", more)
	}
	if d := next.Sub(turns[0].At); d < 299*time.Millisecond || d > 301*time.Millisecond {
		t.Fatalf("next free turn at +%s, want +300ms", d)
	}
	// An edit finds the chat busy (and bot 1 busy everywhere: its turns are taken ahead); a bot with no turn ahead is free.
	if ok, err := b.TakeIdle(ctx, -100, 1); err != nil || ok {
		t.Fatalf("idle take in a busy chat = %v, %v", ok, err)
	}
	if ok, err := b.TakeIdle(ctx, -200, 5); err != nil || !ok {
		t.Fatalf("idle take in a quiet chat = %v, %v", ok, err)
	}
	// A 429 blocks bot 4 in a private chat for everyone.
	b.Refused(ctx, 4, 77, "sendMessage", 2*time.Second)
	err = other.Wait(ctx, 77, 4, time.Second)
	if wait, ok := botpool.AsWait(err); !ok || wait < 1500*time.Millisecond {
		t.Fatalf("wait after a 429 = %v", err)
	}
	if err := other.Wait(ctx, 78, 4, time.Second); err != nil {
		t.Fatalf("another chat of the refused bot: %v", err)
	}
	state, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, s := range state {
		if s.BotID == 4 {
			found = s.Refused == 1 && s.BusyChats >= 1 && s.Sends == 1
		}
	}
	if !found {
		t.Fatalf("state of bot 4: %+v", state)
	}
	var nilBudget *botpool.Budget
	if err := nilBudget.Wait(ctx, 1, 1, 0); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(ctx.Err(), nil) {
		t.Fatal(ctx.Err())
	}
}

func TestParseLimits(t *testing.T) {
	l, err := botpool.ParseLimits("group=20/6s,bot=0/1s,margin=0.1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Group != (botpool.Rate{N: 20, Per: 6 * time.Second}) || l.Bot.N != 0 || l.Margin != 0.1 || l.Private != botpool.TelegramLimits().Private {
		t.Fatalf("parsed %v", l)
	}
	if l, err := botpool.ParseLimits("none"); err != nil || l != botpool.NoLimits() {
		t.Fatalf("none: %v %v", l, err)
	}
	for _, bad := range []string{"group", "group=20", "chat=1/1s", "margin=2", "bot=-1/1s"} {
		if _, err := botpool.ParseLimits(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

// TestBudgetPrunesSpentRows: the chat rows a burst into 30 chats made are
// deleted by a Take once the longest window has passed and the prune
// interval is due (not before); the bot's row and its counters stay, and
// a chat whose turn is still ahead keeps its row.
func TestBudgetPrunesSpentRows(t *testing.T) {
	d := dbtest.New(t)
	ctx := context.Background()
	limits := botpool.Limits{Group: botpool.Rate{N: 20, Per: time.Second}, Private: botpool.Rate{N: 1, Per: time.Second},
		Bot: botpool.Rate{N: 1000, Per: time.Second}}
	b := botpool.NewBudget(d, limits, nil)
	t0 := time.Now()
	clock := t0
	b.SetNow(func() time.Time { return clock })
	chatRows := func() map[int64]bool {
		rows, err := d.SendBudgetList(ctx, time.Time{}) // every row with a turn
		if err != nil {
			t.Fatal(err)
		}
		out := map[int64]bool{}
		for _, r := range rows {
			if r.ChatID != 0 {
				out[r.ChatID] = true
			}
		}
		return out
	}
	take := func(chat int64) {
		t.Helper()
		if turns, _, err := b.Take(ctx, chat, []int64{7}, 1, time.Hour); err != nil || len(turns) != 1 {
			t.Fatalf("take in %d: %v %v", chat, turns, err)
		}
	}
	for c := int64(1); c <= 30; c++ {
		take(-c)
	}
	if n := len(chatRows()); n != 30 {
		t.Fatalf("%d chat rows after the burst, want 30", n)
	}
	clock = t0.Add(2 * time.Minute) // past the window, but the last prune (the first Take) was just now
	take(-99)
	if n := len(chatRows()); n != 31 {
		t.Fatalf("%d chat rows 2 minutes on, want 31: pruned before the interval", n)
	}
	clock = t0.Add(11 * time.Minute)
	if turns, _, err := b.Take(ctx, -100, []int64{7}, 40, time.Hour); err != nil || len(turns) != 40 { // turns ahead: kept
		t.Fatalf("take 40: %v", err)
	}
	if got := chatRows(); len(got) != 1 || !got[-100] {
		t.Fatalf("chat rows after the prune: %v, want only -100", got)
	}
	st, err := b.State(ctx)
	if err != nil || len(st) != 1 || st[0].Sends != 71 {
		t.Fatalf("the bot's counters after the prune: %+v %v", st, err)
	}
	if n, err := b.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("a second prune removed %d (%v)", n, err)
	}
}
