package mtproto_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotd/td/telegram/downloader"
	"github.com/gotd/td/tg"

	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/streamtest"
)

// firstWrite records when the first byte reached it.
type firstWrite struct {
	start time.Time
	first atomic.Int64 // ns after start; 0 until written
	n     atomic.Int64
}

func (w *firstWrite) Write(p []byte) (int, error) {
	if w.first.Load() == 0 {
		w.first.CompareAndSwap(0, int64(time.Since(w.start)))
	}
	w.n.Add(int64(len(p)))
	return len(p), nil
}

func (w *firstWrite) WriteAt(p []byte, _ int64) (int, error) { return w.Write(p) }

type benchEnv struct {
	srv   *streamtest.Server
	c     *mtproto.Client
	pools *mtproto.StreamPools
	gotd  *tg.Client
}

const benchBot = 9001

func newBenchEnv(b *testing.B, conns int) *benchEnv {
	srv := streamtest.New(b, streamtest.Options{})
	c := streamClient(b, srv, benchBot)
	inv, err := c.Telegram().Pool(int64(conns))
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{srv: srv, c: c, pools: mtproto.NewStreamPools(conns), gotd: tg.NewClient(inv)}
}

func (e *benchEnv) doc(b *testing.B, msg int, size int64) (*mtproto.BotFile, *tg.InputDocumentFileLocation) {
	d := e.srv.Add(streamtest.Document{DC: e.srv.HomeDC(), ChannelID: 1234567890, MessageID: msg, Name: "bench.bin", Size: size,
		Content: streamtest.NewGenerated(uint64(msg), size)})
	f, err := e.pools.OpenFile(e.c, e.srv.FileID(benchBot, d, e.srv.HomeDC()), -1001234567890, msg)
	if err != nil {
		b.Fatal(err)
	}
	// The same location for gotd's downloader.
	loc, err := mtproto.DecodeDocumentFileID(e.srv.FileID(benchBot, d, e.srv.HomeDC()))
	if err != nil {
		b.Fatal(err)
	}
	return f, loc
}

// BenchmarkStream compares a ferry stream (precise 1 MiB blocks, a window
// of 4 in flight, in order) with gotd's stock downloader (512 KiB parts:
// Stream is in order with one request at a time; Parallel with 4 threads
// writes out of order, to a file) on one document, over loopback and with
// 50 ms added to each getFile. ttfb-ms is the time to the first byte.
func BenchmarkStream(b *testing.B) {
	const size = 64 << 20
	for _, lat := range []time.Duration{0, 50 * time.Millisecond} {
		e := newBenchEnv(b, 4)
		f, loc := e.doc(b, 1, size)
		e.srv.SetLatency(lat)
		run := func(name string, read func(w *firstWrite) error) {
			b.Run(fmt.Sprintf("latency=%v/%s", lat, name), func(b *testing.B) {
				// Warm up: every pool connection open before timing.
				if err := read(&firstWrite{start: time.Now()}); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(size)
				var ttfb time.Duration
				for b.Loop() {
					w := &firstWrite{start: time.Now()}
					if err := read(w); err != nil {
						b.Fatal(err)
					}
					if w.n.Load() != size {
						b.Fatalf("read %d bytes", w.n.Load())
					}
					ttfb += time.Duration(w.first.Load())
				}
				b.ReportMetric(float64(ttfb.Milliseconds())/float64(b.N), "ttfb-ms")
			})
		}
		run("ferry-window4", func(w *firstWrite) error {
			s := mtproto.NewRangeStream(context.Background(), f, size, 0, size, 4)
			defer s.Close()
			_, err := io.Copy(w, s)
			return err
		})
		run("gotd-stream", func(w *firstWrite) error {
			_, err := downloader.NewDownloader().WithPartSize(512<<10).Download(e.gotd, loc).Stream(context.Background(), w)
			return err
		})
		run("gotd-parallel4", func(w *firstWrite) error {
			_, err := downloader.NewDownloader().WithPartSize(512<<10).Download(e.gotd, loc).WithThreads(4).Parallel(context.Background(), w)
			return err
		})
	}
}

