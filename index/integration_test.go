package index_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
)

// The five scenarios of the issue, against real Postgres and a real S3
// server (versitygw). One versitygw process serves all of them; each
// scenario uses its own unique ids and databases.
func TestScenarios(t *testing.T) {
	srv := r2test.StartVersity(t)
	t.Run("NewFile", func(t *testing.T) { scenarioNewFile(t, srv) })
	t.Run("ElevenBotsOnePost", func(t *testing.T) { scenarioElevenBots(t, srv) })
	t.Run("SecondDeploymentSameBucket", func(t *testing.T) { scenarioSecondDeployment(t, srv) })
	t.Run("TwentyConcurrentWriters", func(t *testing.T) { scenarioTwentyWriters(t, srv) })
	// Last: it stops and restarts the server.
	t.Run("S3StoppedDuringPost", func(t *testing.T) { scenarioS3Stopped(t, srv) })
}

// A new file: rows, the exact JSON, "File Stored Successfully", DC 4.
func scenarioNewFile(t *testing.T, srv *r2test.Server) {
	ctx := context.Background()
	pool := dbtest.New(t)
	store := newStore(t, srv.Options())
	ix := newIndexer(t, pool, store)

	const uid = "AgAD-A0AAij8UVE"
	p := moviePost(t, 1, uid, -1001234567890, 6402)
	p.FileID = publicDocumentDC4
	dc, err := index.DCFromFileID(p.FileID)
	if err != nil || dc != 4 {
		t.Fatalf("DC of the real file_id = %d, %v; want 4", dc, err)
	}
	out, err := ix.IndexCommit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	// The lookup created the object, so no R2 job is needed.
	if out.Existing || !out.Reply || out.NeedR2Write || !out.R2Checked || out.R2Error != nil || out.ClaimedBySlot != 1 {
		t.Fatalf("outcome = %+v", out)
	}
	if out.File.DC != 4 || out.File.Name != "movie.mkv" || out.File.Size != 1774606367 || out.File.Origin != "local" {
		t.Fatalf("file = %+v", out.File)
	}
	if f, err := pool.FileGet(ctx, uid); err != nil || f.DC != 4 || f.ChatID != -1001234567890 || f.MessageID != 6402 || f.MimeType != "video/x-matroska" {
		t.Fatalf("files row = %+v, %v", f, err)
	}
	hs, err := pool.HolderList(ctx, uid, time.Minute)
	if err != nil || len(hs) != 1 || hs[0].Slot != 1 || hs[0].BotID != 1001 || hs[0].FileID != publicDocumentDC4 {
		t.Fatalf("file_bot_ids rows = %+v, %v", hs, err)
	}
	if pendingR2(t, pool, uid) {
		t.Fatal("file created in R2 still marked for R2")
	}
	if o, ok := outcomeOf(t, pool, -1001234567890, 6402, uid); !ok || o.Existing || o.ClaimedBySlot != 1 {
		t.Fatalf("channel_posts row = %+v %v", o, ok)
	}

	text, button := index.FormatReply(out, ix.ViewURL(uid))
	for _, want := range []string{"File Stored Successfully", "<b>Name:</b> movie.mkv", "<b>Size:</b> 1.65 GB", "<b>Type:</b> video/x-matroska", "<b>Location:</b> DC 4"} {
		if !strings.Contains(text, want) {
			t.Fatalf("reply lacks %q:\n%s", want, text)
		}
	}
	if button.Text != "View File" || button.URL != "https://ferry.example/f/"+uid {
		t.Fatalf("button = %+v", button)
	}

	raw, err := store.GetRaw(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"unique_id":"AgAD-A0AAij8UVE","bot_file_ids":{"b_1_file_id":"` + publicDocumentDC4 + `"},"caption":"movie.mkv","file_size_bytes":1774606367,"file_type":"document","original_message_id":6402,"source_channel_id":-1001234567890,"file_name":"movie.mkv","mime_type":"video/x-matroska"}`
	if string(raw) != want {
		t.Fatalf("R2 object\n got %s\nwant %s", raw, want)
	}
	// An R2 job finds nothing to do and does not rewrite the object.
	_, etag1, _ := store.Get(ctx, uid)
	if err := ix.SyncR2(ctx, uid); err != nil {
		t.Fatal(err)
	}
	_, etag2, _ := store.Get(ctx, uid)
	if etag1 != etag2 {
		t.Fatal("idle SyncR2 rewrote the object")
	}
	// The same bot seeing the same post again (a River retry of a committed
	// job) neither replies again nor asks for another R2 write.
	again, err := ix.IndexCommit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if again.Reply || again.NeedR2Write || again.Existing {
		t.Fatalf("retry outcome = %+v", again)
	}
}

// The same post seen by b_1..b_11 at once: one reply, one object with
// eleven b_N_file_id entries.
func scenarioElevenBots(t *testing.T, srv *r2test.Server) {
	ctx := context.Background()
	pool := dbtest.New(t)
	store := newStore(t, srv.Options())
	ix := newIndexer(t, pool, store)
	const uid = "AgADelevenbots"
	const chat, msg = int64(-1005550001), int64(77)

	outs := make([]index.Outcome, 12)
	errs := make([]error, 12)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for slot := 1; slot <= 11; slot++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			outs[slot], errs[slot] = ix.IndexCommit(ctx, moviePost(t, slot, uid, chat, msg))
		}()
	}
	close(start)
	wg.Wait()
	replies, claimer, needR2 := 0, 0, 0
	for slot := 1; slot <= 11; slot++ {
		if errs[slot] != nil {
			t.Fatalf("slot %d: %v", slot, errs[slot])
		}
		o := outs[slot]
		if o.Reply {
			replies++
			claimer = slot
		}
		if o.Existing {
			t.Fatalf("slot %d says existing for a new file: %+v", slot, o)
		}
		if o.NeedR2Write {
			needR2++
		}
	}
	// The batches ran one at a time on the new file: the first created the
	// object with its file_id, each later one marked its own for R2.
	if needR2 != 10 {
		t.Fatalf("%d of 11 sightings need an R2 write, want 10", needR2)
	}
	if replies != 1 {
		t.Fatalf("%d replies, want exactly 1", replies)
	}
	for slot := 1; slot <= 11; slot++ {
		if outs[slot].ClaimedBySlot != claimer {
			t.Fatalf("slot %d sees claimer %d, want %d", slot, outs[slot].ClaimedBySlot, claimer)
		}
	}
	if n := len(dbFileIDs(t, pool, uid)); n != 11 {
		t.Fatalf("file_bot_ids rows = %d, want 11", n)
	}
	if o, ok := outcomeOf(t, pool, chat, msg, uid); !ok || o.ClaimedBySlot != claimer {
		t.Fatalf("channel_posts row = %+v %v", o, ok)
	}

	// Every bot's R2 job runs, all at once (worse than River's unique job,
	// which would run one): still one object holding all eleven.
	var swg sync.WaitGroup
	serrs := make(chan error, 11)
	for slot := 1; slot <= 11; slot++ {
		swg.Add(1)
		go func() { defer swg.Done(); serrs <- ix.SyncR2(ctx, uid) }()
	}
	swg.Wait()
	close(serrs)
	for err := range serrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rec, _, err := store.Get(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameMap(rec.BotFileIDs, dbFileIDs(t, pool, uid)); err != nil || len(rec.BotFileIDs) != 11 {
		t.Fatalf("object bot_file_ids %v differ from the database (%v)", rec.BotFileIDs, err)
	}
	for slot := 1; slot <= 11; slot++ {
		if rec.BotFileIDs[r2.SlotKey(slot)] != botFileID(t, publicDocumentDC4, slot) {
			t.Fatalf("%s wrong: %v", r2.SlotKey(slot), rec.BotFileIDs)
		}
	}
}

// A second deployment (own database, same bucket) posting the same file:
// "File Already Exists", and its bots' ids merged without clobbering.
func scenarioSecondDeployment(t *testing.T, srv *r2test.Server) {
	ctx := context.Background()
	const uid = "AgADshared"
	storeA, storeB := newStore(t, srv.Options()), newStore(t, srv.Options())
	poolA, poolB := dbtest.New(t), dbtest.New(t)
	a, b := newIndexer(t, poolA, storeA), newIndexer(t, poolB, storeB)

	outA, err := a.IndexCommit(ctx, moviePost(t, 1, uid, -1001111, 10))
	if err != nil {
		t.Fatal(err)
	}
	if outA.Existing || !outA.Reply {
		t.Fatalf("deployment A: %+v", outA)
	}
	if err := a.SyncR2(ctx, uid); err != nil {
		t.Fatal(err)
	}

	// Deployment B's bots: its slot 1 is a different bot (other file_id),
	// its slot 2 is new to the object.
	pB1 := moviePost(t, 1, uid, -1002222, 20)
	pB1.FileID = botFileID(t, publicDocumentDC4, 101)
	outB, err := b.IndexCommit(ctx, pB1)
	if err != nil {
		t.Fatal(err)
	}
	if !outB.Existing || !outB.Reply || !outB.R2Checked || outB.File.Origin != "r2" {
		t.Fatalf("deployment B: %+v", outB)
	}
	text, _ := index.FormatReply(outB, b.ViewURL(uid))
	if !strings.Contains(text, "File Already Exists") || strings.Contains(text, "Stored") {
		t.Fatalf("B's reply:\n%s", text)
	}
	if o, ok := outcomeOf(t, poolB, -1002222, 20, uid); !ok || !o.Existing {
		t.Fatalf("B recorded %+v %v, want existing", o, ok)
	}
	if _, err := b.IndexCommit(ctx, moviePost(t, 2, uid, -1002222, 20)); err != nil {
		t.Fatal(err)
	}
	if err := b.SyncR2(ctx, uid); err != nil {
		t.Fatal(err)
	}
	rec, _, err := storeA.Get(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		r2.SlotKey(1): botFileID(t, publicDocumentDC4, 1), // A's b_1 kept (first writer wins)
		r2.SlotKey(2): botFileID(t, publicDocumentDC4, 2), // B's b_2 merged
	}
	if err := sameMap(want, rec.BotFileIDs); err != nil {
		t.Fatalf("object bot_file_ids = %v: %v", rec.BotFileIDs, err)
	}
	if rec.SourceChannelID != -1001111 || rec.OriginalMessageID != 10 {
		t.Fatalf("first writer's metadata replaced: %+v", rec)
	}

	// And in A: a later post of the same file is "already exists" without
	// asking R2 (the database knows).
	again, err := a.IndexCommit(ctx, moviePost(t, 3, uid, -1003333, 30))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Existing || !again.Reply || again.R2Checked {
		t.Fatalf("A's second post: %+v", again)
	}
}

// S3 down while the post is indexed: the outcome (and so the reply) still
// comes, the R2 write fails and is retried, and lands once S3 is back.
func scenarioS3Stopped(t *testing.T, srv *r2test.Server) {
	ctx := context.Background()
	pool := dbtest.New(t)
	store := newStore(t, srv.Options())
	ix := newIndexer(t, pool, store)
	const uid = "AgADoutage"

	srv.Stop()
	out, err := ix.IndexCommit(ctx, moviePost(t, 1, uid, -1009999, 5))
	if err != nil {
		t.Fatalf("Index with S3 down: %v", err)
	}
	if out.Existing || !out.Reply || !out.NeedR2Write || out.R2Error == nil {
		t.Fatalf("outcome with S3 down = %+v", out)
	}
	text, _ := index.FormatReply(out, ix.ViewURL(uid))
	if !strings.Contains(text, "File Stored Successfully") {
		t.Fatalf("reply: %s", text)
	}
	// The R2 job's first attempts fail, and mark nothing.
	for i := 0; i < 2; i++ {
		if err := ix.SyncR2(ctx, uid); err == nil {
			t.Fatal("SyncR2 succeeded with S3 down")
		}
	}
	if !pendingR2(t, pool, uid) {
		t.Fatal("mark cleared during the outage")
	}
	// A second bot joins while S3 is still down.
	if _, err := ix.IndexCommit(ctx, moviePost(t, 2, uid, -1009999, 5)); err != nil {
		t.Fatal(err)
	}

	srv.Start()
	// The retried job (or the periodic sweeper) lands it with no manual step.
	n, err := ix.SyncPending(ctx, 0, 2)
	if err != nil || n != 1 {
		t.Fatalf("SyncPending = %d, %v; want 1 file", n, err)
	}
	rec, _, err := store.Get(ctx, uid)
	if err != nil {
		t.Fatalf("object after S3 came back: %v", err)
	}
	if err := sameMap(rec.BotFileIDs, dbFileIDs(t, pool, uid)); err != nil || len(rec.BotFileIDs) != 2 {
		t.Fatalf("object = %v (%v)", rec.BotFileIDs, err)
	}
	if err := ix.SyncR2(ctx, uid); err != nil {
		t.Fatalf("retry after landing: %v", err)
	}
	if n, err := ix.SyncPending(ctx, 0, 2); err != nil || n != 0 {
		t.Fatalf("nothing should be pending: %d, %v", n, err)
	}
}

// 20 bots' R2 writes racing on one key, each job running right after its own
// bot's rows commit (so each sees a different subset): none is lost.
func scenarioTwentyWriters(t *testing.T, srv *r2test.Server) {
	ctx := context.Background()
	pool := dbtest.New(t)
	store := newStore(t, srv.Options())
	ix := newIndexer(t, pool, store)
	const uid = "AgADtwentywriters"

	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for slot := 1; slot <= 20; slot++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := ix.IndexCommit(ctx, moviePost(t, slot, uid, -1004040, 40)); err != nil {
				errs <- fmt.Errorf("index slot %d: %w", slot, err)
				return
			}
			if err := ix.SyncR2(ctx, uid); err != nil {
				errs <- fmt.Errorf("sync slot %d: %w", slot, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rec, _, err := store.Get(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.BotFileIDs) != 20 {
		t.Fatalf("object has %d file ids, want 20: %v", len(rec.BotFileIDs), rec.BotFileIDs)
	}
	if err := sameMap(rec.BotFileIDs, dbFileIDs(t, pool, uid)); err != nil {
		t.Fatal(err)
	}

	// And 20 independent writers (20 deployments' jobs, each with only its
	// own key) on another object, straight through the store.
	const uid2 = "AgADtwentystores"
	var wg2 sync.WaitGroup
	errs2 := make(chan error, 20)
	for i := 1; i <= 20; i++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			s := newStore(t, srv.Options())
			rec := r2.Record{UniqueID: uid2, FileType: "document", BotFileIDs: r2.BotFileIDs{r2.SlotKey(i): fmt.Sprintf("fid-%d", i)}}
			err := s.Create(ctx, rec)
			if errors.Is(err, r2.ErrExists) {
				_, err = s.Merge(ctx, rec)
			}
			errs2 <- err
		}()
	}
	wg2.Wait()
	close(errs2)
	for err := range errs2 {
		if err != nil {
			t.Fatal(err)
		}
	}
	rec, _, err = store.Get(ctx, uid2)
	if err != nil || len(rec.BotFileIDs) != 20 {
		t.Fatalf("independent writers: %d ids (%v)", len(rec.BotFileIDs), err)
	}
}
