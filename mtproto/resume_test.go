package mtproto_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// TestHelperProcess is the child of TestKilledProcessResumes: a whole
// uploader process (client, session, state in Postgres) that delivers one
// file. It does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("FERRY_MT_HELPER") != "1" {
		t.Skip("helper process for TestKilledProcessResumes")
	}
	ctx := context.Background()
	db, c, threads := helperClient(t, ctx)
	pool, err := c.Pool()
	if err != nil {
		t.Fatal(err)
	}
	store := mtproto.NewStateStore(db)
	up := mtproto.NewUploader(pool, store).WithThreads(threads).WithBotID(c.BotID())
	snd := mtproto.NewSender(c.API(), store)
	peer, err := mtproto.ResolveChannel(ctx, c.API(), testChatID)
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("FERRY_MT_FILE")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	id, err := mtproto.Deliver(ctx, up, snd, mtproto.UploadRequest{Key: "killed", Name: "k.bin", Size: fi.Size(), ReaderAt: f},
		mtproto.Post{Peer: peer, Caption: "once"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("MESSAGE_ID=%d\n", id)
}

func TestKilledProcessResumes(t *testing.T) {
	const threads = 8
	srv := mtprototest.New(t, mtprototest.Options{Latency: 20 * time.Millisecond})
	dbURL := dbtest.NewURL(t)
	const size = 64 << 20
	const parts = size / mtproto.PartSize
	path, sum := writeRandomFile(t, t.TempDir(), size, 11)
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "FERRY_MT_HELPER=1", "FERRY_MT_DB="+dbURL, "FERRY_MT_KEY="+srv.KeyPath(),
			"FERRY_MT_ADDR="+srv.Addr(), "FERRY_MT_FILE="+path, "FERRY_MT_THREADS="+strconv.Itoa(threads))
		return cmd
	}

	first := child()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for srv.PartRequests() < parts/3 {
		if time.Now().After(deadline) {
			_ = first.Process.Kill()
			t.Fatal("child made no progress")
		}
		time.Sleep(time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	sentBefore := srv.PartRequests()
	if sentBefore >= parts {
		t.Fatalf("child finished before the kill (%d parts)", sentBefore)
	}
	if len(srv.Posts()) != 0 {
		t.Fatal("posted before the kill")
	}

	second := child()
	out, err := second.CombinedOutput()
	if err != nil {
		t.Fatalf("second child: %v\n%s", err, out)
	}
	posts := srv.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Caption != "once" {
		t.Fatalf("posts = %+v", posts)
	}
	files := srv.Files()
	if len(files) != 1 {
		t.Fatalf("%d Telegram files, want 1 (resumed, not restarted)", len(files))
	}
	total := files[0].Receipts
	t.Logf("parts %d, sent before kill %d, total sent %d (re-sent %d)", parts, sentBefore, total, total-parts)
	// Parts in flight plus parts acknowledged but not yet saved: at most
	// threads of each.
	if total > parts+2*threads {
		t.Fatalf("total sent %d > parts + 2 x threads = %d", total, parts+2*threads)
	}
	if srv.Logins() != 1 {
		t.Fatalf("logins = %d, want 1 (session reused by the second process)", srv.Logins())
	}
	// A third run finds the post recorded and does not post again.
	third := child()
	if out, err := third.CombinedOutput(); err != nil {
		t.Fatalf("third child: %v\n%s", err, out)
	}
	if len(srv.Posts()) != 1 || srv.Files()[0].Receipts != total {
		t.Fatalf("third run re-sent: posts %d", len(srv.Posts()))
	}
}
