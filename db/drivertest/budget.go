package drivertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// budgetAt is a time the budget cases write: whole microseconds, as both
// drivers keep them.
func budgetAt(d time.Duration) time.Time {
	return time.Now().Add(d).Truncate(time.Microsecond)
}

// sameBudget fails t unless got and want are the same rows (times compared
// as instants).
func sameBudget(t testing.TB, what string, got, want []db.SendBudget) {
	t.Helper()
	str := func(rs []db.SendBudget) string {
		s := ""
		for _, r := range rs {
			s += fmt.Sprintf("{bot %d chat %d next %d blocked %d sends %d queued %d refused %d} ", r.BotID, r.ChatID,
				micro(r.NextAt), micro(r.BlockedUntil), r.Sends, r.Queued, r.Refused)
		}
		return s
	}
	if g, w := str(got), str(want); g != w {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func micro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func lockBudget(t testing.TB, e db.Executor, chatID int64, bots ...int64) []db.SendBudget {
	t.Helper()
	return must(e.SendBudgetLock(context.Background(), chatID, bots)).of(t)
}

func testSendBudgetLock(t *testing.T, s *suite) {
	t.Run("CreatesEachBotsRows", func(t *testing.T) {
		d := s.driver(t)
		inTx(t, d, func(tx db.Tx) {
			equal(t, "rows of no bot", lockBudget(t, tx, chat), nil)
			sameBudget(t, "fresh rows", lockBudget(t, tx, chat, bot(2), bot(1)), []db.SendBudget{
				{BotID: bot(1), ChatID: chat}, {BotID: bot(1)}, {BotID: bot(2), ChatID: chat}, {BotID: bot(2)}})
		})
		// The bot's own row is shared by its chats.
		inTx(t, d, func(tx db.Tx) {
			sameBudget(t, "a private chat's rows", lockBudget(t, tx, 77, bot(1)), []db.SendBudget{
				{BotID: bot(1)}, {BotID: bot(1), ChatID: 77}})
			sameBudget(t, "the bot's row alone", lockBudget(t, tx, 0, bot(1)), []db.SendBudget{{BotID: bot(1)}})
		})
	})
	t.Run("WaitsForAnotherLock", func(t *testing.T) {
		s.concurrent(t)
		d := s.driver(t)
		next := budgetAt(time.Minute)
		tx := begin(t, d)
		rows := lockBudget(t, tx, chat, bot(1))
		rows[0].NextAt, rows[0].Sends = next, 1
		wait := waits(t, "a second lock of the same rows", func() error {
			return db.WithTx(context.Background(), d, func(tx2 db.Tx) error {
				got, err := tx2.SendBudgetLock(context.Background(), chat, []int64{bot(1)})
				if err == nil && (micro(got[0].NextAt) != micro(next) || got[0].Sends != 1) {
					err = fmt.Errorf("the second lock read %+v, not the first's write", got[0])
				}
				return err
			})
		})
		check(t, tx.SendBudgetSave(context.Background(), rows))
		check(t, tx.Commit(context.Background()))
		check(t, wait())
	})
}

func testSendBudgetSave(t *testing.T, s *suite) {
	d := s.driver(t)
	next, later := budgetAt(3*time.Second), budgetAt(time.Hour)
	txMatters(t, d, func(tx db.Tx) {
		rows := lockBudget(t, tx, chat, bot(1), bot(2))
		rows[0].NextAt = next                                       // bot 1 in chat
		rows[1].NextAt, rows[1].Sends, rows[1].Queued = later, 5, 2 // bot 1
		check(t, tx.SendBudgetSave(context.Background(), rows[:2]))
	}, func() {
		inTx(t, d, func(tx db.Tx) {
			for _, r := range lockBudget(t, tx, chat, bot(1)) {
				if !r.NextAt.IsZero() || r.Sends != 0 {
					t.Fatalf("rolled back save left %+v", r)
				}
			}
		})
	}, func() {
		inTx(t, d, func(tx db.Tx) {
			sameBudget(t, "saved rows", lockBudget(t, tx, chat, bot(1), bot(2)), []db.SendBudget{
				{BotID: bot(1), ChatID: chat, NextAt: next}, {BotID: bot(1), NextAt: later, Sends: 5, Queued: 2},
				{BotID: bot(2), ChatID: chat}, {BotID: bot(2)}})
			// A zero NextAt clears it; a row that does not exist is not made.
			check(t, tx.SendBudgetSave(context.Background(), []db.SendBudget{{BotID: bot(1), ChatID: chat}, {BotID: bot(9), ChatID: chat, Sends: 1}}))
		})
		sameBudget(t, "after clearing", must(d.SendBudgetList(context.Background(), time.Now())).of(t), []db.SendBudget{
			{BotID: bot(1), NextAt: later, Sends: 5, Queued: 2}, {BotID: bot(2)}})
	})
}

func testSendBudgetBlock(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := context.Background()
	soon, later := budgetAt(10*time.Second), budgetAt(time.Minute)
	check(t, d.SendBudgetBlock(ctx, bot(1), chat, later))
	check(t, d.SendBudgetBlock(ctx, bot(1), chat, soon)) // an earlier end does not shorten it
	sameBudget(t, "blocked in one chat", must(d.SendBudgetList(ctx, time.Now())).of(t), []db.SendBudget{
		{BotID: bot(1), ChatID: chat, BlockedUntil: later}, {BotID: bot(1), Refused: 2}})
	check(t, d.SendBudgetBlock(ctx, bot(1), 0, soon))
	check(t, d.SendBudgetBlock(ctx, bot(2), 0, later))
	check(t, d.SendBudgetBlock(ctx, bot(2), 0, soon))
	sameBudget(t, "blocked everywhere", must(d.SendBudgetList(ctx, time.Now())).of(t), []db.SendBudget{
		{BotID: bot(1), ChatID: chat, BlockedUntil: later}, {BotID: bot(1), BlockedUntil: soon, Refused: 3},
		{BotID: bot(2), BlockedUntil: later, Refused: 2}})
	// Lock reads what Block wrote.
	inTx(t, d, func(tx db.Tx) {
		sameBudget(t, "locked after a block", lockBudget(t, tx, chat, bot(1)), []db.SendBudget{
			{BotID: bot(1), ChatID: chat, BlockedUntil: later}, {BotID: bot(1), BlockedUntil: soon, Refused: 3}})
	})
}

func testSendBudgetList(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := context.Background()
	equal(t, "an empty budget", must(d.SendBudgetList(ctx, time.Now())).of(t), nil)
	past, busy := budgetAt(-time.Minute), budgetAt(time.Minute)
	inTx(t, d, func(tx db.Tx) {
		a := lockBudget(t, tx, -5, bot(1))
		b := lockBudget(t, tx, -6, bot(1))
		a[0].NextAt, b[0].NextAt = busy, past // chat -6's turn is over
		check(t, tx.SendBudgetSave(ctx, []db.SendBudget{a[0], b[0]}))
	})
	sameBudget(t, "bots and busy chats", must(d.SendBudgetList(ctx, time.Now())).of(t), []db.SendBudget{
		{BotID: bot(1), ChatID: -5, NextAt: busy}, {BotID: bot(1)}})
	sameBudget(t, "as of two minutes ago", must(d.SendBudgetList(ctx, time.Now().Add(-2*time.Minute))).of(t), []db.SendBudget{
		{BotID: bot(1), ChatID: -6, NextAt: past}, {BotID: bot(1), ChatID: -5, NextAt: busy}, {BotID: bot(1)}})
}

func testFileBotIDBotsInChat(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := context.Background()
	equal(t, "bots of no file", must(d.FileBotIDBotsInChat(ctx, chat, []string{"u1"})).of(t), nil)
	index(t, d, post(1, "u1", 3), post(1, "u1", 1), post(2, "u2", 2))
	other := post(3, "u3", 4)
	other.ChatID = -2002
	index(t, d, other)
	equal(t, "bots of u1", must(d.FileBotIDBotsInChat(ctx, chat, []string{"u1"})).of(t), []int64{bot(1), bot(3)})
	equal(t, "bots of u1..u3", must(d.FileBotIDBotsInChat(ctx, chat, []string{"u1", "u2", "u3"})).of(t), []int64{bot(1), bot(2), bot(3)})
	equal(t, "bots of u3 in its chat", must(d.FileBotIDBotsInChat(ctx, -2002, []string{"u1", "u3"})).of(t), []int64{bot(4)})
}

func testSendBudgetPrune(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := context.Background()
	old, recent, ahead := budgetAt(-time.Hour), budgetAt(-time.Second), budgetAt(time.Minute)
	inTx(t, d, func(tx db.Tx) {
		var rows []db.SendBudget
		for _, c := range []int64{-1, -2, -3, -4, 5} {
			rows = append(rows, lockBudget(t, tx, c, bot(1))...)
		}
		for i := range rows {
			switch rows[i].ChatID {
			case 0:
				rows[i].NextAt, rows[i].Sends = old, 9 // the bot's row: kept however old
			case -1:
				rows[i].NextAt = old
			case -2:
				rows[i].NextAt = recent
			case -3:
				rows[i].NextAt = ahead
			case 5: // never used: no NextAt
			}
		}
		check(t, tx.SendBudgetSave(ctx, rows))
	})
	check(t, d.SendBudgetBlock(ctx, bot(1), -4, ahead)) // chat -4: old turn, 429 still on
	check(t, d.SendBudgetBlock(ctx, bot(2), -1, old))   // bot 2 in chat -1: its 429 is over
	n := must(d.SendBudgetPrune(ctx, budgetAt(-time.Minute))).of(t)
	equal(t, "rows pruned", n, int64(3)) // bot 1 in -1 and 5, bot 2 in -1
	sameBudget(t, "after the prune", must(d.SendBudgetList(ctx, time.Now().Add(-2*time.Hour))).of(t), []db.SendBudget{
		{BotID: bot(1), ChatID: -4, BlockedUntil: ahead}, {BotID: bot(1), ChatID: -3, NextAt: ahead},
		{BotID: bot(1), ChatID: -2, NextAt: recent}, {BotID: bot(1), NextAt: old, Sends: 9, Refused: 1},
		{BotID: bot(2), Refused: 1}})
	equal(t, "a second prune", must(d.SendBudgetPrune(ctx, budgetAt(-time.Minute))).of(t), int64(0))
}

// testSendBudgetLockBesidePrune: locks taken while another process prunes
// the same spent rows get every row, every time.
func testSendBudgetLockBesidePrune(t *testing.T, s *suite) {
	s.concurrent(t)
	d := s.driver(t)
	ctx := context.Background()
	old := budgetAt(-time.Hour)
	stop := make(chan struct{})
	pruned := make(chan int64)
	go func() {
		var n int64
		for {
			select {
			case <-stop:
				pruned <- n
				return
			default:
			}
			k, err := d.SendBudgetPrune(ctx, budgetAt(-time.Minute))
			if err != nil {
				t.Error(err)
			}
			n += k
		}
	}()
	for i := range 300 {
		inTx(t, d, func(tx db.Tx) {
			rows := lockBudget(t, tx, chat, bot(1), bot(2))
			if len(rows) != 4 {
				t.Fatalf("lock %d beside a prune got %d rows, want 4: %+v", i, len(rows), rows)
			}
			for j := range rows {
				rows[j].NextAt = old // spent at once: the next prune takes the chat rows
			}
			check(t, tx.SendBudgetSave(ctx, rows))
		})
	}
	close(stop)
	if n := <-pruned; n == 0 {
		t.Fatal("the prune never removed a row: the test proves nothing")
	} else {
		t.Logf("%d rows pruned beside 300 locks", n)
	}
}
