package r2_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/r2"
)

// The index's interfaces (index.Checker, index.Writer), restated so this
// test does not import the index: a *Local must drop in for a *Store.
var _ interface {
	Get(context.Context, string) (r2.Record, string, error)
	Create(context.Context, r2.Record) error
	Merge(context.Context, r2.Record) (r2.Record, error)
	PublicURL(string) string
} = (*r2.Local)(nil)

func newLocal(t *testing.T) *r2.Local {
	t.Helper()
	l, err := r2.NewLocal(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoTemp(t, l.Dir()) })
	return l
}

// assertNoTemp fails when a write left anything but record files behind.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind in %s: %s", dir, e.Name())
		}
	}
}

func readFile(t *testing.T, l *r2.Local, id string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.Dir(), id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLocalCreateGetMerge(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	l, err := r2.NewLocal(root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer assertNoTemp(t, l.Dir())
	if l.Dir() != filepath.Join(root, r2.DefaultFolder) || l.Key("AgAD") != "linkerz/AgAD.json" || l.PublicURL("AgAD") != "" {
		t.Fatalf("Dir %q Key %q PublicURL %q", l.Dir(), l.Key("AgAD"), l.PublicURL("AgAD"))
	}
	if _, _, err := l.Get(ctx, "AgADnew"); !errors.Is(err, r2.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	rec := r2.Record{UniqueID: "AgADnew", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "fid-1"},
		Caption: "a <b> & c", FileName: "a.mkv", FileType: "video", FileSizeBytes: 10, Duration: 60, Width: 640, Height: 480}
	if err := l.Create(ctx, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	other := rec
	other.BotFileIDs = r2.BotFileIDs{r2.SlotKey(1): "someone-else"}
	if err := l.Create(ctx, other); !errors.Is(err, r2.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	got, etag, err := l.Get(ctx, "AgADnew")
	if err != nil {
		t.Fatal(err)
	}
	if etag == "" || !reflect.DeepEqual(got, rec) {
		t.Fatalf("Get = %+v etag %q, want %+v", got, etag, rec)
	}
	want, _ := rec.Marshal()
	if raw := readFile(t, l, "AgADnew"); string(raw) != string(want) {
		t.Fatalf("file\n got %s\nwant %s", raw, want)
	}

	// Merge adds b_2 and keeps b_1 as first written, as Store.Merge.
	merged, err := l.Merge(ctx, r2.Record{UniqueID: "AgADnew", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "other-b1", r2.SlotKey(2): "fid-2"}})
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	rec.BotFileIDs = r2.BotFileIDs{r2.SlotKey(1): "fid-1", r2.SlotKey(2): "fid-2"}
	want, _ = rec.Marshal()
	if raw := readFile(t, l, "AgADnew"); string(raw) != string(want) || !reflect.DeepEqual(merged, rec) {
		t.Fatalf("after merge\n got %s (returned %+v)\nwant %s", raw, merged, want)
	}
	_, etag2, _ := l.Get(ctx, "AgADnew")
	if etag2 == etag {
		t.Fatal("etag unchanged by a merge that wrote")
	}
	// A merge that adds nothing does not write.
	fi, _ := os.Stat(filepath.Join(l.Dir(), "AgADnew.json"))
	if _, err := l.Merge(ctx, r2.Record{UniqueID: "AgADnew", BotFileIDs: r2.BotFileIDs{r2.SlotKey(2): "fid-2"}}); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(filepath.Join(l.Dir(), "AgADnew.json"))
	if !os.SameFile(fi, fi2) {
		t.Fatal("no-op merge rewrote the file")
	}
	// Merge creates when absent.
	if _, err := l.Merge(ctx, r2.Record{UniqueID: "AgADabsent", BotFileIDs: r2.BotFileIDs{r2.SlotKey(3): "fid-3"}}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := l.Get(ctx, "AgADabsent"); err != nil || got.BotFileIDs[r2.SlotKey(3)] != "fid-3" {
		t.Fatalf("Merge into absent: %+v %v", got, err)
	}

	if err := l.Delete(ctx, "AgADabsent"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get(ctx, "AgADabsent"); !errors.Is(err, r2.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := l.Delete(ctx, "AgADabsent"); err != nil {
		t.Fatalf("Delete of a missing record: %v", err)
	}
}

// 20 writers add their own slot to one record at once, the index's way
// (Create, Merge on ErrExists); no key may be lost.
func TestLocalConcurrentMerges(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t)
	const id, writers = "AgADcontended", 20
	start := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := 1; i <= writers; i++ {
		wg.Go(func() {
			<-start
			rec := r2.Record{UniqueID: id, FileName: "x.bin", BotFileIDs: r2.BotFileIDs{r2.SlotKey(i): fmt.Sprintf("fid-%d", i)}}
			err := l.Create(ctx, rec)
			if errors.Is(err, r2.ErrExists) {
				_, err = l.Merge(ctx, rec)
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	got, _, err := l.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= writers; i++ {
		if got.BotFileIDs[r2.SlotKey(i)] != fmt.Sprintf("fid-%d", i) {
			t.Fatalf("lost %s: %v", r2.SlotKey(i), got.BotFileIDs)
		}
	}
	if len(got.BotFileIDs) != writers {
		t.Fatalf("%d keys, want %d", len(got.BotFileIDs), writers)
	}
}

// 16 creators of one id: exactly one wins, and the file is the winner's.
func TestLocalConcurrentCreates(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t)
	const id, creators = "AgADrace", 16
	start := make(chan struct{})
	results := make([]error, creators)
	var wg sync.WaitGroup
	for i := range creators {
		wg.Go(func() {
			<-start
			results[i] = l.Create(ctx, r2.Record{UniqueID: id, Caption: strings.Repeat("x", 4096), BotFileIDs: r2.BotFileIDs{r2.SlotKey(i + 1): fmt.Sprint(i)}})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("creators %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, r2.ErrExists):
			t.Fatalf("creator %d: %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no creator succeeded")
	}
	want, _ := r2.Record{UniqueID: id, Caption: strings.Repeat("x", 4096), BotFileIDs: r2.BotFileIDs{r2.SlotKey(winner + 1): fmt.Sprint(winner)}}.Marshal()
	if raw := readFile(t, l, id); string(raw) != string(want) {
		t.Fatalf("file is not the winner's record:\n%s", raw)
	}
}

// No id can name a file outside the folder, nor a folder outside the dir.
func TestLocalRefusesEscapingIDs(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	l, err := r2.NewLocal(filepath.Join(root, "data"), "r2")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../x", "a/b", "..", ".", "", "/etc/passwd", `a\b`, "x.json", ".tmp-x"} {
		rec := r2.Record{UniqueID: id, BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "f"}}
		if err := l.Create(ctx, rec); err == nil || errors.Is(err, r2.ErrExists) {
			t.Errorf("Create(%q) = %v, want refused", id, err)
		}
		if _, err := l.Merge(ctx, rec); err == nil {
			t.Errorf("Merge(%q) accepted", id)
		}
		if _, _, err := l.Get(ctx, id); err == nil || errors.Is(err, r2.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want refused", id, err)
		}
		if err := l.Delete(ctx, id); err == nil {
			t.Errorf("Delete(%q) accepted", id)
		}
	}
	// Nothing was written anywhere under root.
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("file written: %s", p)
		}
		return nil
	})
	for _, folder := range []string{"..", "../up", "a/../../up"} {
		if _, err := r2.NewLocal(filepath.Join(root, "data"), folder); err == nil {
			t.Errorf("NewLocal folder %q accepted", folder)
		}
	}
}

// Each walks the records in name order and skips what is not a record.
func TestLocalEach(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t)
	for _, id := range []string{"c", "a", "B", "b"} {
		if err := l.Create(ctx, r2.Record{UniqueID: id}); err != nil {
			t.Fatal(err)
		}
	}
	// A crashed writer's temp file and a stray file are not records.
	for _, name := range []string{".tmp-a-123", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(l.Dir(), name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := l.Each(ctx, func(id string) error { got = append(got, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "B,a,b,c" {
		t.Fatalf("Each = %v", got)
	}
	stop := errors.New("stop")
	n := 0
	if err := l.Each(ctx, func(string) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Each with a failing fn: %v after %d calls", err, n)
	}
	for _, name := range []string{".tmp-a-123", "notes.txt"} {
		os.Remove(filepath.Join(l.Dir(), name))
	}
}
