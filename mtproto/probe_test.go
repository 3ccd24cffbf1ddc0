package mtproto_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/abema/go-mp4"

	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// writeMP4 builds a minimal MP4 (ftyp, moov with one 1280x720 video track of
// 12.345 s, an audio-less mdat of mdatSize random bytes).
func writeMP4(t *testing.T, path string, mdatSize int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := mp4.NewWriter(f)
	var box func(bt mp4.BoxType, payload mp4.IImmutableBox, children ...func())
	box = func(bt mp4.BoxType, payload mp4.IImmutableBox, children ...func()) {
		if _, err := w.StartBox(&mp4.BoxInfo{Type: bt}); err != nil {
			t.Fatal(err)
		}
		if payload != nil {
			if _, err := mp4.Marshal(w, payload, mp4.Context{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range children {
			c()
		}
		if _, err := w.EndBox(); err != nil {
			t.Fatal(err)
		}
	}
	box(mp4.BoxTypeFtyp(), &mp4.Ftyp{MajorBrand: [4]byte{'i', 's', 'o', 'm'}, MinorVersion: 512,
		CompatibleBrands: []mp4.CompatibleBrandElem{{CompatibleBrand: [4]byte{'i', 's', 'o', 'm'}}}})
	box(mp4.BoxTypeMoov(), nil,
		func() {
			box(mp4.BoxTypeMvhd(), &mp4.Mvhd{Timescale: 1000, DurationV0: 12345, Rate: 0x10000, Volume: 0x100, NextTrackID: 2})
		},
		func() {
			box(mp4.BoxTypeTrak(), nil,
				func() {
					box(mp4.BoxTypeTkhd(), &mp4.Tkhd{FullBox: mp4.FullBox{Flags: [3]byte{0, 0, 3}}, TrackID: 1, DurationV0: 12345,
						Width: 1280 << 16, Height: 720 << 16})
				},
				func() {
					box(mp4.BoxTypeMdia(), nil,
						func() { box(mp4.BoxTypeMdhd(), &mp4.Mdhd{Timescale: 90000, DurationV0: 12345 * 90}) },
						func() {
							box(mp4.BoxTypeHdlr(), &mp4.Hdlr{HandlerType: [4]byte{'v', 'i', 'd', 'e'}, Name: "VideoHandler"})
						},
					)
				})
		})
	data := make([]byte, mdatSize)
	_, _ = rand.Read(data)
	box(mp4.BoxTypeMdat(), nil, func() {
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMP4GetsStreamingVideoAttributes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clip.mp4")
	writeMP4(t, path, 11<<20) // over 10 MiB: the big-file path
	ctx := context.Background()
	meta, err := mtproto.ProbeVideo(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Width != 1280 || meta.Height != 720 || meta.Duration < 12.344 || meta.Duration > 12.346 {
		t.Fatalf("probe = %+v", meta)
	}

	e := newEnv(t, mtprototest.Options{}, 4)
	id, err := mtproto.DeliverFile(ctx, e.up, e.snd, mtproto.FileRequest{
		Key: "clip", Path: path, Peer: e.peer.Peer, Caption: "a clip", AsVideo: true, TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	posts := e.srv.Posts()
	if len(posts) != 1 || posts[0].MessageID != id {
		t.Fatalf("posts = %+v", posts)
	}
	p := posts[0]
	if p.Video == nil || !p.Video.SupportsStreaming || p.Video.W != 1280 || p.Video.H != 720 || p.Video.Duration < 12.344 || p.Video.Duration > 12.346 {
		t.Fatalf("video attribute = %+v", p.Video)
	}
	if p.Name != "clip.mp4" || p.MimeType != "video/mp4" || p.SHA256 != fileSHA(t, path) {
		t.Fatalf("post = %+v", p)
	}

	// A file that is not a video is refused as a video but goes as a document.
	other := filepath.Join(t.TempDir(), "notes.mp4")
	if err := os.WriteFile(other, []byte("not really an mp4 file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := mtproto.ProbeVideo(ctx, other); err == nil {
		t.Fatal("probe of a non-video succeeded")
	}
}

// With ffmpeg installed: a real video gets a thumbnail and a Matroska file
// is probed through ffprobe. Without it both report ErrNoFFmpeg, and the
// video still goes out (covered above) without a thumbnail.
func TestFFmpegThumbnailAndProbe(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mkv := filepath.Join(dir, "clip.mkv")
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if _, err := mtproto.ProbeVideo(ctx, mkv); !errors.Is(err, mtproto.ErrNoFFmpeg) {
			t.Fatalf("probe without ffprobe: %v", err)
		}
		if _, err := mtproto.Thumbnail(ctx, mkv, dir); !errors.Is(err, mtproto.ErrNoFFmpeg) {
			t.Fatalf("thumbnail without ffmpeg: %v", err)
		}
		t.Log("ffmpeg not installed: checked the fallback only")
		return
	}
	mp4Path := filepath.Join(dir, "real.mp4")
	for _, out := range []string{mp4Path, mkv} {
		cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=3:size=320x240:rate=25",
			"-pix_fmt", "yuv420p", out)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v %s", out, err, msg)
		}
	}
	meta, err := mtproto.ProbeVideo(ctx, mkv)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Width != 320 || meta.Height != 240 || meta.Duration < 2.9 || meta.Duration > 3.1 {
		t.Fatalf("ffprobe meta %+v", meta)
	}
	e := newEnv(t, mtprototest.Options{}, 2)
	if _, err := mtproto.DeliverFile(ctx, e.up, e.snd, mtproto.FileRequest{
		Key: "real", Path: mp4Path, Peer: e.peer.Peer, AsVideo: true, TempDir: dir,
	}); err != nil {
		t.Fatal(err)
	}
	posts := e.srv.Posts()
	if len(posts) != 1 || !posts[0].HasThumb || posts[0].Video == nil || posts[0].Video.W != 320 || !posts[0].Video.SupportsStreaming {
		t.Fatalf("post = %+v", posts)
	}
	if _, err := os.Stat(filepath.Join(dir, "real.mp4.thumb.jpg")); !os.IsNotExist(err) {
		t.Fatalf("thumbnail file left behind: %v", err)
	}
}
