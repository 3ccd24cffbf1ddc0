package drivertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// held is the file the send cases rank holders of.
const held = "uH"

// heldBy indexes held with a file_id of each of slots' bots.
func heldBy(t testing.TB, d db.Driver, slots ...int) {
	t.Helper()
	var ps []db.Post
	for _, s := range slots {
		ps = append(ps, post(1, held, s))
	}
	index(t, d, ps...)
}

func holders(t testing.TB, e db.Executor, lease time.Duration) []db.Holder {
	t.Helper()
	return must(e.HolderList(context.Background(), held, lease)).of(t)
}

// ranking is the slots of held's holders, best first, and their sends in
// flight (leases younger than an hour).
func ranking(t testing.TB, e db.Executor) (slots, inFlight []int) {
	t.Helper()
	for _, h := range holders(t, e, time.Hour) {
		slots, inFlight = append(slots, h.Slot), append(inFlight, h.InFlight)
	}
	return slots, inFlight
}

func lease(t testing.TB, e db.Executor, slot int) int64 {
	t.Helper()
	return must(e.BotSendLease(context.Background(), bot(slot), time.Hour)).of(t)
}

func release(t testing.TB, e db.Executor, slot int, lease int64, floodWaitUntil time.Time) {
	t.Helper()
	check(t, e.BotSendRelease(context.Background(), &db.BotSendReleaseParams{BotID: bot(slot), Lease: lease, OK: floodWaitUntil.IsZero(), FloodWaitUntil: floodWaitUntil}))
}

// use is one send of slot's bot, started and ended.
func use(t testing.TB, e db.Executor, slot int) {
	t.Helper()
	release(t, e, slot, lease(t, e, slot), time.Time{})
}

// floodWait fails t unless got is about want (both zero: no flood wait).
func floodWait(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if d := got.Sub(want); d < -time.Second || d > time.Second || got.IsZero() != want.IsZero() {
		t.Fatalf("%s in flood wait until %v, want %v", what, got, want)
	}
}

func testHolderList(t *testing.T, s *suite) {
	t.Run("Holders", func(t *testing.T) {
		d := s.driver(t)
		equal(t, "holders of an unknown file", holders(t, d, time.Hour), nil)
		heldBy(t, d, 3, 1, 2)
		var want []db.Holder
		for slot := 1; slot <= 3; slot++ {
			want = append(want, db.Holder{Slot: slot, BotID: bot(slot), FileID: post(1, held, slot).FileID, ChatID: chat, MessageID: 1})
		}
		equal(t, "holders, by slot when all else is equal", holders(t, d, time.Hour), want)
	})
	t.Run("EachBotsOwnPost", func(t *testing.T) {
		d := s.driver(t)
		other := post(7, held, 2) // bot 2 saw the file in another channel
		other.ChatID = -2002
		index(t, d, post(1, held, 1), other)
		hs := holders(t, d, time.Hour)
		equal(t, "holders' posts", [][2]int64{{hs[0].ChatID, hs[0].MessageID}, {hs[1].ChatID, hs[1].MessageID}},
			[][2]int64{{chat, 1}, {-2002, 7}})
	})
	t.Run("FewerInFlightFirst", func(t *testing.T) {
		d := s.driver(t)
		heldBy(t, d, 1, 2)
		lease(t, d, 1)
		use(t, d, 2) // more recently used than 1, but not sending
		slots, inFlight := ranking(t, d)
		equal(t, "slots", slots, []int{2, 1})
		equal(t, "in flight", inFlight, []int{0, 1})
	})
	t.Run("LeastRecentlyUsedFirst", func(t *testing.T) {
		d := s.driver(t)
		heldBy(t, d, 1, 2, 3)
		use(t, d, 1)
		use(t, d, 3)
		slots, _ := ranking(t, d)
		equal(t, "slots (never used first, then 1 used before 3)", slots, []int{2, 1, 3})
	})
	t.Run("FloodWaitLast", func(t *testing.T) {
		d := s.driver(t)
		heldBy(t, d, 1, 2)
		until := time.Now().Add(time.Hour)
		release(t, d, 1, 0, until)
		lease(t, d, 2)
		lease(t, d, 2)
		hs := holders(t, d, time.Hour)
		equal(t, "slots", []int{hs[0].Slot, hs[1].Slot}, []int{2, 1})
		floodWait(t, "first holder", hs[0].FloodWaitUntil, time.Time{})
		floodWait(t, "last holder", hs[1].FloodWaitUntil, until)
		// A release that sets none keeps it.
		use(t, d, 1)
		floodWait(t, "last holder after a send", holders(t, d, time.Hour)[1].FloodWaitUntil, until)
	})
	t.Run("FloodWaitOver", func(t *testing.T) {
		d := s.driver(t)
		heldBy(t, d, 1, 2)
		release(t, d, 1, 0, time.Now().Add(-time.Second))
		hs := holders(t, d, time.Hour)
		equal(t, "slots", []int{hs[0].Slot, hs[1].Slot}, []int{1, 2})
		floodWait(t, "first holder", hs[0].FloodWaitUntil, time.Time{})
	})
	t.Run("LeaseWindow", func(t *testing.T) {
		d := s.driver(t)
		heldBy(t, d, 1)
		lease(t, d, 1)
		const window = 500 * time.Millisecond
		time.Sleep(window + 100*time.Millisecond)
		equal(t, "in flight counting leases younger than the window", holders(t, d, window)[0].InFlight, 0)
		equal(t, "in flight counting leases younger than an hour", holders(t, d, time.Hour)[0].InFlight, 1)
	})
}

