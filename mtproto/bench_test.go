package mtproto_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/telegram/uploader"
	"github.com/gotd/td/tg"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// Benchmarks run only with -bench (see BENCH.md). The server runs in its
// own process (mtserver) so only the client's work is on this process.

func startRemote(b *testing.B, latency time.Duration) (*mtprototest.Remote, []byte) {
	b.Helper()
	r, err := mtprototest.StartRemote(context.Background(), b.TempDir(), latency)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	key, err := r.KeyPEM()
	if err != nil {
		b.Fatal(err)
	}
	return r, key
}

// binaryGC runs the benchmark under the GC target of the ferry binary
// (mtproto.GCPercent) unless GOGC is set, for both uploaders alike, and
// returns the target in force (reported as gogc; -1 for off).
func binaryGC(b *testing.B) int {
	b.Helper()
	if v, set := os.LookupEnv("GOGC"); set {
		if v == "off" {
			return -1
		}
		n, _ := strconv.Atoi(v)
		return n
	}
	old := debug.SetGCPercent(mtproto.GCPercent)
	b.Cleanup(func() { debug.SetGCPercent(old) })
	return mtproto.GCPercent
}

// benchStateStore is the resume-state store ours writes to, as in
// production; FERRY_BENCH_NO_STATE=1 runs ours without one, in every
// upload benchmark and the 2000 MiB children (they inherit the
// environment), to measure what the saves cost (no crash bound then).
func benchStateStore(d db.Executor) *mtproto.StateStore {
	if os.Getenv("FERRY_BENCH_NO_STATE") == "1" {
		return nil
	}
	return mtproto.NewStateStore(d)
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }

// timedInvoker times every call through it: both uploaders send through
// the same one, so the time each part spends inside gotd's call (request
// round trip: encrypt, transfer, the server, the answer) is measured the
// same way for both.
type timedInvoker struct {
	inv  tg.Invoker
	mu   sync.Mutex
	durs []time.Duration
}

func (t *timedInvoker) Invoke(ctx context.Context, in bin.Encoder, out bin.Decoder) error {
	t0 := time.Now()
	err := t.inv.Invoke(ctx, in, out)
	d := time.Since(t0)
	t.mu.Lock()
	t.durs = append(t.durs, d)
	t.mu.Unlock()
	return err
}

// take returns and forgets the calls timed so far.
func (t *timedInvoker) take() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.durs
	t.durs = nil
	return d
}

func median[T cmp.Ordered](v []T) T {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v) == 0 {
		var zero T
		return zero
	}
	return v[len(v)/2]
}

// run is one timed upload of an alternation.
type run struct {
	elapsed time.Duration
	gc      uint32        // GC cycles during the upload
	rtt     time.Duration // median part round trip inside gotd's call
	busy    float64       // sum of round trips / (threads x elapsed)
}

