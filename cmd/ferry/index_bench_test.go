package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
	"github.com/ferry-dev/ferry/telegramtest"
	"github.com/ferry-dev/ferry/webhook"
)

// BenchmarkIndexEndToEnd runs `ferry serve` in-process with 11 bots and posts
// channel files to /tg/{bot} as Telegram would (each post reaches all 11
// bots), then waits until every post has its one reply recorded by the Bot
// API stand-in and every file's R2 object holds all 11 file_ids.
//
//	go test -run '^$' -bench IndexEndToEnd -benchtime 1x ./cmd/ferry/
//
// FERRY_BENCH_POSTS sets the number of posts (default 300);
// FERRY_BENCH_NO_R2=1 runs without R2 (database alone), to split the cost;
// FERRY_BENCH_INGEST_ONLY=1 runs `ferry web` and stops after the deliveries;
// FERRY_BENCH_SPLIT=1 (Postgres: web and worker apart) runs them into `ferry web`, then stops it and times
// `ferry worker` alone draining the backlog (posts_worked/s): the two halves'
// costs, each with the machine to itself; FERRY_BENCH_WORK_PROFILE=file
// writes a CPU profile of that second half.
//
// cpu_ms/post is the whole machine's CPU time (every process and the
// kernel, from /proc/stat) over the timed part, per post.
func BenchmarkIndexEndToEnd(b *testing.B) {
	posts := 300
	if v := os.Getenv("FERRY_BENCH_POSTS"); v != "" {
		fmt.Sscan(v, &posts)
	}
	tg := telegramtest.NewServer(b, telegramtest.WithoutLimits()) // ferry's own cost: nothing refused
	s3 := r2test.StartVersity(b)
	o := s3.Options()
	var tokens []string
	for i := 1; i <= 11; i++ {
		tok := fmt.Sprintf("%d:AAH-bench-bot-%02d-abcdefghijklmnopqrstu", 900000+i, i)
		tokens = append(tokens, tok)
		tg.AddBot(tok)
	}
	dbEnv := dbtest.NewEnv(b)
	port := freePort(b)
	for k, v := range map[string]string{
		"BOT_TOKENS": strings.Join(tokens, ","), "WEBHOOK_SECRET": "bench",
		"BOT_API_URL": tg.URL(), "PORT": fmt.Sprint(port), "PUBLIC_URL": "https://ferry.example.org",
		"R2_ENDPOINT": o.Endpoint, "R2_BUCKET": o.Bucket, "R2_ACCESS_KEY_ID": o.AccessKeyID,
		"R2_SECRET_ACCESS_KEY": o.SecretAccessKey, "LOG_LEVEL": "error", "SEND_LIMITS": "none",
	} {
		if os.Getenv("FERRY_BENCH_NO_R2") != "" && strings.HasPrefix(k, "R2_") {
			continue
		}
		b.Setenv(k, v)
	}
	for k, v := range dbEnv {
		b.Setenv(k, v)
	}
	noR2 := os.Getenv("FERRY_BENCH_NO_R2") != ""
	b.Chdir(b.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	mode := "serve"
	split := os.Getenv("FERRY_BENCH_SPLIT") != ""
	if os.Getenv("FERRY_BENCH_INGEST_ONLY") != "" || split {
		mode = "web"
	}
	// FERRY_BENCH_LOG=file keeps ferry's log (warnings and errors) there,
	// to check for database errors under load (SQLITE_BUSY, deadlocks).
	var logTo io.Writer = io.Discard
	if path := os.Getenv("FERRY_BENCH_LOG"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		logTo = f
		b.Setenv("LOG_LEVEL", "warn")
	}
	go func() { done <- run(ctx, []string{mode}, io.Discard, logTo) }()
	defer func() { cancel(); <-done }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if res, err := http.Get(base + "/readyz"); err == nil && res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("server not ready")
		}
	}

	// Every delivery is rendered to its request bytes up front, and sent by
	// a lean HTTP/1.1 client (one keep-alive connection per sender, as
	// Telegram holds up to max_connections of them), so the load generator
	// takes little of the CPU it shares with ferry.
	cfg := &config.Config{WebhookSecret: "bench"}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var work [][]byte
	for p := 1; p <= posts; p++ {
		_, uid := benchPost(p)
		for slot := 1; slot <= 11; slot++ {
			botID := int64(900000 + slot)
			fid := telegramtest.EncodeFileID(telegramtest.KindDocument, 4, int64(p), int64(slot), nil)
			body := fmt.Sprintf(`{"update_id":%d,"channel_post":{"message_id":%d,"date":1700000000,"chat":{"id":-1001111111111,"type":"channel","title":"C"},"document":{"file_id":%q,"file_unique_id":%q,"file_name":"file-%d.mkv","mime_type":"video/x-matroska","file_size":%d}}}`,
				p, p, fid, uid, p, 1<<30+p)
			work = append(work, fmt.Appendf(nil, "POST /tg/%d HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s: %s\r\nContent-Length: %d\r\n\r\n%s",
				botID, addr, webhook.SecretHeader, cfg.WebhookSecretToken(botID), len(body), body))
		}
	}
	b.ResetTimer()
	start := time.Now()
	cpuStart := machineCPU(b)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for s := 0; s < 64; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			for {
				i := next.Add(1) - 1
				if i >= int64(len(work)) {
					break
				}
				if conn == nil {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						failed.Add(1)
						continue
					}
					conn, br = c, bufio.NewReader(c)
				}
				if err := roundTrip(conn, br, work[i]); err != nil {
					failed.Add(1)
					conn.Close()
					conn = nil
				}
			}
			if conn != nil {
				conn.Close()
			}
		}()
	}
	wg.Wait()
	ingested := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d deliveries failed", failed.Load())
	}
	if mode == "web" && !split {
		b.ReportMetric(float64(posts*11)/ingested.Seconds(), "updates_ingested/s")
		return
	}
	workStart := start
	if split {
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("ferry web: %v", err)
		}
		// Deferred calls run last first: this stops the worker before the
		// deferred wait for it above.
		wctx, wcancel := context.WithCancel(context.Background())
		defer wcancel()
		workStart = time.Now()
		if path := os.Getenv("FERRY_BENCH_WORK_PROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		go func() { done <- run(wctx, []string{"worker"}, io.Discard, logTo) }()
	}
	d := dbtest.OpenEnv(b, dbEnv)
	// The poll is cheap (the harness shares the machine with what it
	// measures): replies are counted, and the work left and the file_ids
	// are read only once every post has its reply; the R2 objects are read
	// back after the timed part (checkObjects).
	var repliedAt time.Duration
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		replied := benchReplied(b, d)
		if replied == posts && repliedAt == 0 {
			repliedAt = time.Since(start)
		}
		if replied == posts && !benchBusy(b, d) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("after 10 min: %d/%d replied, work left: %v", replied, posts, benchBusy(b, d))
		}
	}
	elapsed := time.Since(start)
	worked := time.Since(workStart)
	cpu := machineCPU(b) - cpuStart
	b.StopTimer()
	// Nothing waits, so every sighting is indexed: each file has its
	// eleven file_ids (read after the timed part: it is a read of every file).
	if ids := benchFileIDs(b, d, posts); ids != posts*11 {
		b.Fatalf("%d file_ids for %d posts seen by 11 bots", ids, posts)
	}
	replies := 0
	for _, c := range tg.CallsTo("sendMessage") {
		if c.OK && c.Params["chat_id"] == "-1001111111111" {
			replies++
		}
	}
	if replies != posts {
		b.Fatalf("%d replies recorded for %d posts", replies, posts)
	}
	if !noR2 {
		checkObjects(b, o, posts)
	}
	b.ReportMetric(float64(posts*11)/ingested.Seconds(), "updates_ingested/s")
	b.ReportMetric(cpu.Seconds()*1000/float64(posts), "cpu_ms/post")
	if split {
		b.ReportMetric(float64(posts)/worked.Seconds(), "posts_worked/s")
		return
	}
	b.ReportMetric(float64(posts)/elapsed.Seconds(), "posts/s")
	b.ReportMetric(float64(posts)/repliedAt.Seconds(), "posts_replied/s")
}