func testBotSendLease(t *testing.T, s *suite) {
	d := s.driver(t)
	heldBy(t, d, 1, 2)
	l1, l2 := lease(t, d, 1), lease(t, d, 1)
	if l1 == 0 || l1 == l2 {
		t.Fatalf("leases %d and %d, want two distinct ones", l1, l2)
	}
	lease(t, d, 2)
	equal(t, "in flight by slot", inFlightBySlot(t, d), map[int]int{1: 2, 2: 1})
	loads := must(d.BotLoadList(t.Context())).of(t)
	recent(t, "bot's last use", loads[0].LastUsedAt)

	// A lease drops the bot's own leases older than its lease, not others'.
	const window = 500 * time.Millisecond
	time.Sleep(window + 100*time.Millisecond)
	must(d.BotSendLease(t.Context(), bot(1), window)).of(t)
	equal(t, "in flight by slot after stale leases were dropped", inFlightBySlot(t, d), map[int]int{1: 1, 2: 1})
}

func inFlightBySlot(t testing.TB, e db.Executor) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, h := range holders(t, e, time.Hour) {
		out[h.Slot] = h.InFlight
	}
	return out
}

func testBotSendRelease(t *testing.T, s *suite) {
	d := s.driver(t)
	heldBy(t, d, 1)
	l1, l2 := lease(t, d, 1), lease(t, d, 1)
	inFlight := func() int { t.Helper(); return holders(t, d, time.Hour)[0].InFlight }
	release(t, d, 1, l1, time.Time{})
	equal(t, "in flight after a release", inFlight(), 1)
	check(t, d.BotSendRelease(t.Context(), &db.BotSendReleaseParams{BotID: bot(1), OK: false}))
	equal(t, "in flight after a release of no lease", inFlight(), 1)
	tx := begin(t, d)
	release(t, tx, 1, l2, time.Time{})
	check(t, tx.Rollback(t.Context()))
	equal(t, "in flight after a release rolled back", inFlight(), 1)
	release(t, d, 1, l2, time.Time{})
	equal(t, "in flight after the last release", inFlight(), 0)
	l := must(d.BotLoadList(t.Context())).of(t)[0]
	equal(t, "(sends, failures) counted", []int64{l.Sends, l.Failures}, []int64{2, 1})
}

func testBotLoadList(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "load of no bot", must(d.BotLoadList(t.Context())).of(t), nil)
	until := time.Now().Add(time.Hour)
	release(t, d, 3, 0, until) // a failed send without a lease
	use(t, d, 1)
	use(t, d, 1)
	release(t, d, 2, lease(t, d, 2), time.Time{})
	release(t, d, 2, lease(t, d, 2), until)
	loads := must(d.BotLoadList(t.Context())).of(t)
	if len(loads) != 3 {
		t.Fatalf("load of %d bots, want 3: %+v", len(loads), loads)
	}
	for i, want := range []struct {
		db.BotLoad
		used bool
	}{
		{db.BotLoad{BotID: bot(1), Sends: 2}, true},
		{db.BotLoad{BotID: bot(2), Sends: 1, Failures: 1, FloodWaitUntil: until}, true},
		{db.BotLoad{BotID: bot(3), Failures: 1, FloodWaitUntil: until}, false},
	} {
		l := loads[i]
		equal(t, "(bot, sends, failures)", []int64{l.BotID, l.Sends, l.Failures}, []int64{want.BotID, want.Sends, want.Failures})
		floodWait(t, fmt.Sprint("bot ", l.BotID), l.FloodWaitUntil, want.FloodWaitUntil)
		if l.LastUsedAt.IsZero() == want.used {
			t.Fatalf("bot %d last used at %v", l.BotID, l.LastUsedAt)
		}
	}
}

func testBotSendsInFlight(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "in flight of no bot", must(d.BotSendsInFlight(t.Context(), time.Hour)).of(t), map[int64]int{})
	l1 := lease(t, d, 1)
	lease(t, d, 1)
	lease(t, d, 2)
	use(t, d, 3) // released: not in flight
	equal(t, "in flight", must(d.BotSendsInFlight(t.Context(), time.Hour)).of(t), map[int64]int{bot(1): 2, bot(2): 1})
	release(t, d, 1, l1, time.Time{})
	equal(t, "after a release", must(d.BotSendsInFlight(t.Context(), time.Hour)).of(t), map[int64]int{bot(1): 1, bot(2): 1})
	// Leases older than lease (a process that died mid-send) do not count.
	time.Sleep(300 * time.Millisecond)
	lease(t, d, 2)
	equal(t, "within 200ms", must(d.BotSendsInFlight(t.Context(), 200*time.Millisecond)).of(t), map[int64]int{bot(2): 1})
}