// alternate runs ours and stock once per iteration, alternating which goes
// first (the machine is shared and its load drifts), and reports the best
// of the iterations for each, best ÷ best (ratio) and the median of the
// per-iteration ratios (ratio_median: each pair ran back to back, so under
// the same load), and every iteration in the log. With tim set it also
// reports each one's median part round trip and how busy its threads kept
// the connections (busy_pct: 100 means a part was in flight on every thread
// at every moment, whatever the server's speed).
func alternate(b *testing.B, bytes int64, bound float64, threads int, tim *timedInvoker, ours, stock func() time.Duration) {
	b.Helper()
	var oursR, stockR []run
	// Labels split a -cpuprofile of one run between the two (pprof
	// -tagfocus impl=ours); gotd's connection read loops stay unlabelled.
	measure := func(impl string, f func() time.Duration) run {
		var r run
		if tim != nil {
			tim.take()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		gc0 := ms.NumGC
		pprof.Do(context.Background(), pprof.Labels("impl", impl), func(context.Context) { r.elapsed = f() })
		runtime.ReadMemStats(&ms)
		r.gc = ms.NumGC - gc0
		if tim != nil {
			durs := tim.take()
			r.rtt = median(durs)
			var sum time.Duration
			for _, d := range durs {
				sum += d
			}
			r.busy = sum.Seconds() / (float64(threads) * r.elapsed.Seconds())
		}
		return r
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			oursR = append(oursR, measure("ours", ours))
			stockR = append(stockR, measure("stock", stock))
		} else {
			stockR = append(stockR, measure("stock", stock))
			oursR = append(oursR, measure("ours", ours))
		}
	}
	var logs []string
	var ratios, oursT, stockT, oursRTT, stockRTT, oursBusy, stockBusy, oursGC, stockGC []float64
	for i := range oursR {
		o, s := oursR[i], stockR[i]
		ratios = append(ratios, s.elapsed.Seconds()/o.elapsed.Seconds())
		oursT, stockT = append(oursT, o.elapsed.Seconds()), append(stockT, s.elapsed.Seconds())
		oursGC, stockGC = append(oursGC, float64(o.gc)), append(stockGC, float64(s.gc))
		line := fmt.Sprintf("%.1f vs %.1f MB/s (%.3f) gc %d/%d", mbps(bytes, o.elapsed), mbps(bytes, s.elapsed), ratios[i], o.gc, s.gc)
		if tim != nil {
			oursRTT, stockRTT = append(oursRTT, o.rtt.Seconds()*1e3), append(stockRTT, s.rtt.Seconds()*1e3)
			oursBusy, stockBusy = append(oursBusy, 100*o.busy), append(stockBusy, 100*s.busy)
			line += fmt.Sprintf(" rtt %.2f/%.2f ms busy %.1f/%.1f%%", oursRTT[i], stockRTT[i], oursBusy[i], stockBusy[i])
		}
		logs = append(logs, line)
	}
	bestOurs, bestStock := float64(bytes)/1e6/slices.Min(oursT), float64(bytes)/1e6/slices.Min(stockT)
	b.Logf("ours vs stock per iteration: %s; load %.2f", strings.Join(logs, ", "), loadAvg())
	b.ReportMetric(bestOurs, "ours_MB/s")
	b.ReportMetric(bestStock, "stock_MB/s")
	b.ReportMetric(bestOurs/bestStock, "ratio")
	b.ReportMetric(median(ratios), "ratio_median")
	b.ReportMetric(median(oursGC), "ours_gc")
	b.ReportMetric(median(stockGC), "stock_gc")
	if bound > 0 {
		b.ReportMetric(100*bestOurs/bound, "ours_pct")
		b.ReportMetric(100*bestStock/bound, "stock_pct")
	}
	if tim != nil {
		b.ReportMetric(median(oursRTT), "ours_rtt_ms")
		b.ReportMetric(median(stockRTT), "stock_rtt_ms")
		b.ReportMetric(median(oursBusy), "ours_busy_pct")
		b.ReportMetric(median(stockBusy), "stock_busy_pct")
	}
	b.ReportMetric(loadAvg(), "loadavg")
}

// BenchmarkUploadVsStock: our pipeline (resume state in the database,
// per-part retry) against gotd's stock uploader, 8 threads over the same
// 8-connection pool, 256 MiB from a file, alternating in each iteration.
func BenchmarkUploadVsStock(b *testing.B) {
	const threads = 8
	const size = 256 << 20
	gogc := binaryGC(b)
	defer func() { b.ReportMetric(float64(gogc), "gogc") }()
	r, key := startRemote(b, 0)
	db := dbtest.New(b)
	c := startClient(b, context.Background(), r.Addr, key, db, threads)
	pool, err := c.Pool()
	if err != nil {
		b.Fatal(err)
	}
	path, _ := writeRandomFile(b, b.TempDir(), size, 21)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// The file's pages go to disk now, not during the first upload.
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	warmUp(b, pool, benchStateStore(db), c.BotID(), threads)
	tim := &timedInvoker{inv: pool}
	ours := mtproto.NewUploader(tim, benchStateStore(db)).WithThreads(threads).WithBotID(c.BotID())
	stock := uploader.NewUploader(tg.NewClient(tim)).WithThreads(threads).WithPartSize(mtproto.PartSize)
	ctx := context.Background()
	i := 0
	alternate(b, size, 0, threads, tim, func() time.Duration {
		i++
		t0 := time.Now()
		if _, err := ours.Upload(ctx, mtproto.UploadRequest{Key: fmt.Sprintf("bench-%d", i), Name: "f", Size: size, ReaderAt: f}); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		_ = r.Forget(ctx)
		return d
	}, func() time.Duration {
		d := uploadStock(b, stock, f, size)
		_ = r.Forget(ctx)
		return d
	})
}

