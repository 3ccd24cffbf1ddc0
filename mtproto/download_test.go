package mtproto_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gotd/td/tg"

	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

func TestDownloadRefreshesReferenceAndRelays(t *testing.T) {
	e := newEnv(t, mtprototest.Options{Seed: 3}, 4)
	const size = 20<<20 + 4321
	path, sum := writeRandomFile(t, t.TempDir(), size, 8)
	msgID := deliverFile(t, e, "dl-src", path, size, nil)
	ctx := context.Background()

	dl := mtproto.NewDownloader(e.client).WithThreads(4)
	peer := e.peer.Peer.(*tg.InputPeerChannel)
	src := &mtproto.Source{Channel: mtproto.ChannelFromPeer(peer), MessageID: msgID}
	if err := dl.Locate(ctx, src); err != nil {
		t.Fatal(err)
	}
	// The reference we hold expires; a getFile INTERNAL error hits too.
	e.srv.ExpireFileReferences()
	e.srv.InjectFaults(mtprototest.Fault{Method: mtprototest.MethodGetFile, Kind: mtprototest.Internal, Rate: 0.2, Max: 3})
	out := filepath.Join(t.TempDir(), "out.bin")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := dl.Download(ctx, src, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("download %v", time.Since(t0))
	t0 = time.Now()
	if got := fileSHA(t, out); got != sum {
		t.Fatalf("downloaded sha %s, want %s", got, sum)
	}
	if n := e.srv.Calls("channels.getMessages"); n != 2 {
		t.Fatalf("getMessages calls %d, want 2 (locate + one refresh)", n)
	}
	e.srv.ClearFaults()

	// Relay: download piped into a new upload, then posted.
	var peak int64
	file, err := mtproto.Relay(ctx, dl, src, e.up, mtproto.UploadRequest{Key: "relay", Name: "relayed.bin",
		OnProgress: func(p mtproto.Progress) { peak = p.Acked }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("relay %v", time.Since(t0))
	p := *e.peer
	p.Key, p.File, p.Name = "relay", file, "relayed.bin"
	if _, err := e.snd.Send(ctx, p); err != nil {
		t.Fatal(err)
	}
	posts := e.srv.Posts()
	if len(posts) != 2 || posts[1].SHA256 != sum || posts[1].Name != "relayed.bin" || peak != size {
		t.Fatalf("relayed post %+v (acked %d)", posts[len(posts)-1], peak)
	}

	// Stream to a hash: ordered output.
	t0 = time.Now()
	h := sha256.New()
	if err := dl.Stream(ctx, src, h); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(h.Sum(nil)) != sum {
		t.Fatal("stream out of order")
	}
	t.Logf("stream %v", time.Since(t0))
}
