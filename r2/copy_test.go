package r2_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
)

// testCopyLocal: 30 local records go to a bucket that already holds one of
// them from another deployment; the new ones arrive byte for byte, and the
// existing object keeps its keys and gains ours.
func testCopyLocal(t *testing.T, opts r2.Options) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := newLocal(t)
	s, err := r2.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	const n, shared = 30, "AgADcopy07"
	for i := range n {
		rec := r2.Record{UniqueID: fmt.Sprintf("AgADcopy%02d", i), BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): fmt.Sprint("local-", i)},
			Caption: "<b>" + fmt.Sprint(i) + "</b> & co", FileName: "f.mkv", FileType: "video", FileSizeBytes: int64(i + 1), Width: 1280}
		if err := l.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	// Our bot for the shared file is slot 2 (theirs are 1 and 5).
	if err := l.Delete(ctx, shared); err != nil {
		t.Fatal(err)
	}
	ours := r2.Record{UniqueID: shared, BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "ours-1", r2.SlotKey(2): "ours-2"}, FileName: "f.mkv", FileType: "video", FileSizeBytes: 8}
	if err := l.Create(ctx, ours); err != nil {
		t.Fatal(err)
	}
	theirs := r2.Record{UniqueID: shared, BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "their-1", r2.SlotKey(5): "their-5"}, FileType: "video"}
	if err := s.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}

	var calls, last int
	copied, err := r2.CopyLocal(ctx, l, s, 4, func(done int, id string) {
		calls++
		if done != last+1 {
			t.Errorf("progress %d after %d", done, last)
		}
		last = done
	})
	if err != nil || copied != n || calls != n {
		t.Fatalf("CopyLocal = %d, %v (%d progress calls), want %d", copied, err, calls, n)
	}
	for i := range n {
		id := fmt.Sprintf("AgADcopy%02d", i)
		remote, err := s.GetRaw(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if id == shared {
			continue
		}
		if local := readFile(t, l, id); string(remote) != string(local) {
			t.Fatalf("%s\nbucket %s\nlocal  %s", id, remote, local)
		}
	}
	got, _, err := s.Get(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	// Both deployments' keys are kept (their b_1 wins, first writer), and our
	// metadata fills what their object lacked.
	if len(got.BotFileIDs) != 3 || got.BotFileIDs[r2.SlotKey(1)] != "their-1" || got.BotFileIDs[r2.SlotKey(5)] != "their-5" ||
		got.BotFileIDs[r2.SlotKey(2)] != "ours-2" || got.FileName != "f.mkv" || got.FileSizeBytes != 8 {
		t.Fatalf("merged object: %+v", got)
	}

	// Running it again changes nothing and fails nothing.
	if copied, err := r2.CopyLocal(ctx, l, s, 1, nil); err != nil || copied != n {
		t.Fatalf("second CopyLocal = %d, %v", copied, err)
	}

	// An unreachable bucket stops the copy with the error.
	bad := opts
	bad.Endpoint, bad.MaxAttempts = "http://127.0.0.1:1", 1
	sb, err := r2.New(bad)
	if err != nil {
		t.Fatal(err)
	}
	copied, err = r2.CopyLocal(ctx, l, sb, 3, nil)
	if err == nil || errors.Is(err, r2.ErrExists) || copied != 0 {
		t.Fatalf("CopyLocal to a dead endpoint = %d, %v", copied, err)
	}
}

func TestCopyLocalFake(t *testing.T) { testCopyLocal(t, r2test.Fake(t)) }

func TestCopyLocalVersity(t *testing.T) { testCopyLocal(t, r2test.StartVersity(t).Options()) }