// warmUp opens every pool connection and the state store's database
// connections before anything is measured, with one untimed upload by each
// uploader: otherwise the first upload of the run, ours, pays for them.
func warmUp(b *testing.B, inv tg.Invoker, store *mtproto.StateStore, botID int64, threads int) {
	b.Helper()
	size := int64(threads * 2 * mtproto.PartSize)
	path, _ := writeRandomFile(b, b.TempDir(), size, 99)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := mtproto.NewUploader(inv, store).WithThreads(threads).WithBotID(botID).Upload(context.Background(),
		mtproto.UploadRequest{Key: fmt.Sprintf("warm-%d", threads), Name: "w", Size: size, ReaderAt: f}); err != nil {
		b.Fatal(err)
	}
	uploadStock(b, uploader.NewUploader(tg.NewClient(inv)).WithThreads(threads).WithPartSize(mtproto.PartSize), f, size)
}

func uploadStock(b *testing.B, stock *uploader.Uploader, f *os.File, size int64) time.Duration {
	b.Helper()
	if _, err := f.Seek(0, 0); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if _, err := stock.Upload(context.Background(), uploader.NewUpload("f", f, size)); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// BenchmarkUploadLatency: a latency added by the server to every part
// request, against the bound threads x 512 KiB / latency. 50 ms at 1-16
// threads (file = threads x 32 parts) and 109 ms, what one 512 KiB part in
// flight takes on real Telegram (~4.6 MiB/s per part), at 8-32 threads
// (file = threads x 16 parts). Ours and stock alternate in each iteration.
func BenchmarkUploadLatency(b *testing.B) {
	gogc := binaryGC(b)
	r, key := startRemote(b, 0)
	db := dbtest.New(b)
	const poolSize = 32
	c := startClient(b, context.Background(), r.Addr, key, db, poolSize)
	pool, err := c.Pool()
	if err != nil {
		b.Fatal(err)
	}
	store := benchStateStore(db)
	warmUp(b, pool, store, c.BotID(), poolSize)
	cases := []struct {
		latency time.Duration
		threads []int
		parts   int // per thread
	}{
		{50 * time.Millisecond, []int{1, 2, 4, 8, 16}, 32},
		{109 * time.Millisecond, []int{8, 16, 32}, 16},
	}
	for _, cs := range cases {
		for _, threads := range cs.threads {
			b.Run(fmt.Sprintf("%s/threads=%d", cs.latency, threads), func(b *testing.B) {
				ctx := context.Background()
				if err := r.SetLatency(ctx, cs.latency); err != nil {
					b.Fatal(err)
				}
				size := int64(threads * cs.parts * mtproto.PartSize)
				path, _ := writeRandomFile(b, b.TempDir(), size, uint64(threads))
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				tim := &timedInvoker{inv: pool}
				up := mtproto.NewUploader(tim, store).WithThreads(threads).WithBotID(c.BotID())
				stock := uploader.NewUploader(tg.NewClient(tim)).WithThreads(threads).WithPartSize(mtproto.PartSize)
				bound := float64(threads) * mtproto.PartSize / 1e6 / cs.latency.Seconds()
				i := 0
				alternate(b, size, bound, threads, tim, func() time.Duration {
					i++
					t0 := time.Now()
					if _, err := up.Upload(ctx, mtproto.UploadRequest{Key: fmt.Sprintf("lat-%s-%d-%d", cs.latency, threads, i), Name: "f", Size: size, ReaderAt: f}); err != nil {
						b.Fatal(err)
					}
					d := time.Since(t0)
					_ = r.Forget(ctx)
					return d
				}, func() time.Duration {
					d := uploadStock(b, stock, f, size)
					_ = r.Forget(ctx)
					return d
				})
				b.ReportMetric(bound, "bound_MB/s")
				b.ReportMetric(float64(gogc), "gogc")
			})
		}
	}
}

// TestHelperUploadProcess is the measured child of BenchmarkUpload2000MiB:
// it uploads one file and prints its own CPU time and peak RSS.
func TestHelperUploadProcess(t *testing.T) {
	if os.Getenv("FERRY_MT_UPLOAD_HELPER") != "1" {
		t.Skip("helper process for BenchmarkUpload2000MiB")
	}
	ctx := context.Background()
	db, c, threads := helperClient(t, ctx)
	pool, err := c.Pool()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.Getenv("FERRY_MT_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	var msBefore runtime.MemStats
	runtime.ReadMemStats(&msBefore)
	t0 := time.Now()
	// Peak live heap and heap goal, sampled: the GC runs as often as
	// allocation fills the goal's room above the live heap.
	heap := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	var peakLive, peakGoal uint64
	stopSampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(heap)
			peakLive, peakGoal = max(peakLive, heap[0].Value.Uint64()), max(peakGoal, heap[1].Value.Uint64())
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	if os.Getenv("FERRY_MT_STOCK") == "1" {
		stock := uploader.NewUploader(tg.NewClient(pool)).WithThreads(threads).WithPartSize(mtproto.PartSize)
		if _, err := stock.Upload(ctx, uploader.NewUpload("big.bin", f, fi.Size())); err != nil {
			t.Fatal(err)
		}
	} else {
		up := mtproto.NewUploader(pool, benchStateStore(db)).WithThreads(threads).WithBotID(c.BotID())
		if _, err := up.Upload(ctx, mtproto.UploadRequest{Key: "big", Name: "big.bin", Size: fi.Size(), ReaderAt: f}); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(t0)
	close(stopSampling)
	<-sampled
	var after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	// Peak RSS from VmHWM: ru_maxrss survives execve on Linux and would
	// report the parent's peak.
	var msAfter runtime.MemStats
	runtime.ReadMemStats(&msAfter)
	out, _ := json.Marshal(map[string]any{"cpu_ns": cpu.Nanoseconds(), "maxrss_kib": vmHWM(), "elapsed_ns": elapsed.Nanoseconds(), "bytes": fi.Size(),
		"gc": msAfter.NumGC - msBefore.NumGC, "live_heap": peakLive, "heap_goal": peakGoal})
	fmt.Printf("RESULT=%s\n", out)
}

// BenchmarkUpload2000MiB: client CPU per MB and peak RSS of a process
// uploading a 2000 MiB file (sparse: the page cache, not the disk, is read)
// at 8 and 32 threads (goals: <= 3.5 ms/MB, <= 64 MiB + threads x 1 MiB).
func BenchmarkUpload2000MiB(b *testing.B) {
	const size = 2000 << 20
	// The children run under the same GC target as this process.
	gogc := binaryGC(b)
	gcEnv := "GOGC=off"
	if gogc >= 0 {
		gcEnv = "GOGC=" + strconv.Itoa(gogc)
	}
	r, _ := startRemote(b, 0)
	dbURL := dbtest.NewURL(b)
	d := dbtest.Open(b, dbURL)
	path := filepath.Join(b.TempDir(), "big.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	// Read it once here: the first read of a sparse file fills the page
	// cache with zeroed pages (kernel CPU), which would be charged to
	// whichever child happened to run first.
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
	f.Close()
	for _, threads := range []int{8, 32} {
		for _, impl := range []string{"ours", "stock"} {
			b.Run(fmt.Sprintf("%s/threads=%d", impl, threads), func(b *testing.B) {
				var cpuPerMB, rssMiB, speed, gcs, liveMiB, goalMiB float64
				for b.Loop() {
					cmd := exec.Command(os.Args[0], "-test.run=^TestHelperUploadProcess$", "-test.v", "-test.bench=^$")
					cmd.Env = append(os.Environ(), "FERRY_MT_UPLOAD_HELPER=1", "FERRY_MT_DB="+dbURL, "FERRY_MT_KEY="+r.KeyFile,
						"FERRY_MT_ADDR="+r.Addr, "FERRY_MT_FILE="+path, "FERRY_MT_THREADS="+strconv.Itoa(threads),
						"FERRY_MT_STOCK="+map[bool]string{true: "1", false: "0"}[impl == "stock"])
					cmd.Env = append(cmd.Env, gcEnv)
					out, err := cmd.CombinedOutput()
					if err != nil {
						b.Fatalf("child: %v\n%s", err, out)
					}
					var res struct {
						CPU     int64 `json:"cpu_ns"`
						MaxRSS  int64 `json:"maxrss_kib"`
						GC      int64 `json:"gc"`
						Elapsed int64 `json:"elapsed_ns"`
						Bytes   int64 `json:"bytes"`
						Live    int64 `json:"live_heap"`
						Goal    int64 `json:"heap_goal"`
					}
					if _, after, ok := cutLine(string(out), "RESULT="); !ok {
						b.Fatalf("no result in child output:\n%s", out)
					} else if err := json.Unmarshal([]byte(after), &res); err != nil {
						b.Fatal(err)
					}
					mb := float64(res.Bytes) / 1e6
					// Worst RSS, best CPU and speed of the iterations.
					rssMiB = max(rssMiB, float64(res.MaxRSS)/1024)
					if c := float64(res.CPU) / 1e6 / mb; cpuPerMB == 0 || c < cpuPerMB {
						cpuPerMB = c
					}
					speed = max(speed, mb/(float64(res.Elapsed)/1e9))
					gcs = max(gcs, float64(res.GC))
					liveMiB, goalMiB = max(liveMiB, float64(res.Live)/(1<<20)), max(goalMiB, float64(res.Goal)/(1<<20))
					b.Logf("cpu %.2f ms/MB, peak RSS %.1f MiB, %.1f MB/s, %d GC cycles, peak live heap %.1f MiB, heap goal %.1f MiB",
						float64(res.CPU)/1e6/mb, float64(res.MaxRSS)/1024, mb/(float64(res.Elapsed)/1e9), res.GC, float64(res.Live)/(1<<20), float64(res.Goal)/(1<<20))
					b.StopTimer()
					_ = r.Forget(context.Background())
					// The child uploads under key "big": forget it so the
					// next run starts over.
					if err := d.UploadStateDelete(context.Background(), "big"); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(cpuPerMB, "cpu_ms/MB")
				b.ReportMetric(rssMiB, "peak_RSS_MiB")
				b.ReportMetric(float64(64+threads), "rss_goal_MiB")
				b.ReportMetric(speed, "MB/s")
				b.ReportMetric(gcs, "gc_cycles")
				b.ReportMetric(liveMiB, "live_heap_MiB")
				b.ReportMetric(goalMiB, "heap_goal_MiB")
				b.ReportMetric(float64(gogc), "gogc")
				b.ReportMetric(loadAvg(), "loadavg")
			})
		}
	}
}

func cutLine(s, prefix string) (before, after string, ok bool) {
	for len(s) > 0 {
		line := s
		if i := indexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if len(line) >= len(prefix) && line[:len(prefix)] == prefix {
			return "", line[len(prefix):], true
		}
	}
	return "", "", false
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// loadAvg is the 1-minute load average: the machine is shared, and a
// benchmark figure means little without it.
func loadAvg() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	_, _ = fmt.Sscanf(string(data), "%f", &l)
	return l
}

// vmHWM is this process's peak resident set in KiB.
func vmHWM() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			_, _ = fmt.Sscanf(strings.TrimSpace(rest), "%d", &kib)
			return kib
		}
	}
	return -1
}
