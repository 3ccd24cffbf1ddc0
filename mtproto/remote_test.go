package mtproto_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// TestRemoteFilePrivateDocument: a document sent to the bot privately is
// read through its file_id (whose reference has expired: refreshed once
// with messages.getMessages, never channels.getMessages) at any offsets,
// whole aligned chunks and odd pieces alike, byte for byte; BotFile (the
// streaming reader) refreshes a private chat's reference the same way.
func TestRemoteFilePrivateDocument(t *testing.T) {
	e := newEnv(t, mtprototest.Options{Seed: 5}, 4)
	const size = 3<<20 + 777
	path, _ := writeRandomFile(t, t.TempDir(), size, 11)
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := e.srv.AddDocument(path, "private.bin", "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	const user, msgID = 4242, 17
	e.srv.SendPrivately(doc, e.client.BotID(), user, msgID, "")
	fileID := doc.FileID()
	e.srv.ExpireFileReferences()
	ctx := context.Background()

	src, err := mtproto.FileIDSource(ctx, e.client.API(), fileID, size, user, msgID)
	if err != nil {
		t.Fatal(err)
	}
	dl, closer, err := mtproto.NewRelayDownloader(e.client, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	rf, err := dl.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ off, n int64 }{
		{0, 512 << 10}, {512 << 10, 512 << 10}, {3, 10}, {512<<10 - 5, 11}, {3 << 20, 777}, {size - 100, 100}, {1<<20 + 1, 2 << 20},
	} {
		got := make([]byte, r.n)
		if n, err := rf.ReadAt(got, r.off); (err != nil && err != io.EOF) || int64(n) != r.n {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(got, want[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d): bytes differ", r.off, r.n)
		}
	}
	if n, err := rf.ReadAt(make([]byte, 10), size-4); n != 4 || err != io.EOF {
		t.Fatalf("read past the end: %d, %v", n, err)
	}
	if g, c := e.srv.Calls("messages.getMessages"), e.srv.Calls("channels.getMessages"); g != 1 || c != 0 {
		t.Fatalf("%d messages.getMessages, %d channels.getMessages; want one private refresh", g, c)
	}

	// The streaming reader, on a reference that expired again.
	e.srv.ExpireFileReferences()
	bf, err := mtproto.NewStreamPools(2).OpenFile(e.client, fileID, user, msgID)
	if err != nil {
		t.Fatal(err)
	}
	block, err := bf.ReadBlock(ctx, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(block, want[1<<20:2<<20]) {
		t.Fatal("BotFile block differs")
	}
	if g, c := e.srv.Calls("messages.getMessages"), e.srv.Calls("channels.getMessages"); g != 2 || c != 0 {
		t.Fatalf("%d messages.getMessages, %d channels.getMessages after BotFile's refresh", g, c)
	}
}

// TestProbeAndThumbnailThroughDownload: an MP4 with its moov at the end is
// probed (duration, size) and thumbnailed by ffmpeg through a RemoteFile,
// the probe fetching at most three chunks (the first and the last), not
// the whole file; the same video remuxed to Matroska is probed by ffprobe
// through the loopback stream.
func TestProbeAndThumbnailThroughDownload(t *testing.T) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg is not installed (apt-get install ffmpeg): %v", err)
	}
	path := filepath.Join(t.TempDir(), "v.mp4")
	out, err := exec.Command(bin, "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc=s=320x240:r=25,geq=lum='random(1)*255':cb=128:cr=128",
		"-t", "3", "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	fi, _ := os.Stat(path)
	e := newEnv(t, mtprototest.Options{Seed: 6}, 4)
	doc, err := e.srv.AddDocument(path, "v.mp4", "video/mp4")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SendPrivately(doc, e.client.BotID(), 4242, 3, "")
	ctx := context.Background()
	src, err := mtproto.FileIDSource(ctx, e.client.API(), doc.FileID(), fi.Size(), 4242, 3)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := mtproto.NewDownloader(e.client).Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := mtproto.ProbeVideoReader(ctx, rf, rf.Size(), "v.mp4", "video/mp4")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Width != 320 || meta.Height != 240 || meta.Duration < 2.9 || meta.Duration > 3.1 {
		t.Fatalf("meta %+v", meta)
	}
	chunks := (fi.Size() + mtproto.DownloadChunk - 1) / mtproto.DownloadChunk
	if n := rf.Requests(); n > 3 || n >= chunks {
		t.Fatalf("probe fetched %d of %d chunks", n, chunks)
	}
	jpeg, err := mtproto.ThumbnailFromReader(ctx, rf, rf.Size(), "v.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if len(jpeg) < 100 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
		t.Fatalf("thumbnail: %d bytes, not a JPEG", len(jpeg))
	}
	t.Logf("probe + thumbnail of a %d-chunk MP4: %d chunks fetched", chunks, rf.Requests())

	// Matroska: ffprobe reads it over the loopback stream.
	mkv := filepath.Join(t.TempDir(), "v.mkv")
	if out, err := exec.Command(bin, "-v", "error", "-y", "-i", path, "-c", "copy", mkv).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg remux: %v: %s", err, out)
	}
	mfi, _ := os.Stat(mkv)
	mdoc, err := e.srv.AddDocument(mkv, "v.mkv", "video/x-matroska")
	if err != nil {
		t.Fatal(err)
	}
	msrc, err := mtproto.FileIDSource(ctx, e.client.API(), mdoc.FileID(), mfi.Size(), 4242, 4)
	if err != nil {
		t.Fatal(err)
	}
	mrf, err := mtproto.NewDownloader(e.client).Open(ctx, msrc)
	if err != nil {
		t.Fatal(err)
	}
	mmeta, err := mtproto.ProbeVideoReader(ctx, mrf, mrf.Size(), "v.mkv", "video/x-matroska")
	if err != nil {
		t.Fatal(err)
	}
	if mmeta.Width != 320 || mmeta.Height != 240 || mmeta.Duration < 2.9 || mmeta.Duration > 3.1 {
		t.Fatalf("mkv meta %+v", mmeta)
	}
}
