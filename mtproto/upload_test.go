package mtproto_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotd/td/tg"

	"github.com/ferry-dev/ferry/db"

	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

func deliverFile(t *testing.T, e *env, key, path string, size int64, progress func(mtproto.Progress)) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := *e.peer
	p.Caption = "caption " + key
	id, err := mtproto.Deliver(ctx, e.up, e.snd, mtproto.UploadRequest{Key: key, Name: "file.bin", Size: size, ReaderAt: f, OnProgress: progress}, p)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestUpload64MiBArrivesIdentical(t *testing.T) {
	e := newEnv(t, mtprototest.Options{}, 8)
	const size = 64<<20 + 12345
	path, sum := writeRandomFile(t, t.TempDir(), size, 1)
	var last mtproto.Progress
	calls := 0
	id := deliverFile(t, e, "k64", path, size, func(p mtproto.Progress) { last = p; calls++ })
	posts := e.srv.Posts()
	if len(posts) != 1 {
		t.Fatalf("posts = %d, want 1", len(posts))
	}
	p := posts[0]
	if p.SHA256 != sum || p.Size != size || p.MessageID != id || p.Name != "file.bin" || p.Caption != "caption k64" || !p.Big {
		t.Fatalf("post = %+v, want sha %s size %d id %d", p, sum, size, id)
	}
	parts := (size + mtproto.PartSize - 1) / mtproto.PartSize
	if got := e.srv.PartRequests(); got != int64(parts) {
		t.Fatalf("part requests = %d, want %d", got, parts)
	}
	if calls != parts || last.Acked != size || last.Total != size || last.Parts != parts || last.Speed <= 0 {
		t.Fatalf("progress calls %d, last %+v", calls, last)
	}
	// Acks are saved in batches, not one write per part.
	st, err := e.db.UploadStateGet(context.Background(), "k64")
	if err != nil {
		t.Fatal(err)
	}
	saved := mtproto.Bitmap(st.Acked).Count()
	t.Logf("%d parts, %d state writes before the last ack, %.0f MB/s", parts, last.Saves, last.Speed/1e6)
	if saved != parts || last.Saves >= parts/2 {
		t.Fatalf("saved acked_count %d (want %d), writes %d", saved, parts, last.Saves)
	}
	// Posting again with the same key is a no-op returning the same id.
	if id2 := deliverFile(t, e, "k64", path, size, nil); id2 != id || len(e.srv.Posts()) != 1 {
		t.Fatalf("second deliver: id %d (want %d), posts %d", id2, id, len(e.srv.Posts()))
	}
}

func TestSmallFileUsesSaveFilePartWithMD5(t *testing.T) {
	e := newEnv(t, mtprototest.Options{}, 4)
	const size = 3<<20 + 7
	path, sum := writeRandomFile(t, t.TempDir(), size, 2)
	deliverFile(t, e, "small", path, size, nil)
	posts := e.srv.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Big {
		t.Fatalf("posts = %+v", posts)
	}
	if e.srv.Calls("upload.saveFilePart") != 7 || e.srv.Calls("upload.saveBigFilePart") != 0 {
		t.Fatalf("saveFilePart %d, saveBigFilePart %d", e.srv.Calls("upload.saveFilePart"), e.srv.Calls("upload.saveBigFilePart"))
	}
}

func TestTooLargeRefusedBeforeAnyPart(t *testing.T) {
	e := newEnv(t, mtprototest.Options{}, 4)
	path := t.TempDir() + "/huge.bin"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 2001 << 20
	if err := f.Truncate(size); err != nil { // sparse: no bytes written
		t.Fatal(err)
	}
	defer f.Close()
	_, err = e.up.Upload(context.Background(), mtproto.UploadRequest{Key: "huge", Name: "huge.bin", Size: size, ReaderAt: f})
	if !errors.Is(err, mtproto.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	t.Log(err)
	if n := e.srv.PartRequests(); n != 0 {
		t.Fatalf("%d parts sent for a refused file", n)
	}
	if _, ok, _ := e.store.Load(context.Background(), "huge"); ok {
		t.Fatal("state saved for a refused file")
	}
	// Exactly 2000 MiB passes the check; premium allows up to 4000 MiB.
	if err := e.up.CheckSize(2000 << 20); err != nil {
		t.Fatal(err)
	}
	if err := e.up.WithPremium(true).CheckSize(size); err != nil {
		t.Fatal(err)
	}
	if err := e.up.WithPremium(true).CheckSize(4001 << 20); !errors.Is(err, mtproto.ErrTooLarge) {
		t.Fatalf("premium 4001 MiB: %v", err)
	}
}

// gatedDB holds every save of acknowledged parts until the gate opens.
type gatedDB struct {
	db.Driver
	gate  chan struct{}
	saves atomic.Int32
}

func (g *gatedDB) UploadStateSaveAcked(ctx context.Context, key string, fileID int64, acked []byte, count int) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.saves.Add(1)
	return g.Driver.UploadStateSaveAcked(ctx, key, fileID, acked, count)
}

// lateFirstSave holds the upload's first save until the second one has
// committed, then records what the database holds once the first (older,
// smaller) bitmap has been written after it.
type lateFirstSave struct {
	db.Driver
	calls      atomic.Int32
	second     chan struct{} // closed when the second save returned
	first      chan struct{} // closed when the first save returned
	secondSeen atomic.Int32  // parts in the second save
	afterLate  atomic.Int32  // parts stored once the first save returned
	firstSeen  atomic.Int32
}