// BenchmarkStreamSeek opens a range in the middle of a 2000 MiB document
// (generated content, nothing stored) and reads 1 MiB: rtts is the time to
// the first byte in round trips of the added latency. gotd's downloader
// has no offset: reaching the middle means reading the first 1000 MiB
// (measured on loopback only).
func BenchmarkStreamSeek(b *testing.B) {
	const size = 2000 << 20
	const mid = 1000<<20 + 12345
	for _, lat := range []time.Duration{0, 50 * time.Millisecond} {
		e := newBenchEnv(b, 4)
		f, loc := e.doc(b, 2, size)
		e.srv.SetLatency(lat)
		b.Run(fmt.Sprintf("latency=%v/ferry", lat), func(b *testing.B) {
			var ttfb time.Duration
			buf := make([]byte, 1<<20)
			warm := mtproto.NewRangeStream(context.Background(), f, size, 0, 4<<20, 4)
			if _, err := io.Copy(io.Discard, warm); err != nil {
				b.Fatal(err)
			}
			warm.Close()
			for b.Loop() {
				t0 := time.Now()
				s := mtproto.NewRangeStream(context.Background(), f, size, mid, size, 4)
				if _, err := s.Read(buf[:1]); err != nil {
					b.Fatal(err)
				}
				ttfb += time.Since(t0)
				if _, err := io.ReadFull(s, buf); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			avg := ttfb / time.Duration(b.N)
			b.ReportMetric(float64(avg.Microseconds())/1000, "ttfb-ms")
			if lat > 0 {
				b.ReportMetric(float64(avg)/float64(lat), "rtts")
			}
		})
		if lat == 0 {
			b.Run("latency=0s/gotd-read-to-middle", func(b *testing.B) {
				for b.Loop() {
					ctx, cancel := context.WithCancel(context.Background())
					w := &stopAt{n: mid, cancel: cancel}
					t0 := time.Now()
					_, _ = downloader.NewDownloader().WithPartSize(512<<10).Download(e.gotd, loc).Stream(ctx, w)
					cancel()
					if w.got < mid {
						b.Fatalf("gotd stopped at %d", w.got)
					}
					b.ReportMetric(float64(time.Since(t0).Milliseconds()), "ttfb-ms")
				}
			})
		}
	}
}

type stopAt struct {
	n, got int64
	cancel func()
}

func (s *stopAt) Write(p []byte) (int, error) {
	s.got += int64(len(p))
	if s.got >= s.n {
		s.cancel()
	}
	return len(p), nil
}

// BenchmarkStreamMemory runs 8 streams at once with 50 ms per request and
// reports the peak heap in use per stream above the idle baseline.
func BenchmarkStreamMemory(b *testing.B) {
	const size = 32 << 20
	const streams = 8
	e := newBenchEnv(b, 16)
	f, _ := e.doc(b, 3, size)
	e.srv.SetLatency(50 * time.Millisecond)
	for b.Loop() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		var peak atomic.Uint64
		done := make(chan struct{})
		go func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					var m runtime.MemStats
					runtime.ReadMemStats(&m)
					if m.HeapInuse > peak.Load() {
						peak.Store(m.HeapInuse)
					}
				}
			}
		}()
		var wg sync.WaitGroup
		for range streams {
			wg.Go(func() {
				s := mtproto.NewRangeStream(context.Background(), f, size, 0, size, 4)
				defer s.Close()
				if n, err := io.Copy(io.Discard, s); err != nil || n != size {
					b.Errorf("stream: %d bytes, %v", n, err)
				}
			})
		}
		wg.Wait()
		close(done)
		b.ReportMetric(float64(peak.Load()-base)/streams/(1<<20), "MiB/stream")
	}
}
