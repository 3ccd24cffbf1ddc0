package dbpg_test

import (
	"slices"
	"testing"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbpg"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/db/drivertest"
)

// TestDriver runs the conformance suite on Postgres, whose transactions
// write concurrently.
func TestDriver(t *testing.T) {
	drivertest.Run(t, func(t *testing.T) db.Driver { return dbtest.NewPostgres(t) },
		drivertest.Capabilities{ConcurrentWriters: true})
}

// TestSightingBatchTakeOrderAfterVacuum: once vacuumed, sighting_batches
// puts a new batch in the slot an old one freed, ahead of older ones in the
// table's pages; the batches still come in arrival order.
func TestSightingBatchTakeOrderAfterVacuum(t *testing.T) {
	d := dbtest.NewPostgres(t)
	ctx := t.Context()
	accept := func(msg int64) {
		t.Helper()
		p := db.Post{ChatID: -1, MessageID: msg, BotID: 1, UniqueID: "u", FileID: "f", Type: "video"}
		if _, err := d.UpdateAcceptMany(ctx, &db.UpdateAcceptManyParams{Counter: 1, Sightings: []db.Post{p}}); err != nil {
			t.Fatal(err)
		}
	}
	take := func(max int) (msgs []int64) {
		t.Helper()
		ps, err := d.SightingBatchTake(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			msgs = append(msgs, p.MessageID)
		}
		return msgs
	}
	for msg := range int64(10) {
		accept(msg)
	}
	take(1) // frees the first slot
	if _, err := d.(*dbpg.Driver).Pool().Exec(ctx, "VACUUM sighting_batches"); err != nil {
		t.Fatal(err)
	}
	accept(10)
	if got, want := take(100), []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(got, want) {
		t.Fatalf("took messages %v, want arrival order %v", got, want)
	}
}