// benchPost is the channel post, and its file, of the bench's post p.
func benchPost(p int) (db.PostRef, string) {
	return db.PostRef{ChatID: -1001111111111, MessageID: int64(p)}, fmt.Sprintf("AgADbench%06d", p)
}

// benchReplied counts the posts whose reply is recorded.
func benchReplied(b *testing.B, d db.Driver) int {
	stats, err := d.StatsCount(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return int(stats.PostsReplied)
}

// benchBusy reports whether sightings wait for the drain or files for
// their record's write (with R2 off, for the local folder).
func benchBusy(b *testing.B, d db.Driver) bool {
	stats, err := d.StatsCount(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return stats.SightingsWaiting > 0 || stats.R2Pending > 0
}

// benchFileIDs counts the file_ids the bench's files have.
func benchFileIDs(b *testing.B, d db.Driver, posts int) int {
	var uids []string
	for p := 1; p <= posts; p++ {
		_, uid := benchPost(p)
		uids = append(uids, uid)
	}
	files, err := d.FileSyncGetMany(context.Background(), uids)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, f := range files {
		n += len(f.FileIDs)
	}
	return n
}

// machineCPU is the CPU time the whole machine has spent so far, every
// process (ferry, Postgres, the S3 server, the load generator) and the
// kernel, from /proc/stat: CPU per post is a steadier figure than posts per
// second on a shared, noisy machine.
func machineCPU(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		b.Fatalf("/proc/stat: %q", line)
	}
	var ticks int64
	for i, v := range f[1:8] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// roundTrip writes one rendered request and reads its response, which must
// be a 200; the body is discarded.
func roundTrip(conn net.Conn, br *bufio.Reader, req []byte) error {
	if _, err := conn.Write(req); err != nil {
		return err
	}
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	ok := bytes.HasPrefix(status, []byte("HTTP/1.1 200 "))
	length := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, found := bytes.Cut(line, []byte(":")); found && strings.EqualFold(string(k), "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(string(v)))
		}
	}
	if _, err := br.Discard(length); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("status %q", bytes.TrimSpace(status))
	}
	return nil
}

// checkObjects reads every post's R2 object (outside the timed part) and
// fails unless each holds the eleven bots' file_ids the bench sent.
func checkObjects(b *testing.B, o r2.Options, posts int) {
	store, err := r2.New(o)
	if err != nil {
		b.Fatal(err)
	}
	var bad atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := next.Add(1); p <= int64(posts); p = next.Add(1) {
				rec, _, err := store.Get(context.Background(), fmt.Sprintf("AgADbench%06d", p))
				ok := err == nil && len(rec.BotFileIDs) == 11
				for slot := 1; ok && slot <= 11; slot++ {
					ok = rec.BotFileIDs[r2.SlotKey(slot)] == telegramtest.EncodeFileID(telegramtest.KindDocument, 4, p, int64(slot), nil)
				}
				if !ok && bad.Add(1) == 1 {
					b.Errorf("post %d: object %+v, %v", p, rec, err)
				}
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d of %d R2 objects lack file_ids", n, posts)
	}
}
