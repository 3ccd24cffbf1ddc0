package mtproto_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

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