func (l *lateFirstSave) UploadStateSaveAcked(ctx context.Context, key string, fileID int64, acked []byte, count int) error {
	switch l.calls.Add(1) {
	case 1:
		l.firstSeen.Store(int32(count))
		select {
		case <-l.second:
		case <-ctx.Done():
			return ctx.Err()
		}
		err := l.Driver.UploadStateSaveAcked(ctx, key, fileID, acked, count)
		if st, gerr := l.Driver.UploadStateGet(ctx, key); gerr == nil {
			l.afterLate.Store(int32(mtproto.Bitmap(st.Acked).Count()))
		}
		close(l.first)
		return err
	case 2:
		err := l.Driver.UploadStateSaveAcked(ctx, key, fileID, acked, count)
		l.secondSeen.Store(int32(count))
		close(l.second)
		return err
	}
	// Later saves wait for the first, so it lands right after the second.
	select {
	case <-l.first:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.Driver.UploadStateSaveAcked(ctx, key, fileID, acked, count)
}

// Two saves run at once, so one stalled save does not hold back the next,
// and they may land out of order: the older, smaller bitmap landing last
// leaves the newer one in the database, its slots were freed already, and
// every part is sent exactly once.
func TestSavesLandOutOfOrder(t *testing.T) {
	const threads = 4
	e := newEnv(t, mtprototest.Options{}, threads)
	l := &lateFirstSave{Driver: e.db, second: make(chan struct{}), first: make(chan struct{})}
	pool, err := e.client.Pool()
	if err != nil {
		t.Fatal(err)
	}
	up := mtproto.NewUploader(pool, mtproto.NewStateStore(l)).WithThreads(threads).WithBotID(e.client.BotID()).
		WithFlush(2, time.Second, 0)
	const size = 40 << 20 // 80 parts
	path, sum := writeRandomFile(t, t.TempDir(), size, 7)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file, err := up.Upload(context.Background(), mtproto.UploadRequest{Key: "late", Name: "l.bin", Size: size, ReaderAt: f})
	if err != nil {
		t.Fatal(err)
	}
	first, second, after := l.firstSeen.Load(), l.secondSeen.Load(), l.afterLate.Load()
	t.Logf("first save %d parts, second %d, stored after the first landed %d; %d saves", first, second, after, l.calls.Load())
	if first <= 0 || second <= first {
		t.Fatalf("first save %d parts, second %d: want the second to cover more", first, second)
	}
	if after != second {
		t.Fatalf("the late first save rolled the bitmap back to %d parts (the second saved %d)", after, second)
	}
	savedSentOnceAndPosted(t, e, "late", "l.bin", file, 80, sum)
}

// savedSentOnceAndPosted fails t unless key's saved state holds all parts,
// the server got each exactly once, and the file posted as name has the
// bytes of sum.
func savedSentOnceAndPosted(t *testing.T, e *env, key, name string, file tg.InputFileClass, parts int, sum string) {
	t.Helper()
	st, err := e.db.UploadStateGet(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if got := mtproto.Bitmap(st.Acked).Count(); got != parts || e.srv.PartRequests() != int64(parts) {
		t.Fatalf("saved %d parts, sent %d, want %d and %d", got, e.srv.PartRequests(), parts, parts)
	}
	// The parts make the file: post it and compare the bytes.
	p := *e.peer
	p.Key, p.File, p.Name = key, file, name
	id, err := e.snd.Send(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if posts := e.srv.Posts(); len(posts) != 1 || posts[0].SHA256 != sum || posts[0].MessageID != id {
		t.Fatalf("posts = %+v", posts)
	}
}

// With the database stalled, acknowledgements run one thread count ahead of
// the saves (the window counts parts in flight only) and then stop: at most
// 2 × threads parts are ever unsaved, which is what a crash can re-send.
func TestAcksRunAheadOfSavesBounded(t *testing.T) {
	const threads = 4
	e := newEnv(t, mtprototest.Options{}, threads)
	g := &gatedDB{Driver: e.db, gate: make(chan struct{})}
	pool, err := e.client.Pool()
	if err != nil {
		t.Fatal(err)
	}
	up := mtproto.NewUploader(pool, mtproto.NewStateStore(g)).WithThreads(threads).WithBotID(e.client.BotID())
	const size = 40 << 20 // 80 parts
	path, sum := writeRandomFile(t, t.TempDir(), size, 6)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	var file tg.InputFileClass
	go func() {
		var err error
		file, err = up.Upload(context.Background(), mtproto.UploadRequest{Key: "gated", Name: "g.bin", Size: size, ReaderAt: f})
		done <- err
	}()
	// Wait for the sends to stop while no save can finish.
	deadline := time.Now().Add(30 * time.Second)
	var sent int64
	for stable := 0; stable < 30; {
		if time.Now().After(deadline) {
			t.Fatalf("sends did not stop: %d", e.srv.PartRequests())
		}
		time.Sleep(10 * time.Millisecond)
		if n := e.srv.PartRequests(); n == sent {
			stable++
		} else {
			sent, stable = n, 0
		}
	}
	if sent != 2*threads {
		t.Fatalf("%d parts sent with no save done, want 2 x threads = %d", sent, 2*threads)
	}
	if n := g.saves.Load(); n != 0 {
		t.Fatalf("%d saves passed a closed gate", n)
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	savedSentOnceAndPosted(t, e, "gated", "g.bin", file, 80, sum)
}
