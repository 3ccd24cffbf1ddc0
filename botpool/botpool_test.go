package botpool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot"

	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
)

// holding records the same document as seen by the bots in slots 1..n
// (bot ids 1001..), so each holds a file_id for it.
func holding(t *testing.T, d db.Driver, uid string, n int) {
	t.Helper()
	ix, err := index.New(index.Options{DB: d, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for slot := 1; slot <= n; slot++ {
		p := index.Post{Slot: slot, BotID: 1000 + int64(slot), ChatID: -1, MessageID: 1, UniqueID: uid,
			FileID: fmt.Sprintf("file-id-of-slot-%d", slot), Type: index.TypeDocument, Name: "movie.mkv"}
		if _, err := ix.IndexCommit(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
}

func loadOf(t *testing.T, d db.Driver, botID int64) db.BotLoad {
	t.Helper()
	ls, err := d.BotLoadList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.BotID == botID {
			return l
		}
	}
	return db.BotLoad{BotID: botID}
}

func TestHoldersAndFailover(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	pool := botpool.New(d, nil)
	const uid = "AgADholders"
	holding(t, d, uid, 3)
	hs, err := pool.Holders(ctx, uid)
	if err != nil || len(hs) != 3 || hs[0].Slot != 1 || hs[0].FileID != "file-id-of-slot-1" || hs[0].BotID != 1001 {
		t.Fatalf("holders: %+v %v", hs, err)
	}

	// Slot 1 errors, slot 2 is rate limited, slot 3 sends.
	var mu sync.Mutex
	var tried []int
	got, err := pool.Send(ctx, hs, func(_ context.Context, h botpool.Holder) error {
		mu.Lock()
		tried = append(tried, h.Slot)
		mu.Unlock()
		switch h.Slot {
		case 1:
			return errors.New("bot was kicked")
		case 2:
			return fmt.Errorf("send: %w", &bot.TooManyRequestsError{Message: "Too Many Requests", RetryAfter: 30})
		}
		return nil
	})
	if err != nil || got.Slot != 3 || fmt.Sprint(tried) != "[1 2 3]" {
		t.Fatalf("failover: %+v %v tried %v", got, err, tried)
	}
	// Now slot 2, in flood wait, goes last; the others by in-flight (all
	// 0), then least recently used.
	hs, err = pool.Holders(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if hs[len(hs)-1].Slot != 2 || hs[len(hs)-1].FloodWaitUntil.Before(time.Now().Add(20*time.Second)) {
		t.Fatalf("flood-waited bot not last: %+v", hs)
	}
	if hs[0].Slot != 1 || hs[1].Slot != 3 {
		t.Fatalf("order: %+v", hs)
	}
	for _, h := range hs {
		if h.InFlight != 0 {
			t.Fatalf("sends still in flight after they ended: %+v", hs)
		}
	}
	if l := loadOf(t, d, 1003); l.Sends != 1 || l.Failures != 0 {
		t.Fatalf("load of slot 3 = %+v, want 1 send", l)
	}
	if l := loadOf(t, d, 1001); l.Sends != 0 || l.Failures != 1 {
		t.Fatalf("load of slot 1 = %+v, want 1 failure", l)
	}
	// A bot busy with sends (in any process) is ranked after idle ones.
	for range 2 {
		if _, err := d.BotSendLease(ctx, 1001, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	hs, _ = pool.Holders(ctx, uid)
	if hs[0].Slot != 3 || hs[1].Slot != 1 || hs[1].InFlight != 2 {
		t.Fatalf("busy bot first: %+v", hs)
	}
	// Sends left by a process that died stop counting after the lease.
	time.Sleep(20 * time.Millisecond)
	pool.SetLease(10 * time.Millisecond)
	hs, _ = pool.Holders(ctx, uid)
	for _, h := range hs {
		if h.InFlight != 0 {
			t.Fatalf("a dead process's sends still count: %+v", hs)
		}
	}
	// Everyone fails: all errors are reported.
	_, err = pool.Send(ctx, hs, func(context.Context, botpool.Holder) error { return errors.New("nope") })
	if !errors.Is(err, botpool.ErrNoHolder) || strings.Count(err.Error(), "nope") != 3 {
		t.Fatalf("all fail: %v", err)
	}
	if _, err := pool.Send(ctx, nil, nil); !errors.Is(err, botpool.ErrNoHolder) {
		t.Fatalf("no holders: %v", err)
	}
}

func TestFloodWait(t *testing.T) {
	if d, ok := botpool.FloodWait(fmt.Errorf("x: %w", &bot.TooManyRequestsError{RetryAfter: 7})); !ok || d != 7*time.Second {
		t.Fatalf("Bot API 429: %v %v", d, ok)
	}
	if _, ok := botpool.FloodWait(errors.New("plain")); ok {
		t.Fatal("plain error taken for a flood wait")
	}
}
