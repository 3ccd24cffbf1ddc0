package webhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/internal/browsertest"
	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/streamtest"
	"github.com/ferry-dev/ferry/stream"
	"github.com/ferry-dev/ferry/webhook"
)

// lazyClients starts a bot's MTProto client on first use.
type lazyClients struct {
	t   testing.TB
	srv *streamtest.Server
	mu  sync.Mutex
	m   map[int64]*mtproto.Client
}

func (c *lazyClients) Client(ctx context.Context, botID int64) (*mtproto.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.m[botID]; ok {
		return cl, nil
	}
	cl, err := mtproto.NewClient(mtproto.Options{APIID: 1, APIHash: "h", BotToken: fmt.Sprintf("%d:secret", botID),
		DCAddr: c.srv.Addr(c.srv.HomeDC()), DC: c.srv.HomeDC(), PublicKeyPEM: c.srv.PublicKeysPEM(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if err := cl.Start(ctx); err != nil {
		return nil, err
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	c.m[botID] = cl
	return cl, nil
}

type dbFiles struct{ d db.Driver }

func (f dbFiles) GetFile(ctx context.Context, id string) (index.File, error) {
	return f.d.FileGet(ctx, id)
}

// TestFilePagePlaysVideo opens the signed /f/ page of a real MP4
// (testdata/clip.mp4: H.264 and AAC, 20 s, faststart, made by ffmpeg;
// padded to 64 MiB by padMP4) in headless Chromium, served
// from the MTProto test server through /dl: the <video> loads its
// metadata, a seek to the middle moves currentTime, and the browser's
// requests are Range requests answered 206.
func TestFilePagePlaysVideo(t *testing.T) {
	const bot, uid = 7001, "AgADclipMP4"
	orig, err := os.ReadFile("testdata/clip.mp4")
	if err != nil {
		t.Fatal(err)
	}
	// 64 MiB of free space in the middle of the media data: the browser
	// cannot have the middle of the video before it seeks there.
	clip, size, err := padMP4(orig, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	mt := streamtest.New(t, streamtest.Options{})
	doc := mt.Add(streamtest.Document{DC: 4, ChannelID: 1234567890, MessageID: 77, Name: "clip.mp4", MimeType: "video/mp4", Size: size, Content: clip})
	d := dbtest.New(t)
	ctx := context.Background()
	if err := d.FileInsertMany(ctx, &db.FileInsertManyParams{
		UniqueID: []string{uid}, Name: []string{"clip.mp4"}, MimeType: []string{"video/mp4"}, Type: []string{index.TypeVideo},
		Caption: []string{"a test clip"}, Origin: []string{"local"}, Size: []int64{size}, ChatID: []int64{-1001234567890},
		MessageID: []int64{77}, DC: []int32{4}, Duration: []int32{20}, Width: []int32{320}, Height: []int32{180},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.FileBotIDUpsertMany(ctx, &db.FileBotIDUpsertManyParams{UniqueID: []string{uid}, FileID: []string{mt.FileID(bot, doc, 4)},
		Slot: []int32{1}, BotID: []int64{bot}, ChatID: []int64{-1001234567890}, MessageID: []int64{77}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.FromMap(map[string]string{"BOT_TOKENS": "7001:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "LINK_SECRET": "browser secret"})
	if err != nil {
		t.Fatal(err)
	}
	signer := links.New(cfg.LinkSecret)
	sh := stream.New(stream.Options{Files: dbFiles{d}, Holders: botpool.New(d, nil), Clients: &lazyClients{t: t, srv: mt, m: map[int64]*mtproto.Client{}},
		Pools: mtproto.NewStreamPools(4), Links: signer})
	var ranges, seeks, partial atomic.Int64
	var mu sync.Mutex
	var seen []string
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rg := r.Header.Get("Range"); rg != "" {
			ranges.Add(1)
			if !strings.HasPrefix(rg, "bytes=0-") {
				seeks.Add(1)
			}
			mu.Lock()
			seen = append(seen, rg)
			mu.Unlock()
		}
		rec := &statusRecorder{ResponseWriter: w}
		sh.ServeHTTP(rec, r)
		if rec.code == http.StatusPartialContent {
			partial.Add(1)
		}
	})
	srv := httptest.NewServer(webhook.NewServer(webhook.Options{Config: cfg, Files: dbFiles{d}, Links: signer, Stream: counted,
		Logger: slog.New(slog.DiscardHandler), Ready: func(context.Context) error { return nil }}))
	defer srv.Close()

	bctx := browsertest.New(t, 90*time.Second)
	if err := chromedp.Do(bctx, chromedp.Navigate(signer.PageURL(srv.URL, uid, time.Now().Add(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	duration, err := chromedp.Run(bctx, chromedp.Poll[float64](`(() => { const v = document.getElementById("player"); return v && v.readyState >= 1 && v.duration > 0 ? v.duration : false })()`,
		chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		errState, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`(() => { const v = document.getElementById("player"); return v ? "readyState " + v.readyState + " error " + (v.error && v.error.message) : "no player" })()`))
		t.Fatalf("video metadata never loaded (%s): %v", errState, err)
	}
	before := seeks.Load()
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[float64](fmt.Sprintf(`document.getElementById("player").currentTime = %f`, duration/2))); err != nil {
		t.Fatal(err)
	}
	now, err := chromedp.Run(bctx, chromedp.Poll[float64](`(() => { const v = document.getElementById("player"); return !v.seeking && v.readyState >= 2 && v.currentTime > 0 ? v.currentTime : false })()`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("seek to %.1f s never completed: %v", duration/2, err)
	}
	if now < duration/2-1 {
		t.Fatalf("currentTime %.2f after seeking to %.2f", now, duration/2)
	}
	mu.Lock()
	t.Logf("duration %.2f s, currentTime after seek %.2f s; Range requests %d (%d not from 0, %d during the seek): %v; 206 answers %d",
		duration, now, ranges.Load(), seeks.Load(), seeks.Load()-before, seen, partial.Load())
	mu.Unlock()
	if ranges.Load() == 0 || partial.Load() == 0 {
		t.Fatalf("no Range request answered 206 (ranges %d, 206s %d)", ranges.Load(), partial.Load())
	}
	// Chromium asks for the second half by itself while it opens the file
	// (its MP4 demuxer reads ahead to the chunks it will need) or at the
	// seek; either way a range past the 64 MiB gap must have been served.
	if seeks.Load() == 0 {
		t.Fatal("the browser made no Range request past the start")
	}
	shot := os.Getenv("FERRY_SCREENSHOT")
	if shot == "" {
		shot = t.TempDir() + "/filepage.png"
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", shot)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}
