package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db/dbtest"
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
// FERRY_BENCH_NO_R2=1 runs without R2 (database alone), to split the cost.
func BenchmarkIndexEndToEnd(b *testing.B) {
	posts := 300
	if v := os.Getenv("FERRY_BENCH_POSTS"); v != "" {
		fmt.Sscan(v, &posts)
	}
	tg := telegramtest.NewServer(b)
	s3 := r2test.StartVersity(b)
	o := s3.Options()
	var tokens []string
	for i := 1; i <= 11; i++ {
		tok := fmt.Sprintf("%d:AAH-bench-bot-%02d-abcdefghijklmnopqrstu", 900000+i, i)
		tokens = append(tokens, tok)
		tg.AddBot(tok)
	}
	dbURL := dbtest.NewURL(b)
	port := freePort(b)
	for k, v := range map[string]string{
		"DATABASE_URL": dbURL, "BOT_TOKENS": strings.Join(tokens, ","), "WEBHOOK_SECRET": "bench",
		"BOT_API_URL": tg.URL(), "PORT": fmt.Sprint(port), "PUBLIC_URL": "https://ferry.example.org",
		"R2_ENDPOINT": o.Endpoint, "R2_BUCKET": o.Bucket, "R2_ACCESS_KEY_ID": o.AccessKeyID,
		"R2_SECRET_ACCESS_KEY": o.SecretAccessKey, "LOG_LEVEL": "error",
	} {
		if os.Getenv("FERRY_BENCH_NO_R2") != "" && strings.HasPrefix(k, "R2_") {
			continue
		}
		b.Setenv(k, v)
	}
	noR2 := os.Getenv("FERRY_BENCH_NO_R2") != ""
	b.Chdir(b.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	mode := "serve"
	if os.Getenv("FERRY_BENCH_INGEST_ONLY") != "" {
		mode = "web"
	}
	go func() { done <- run(ctx, []string{mode}, io.Discard, io.Discard) }()
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

	type delivery struct {
		botID int64
		body  []byte
	}
	var work []delivery
	for p := 1; p <= posts; p++ {
		uid := fmt.Sprintf("AgADbench%06d", p)
		for slot := 1; slot <= 11; slot++ {
			botID := int64(900000 + slot)
			fid := telegramtest.EncodeFileID(telegramtest.KindDocument, 4, int64(p), int64(slot), nil)
			body := fmt.Sprintf(`{"update_id":%d,"channel_post":{"message_id":%d,"date":1700000000,"chat":{"id":-1001111111111,"type":"channel","title":"C"},"document":{"file_id":%q,"file_unique_id":%q,"file_name":"file-%d.mkv","mime_type":"video/x-matroska","file_size":%d}}}`,
				p, p, fid, uid, p, 1<<30+p)
			work = append(work, delivery{botID, []byte(body)})
		}
	}
	cfg := &config.Config{WebhookSecret: "bench"}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for s := 0; s < 64; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(work)) {
					return
				}
				d := work[i]
				req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/tg/%d", base, d.botID), bytes.NewReader(d.body))
				req.Header.Set(webhook.SecretHeader, cfg.WebhookSecretToken(d.botID))
				res, err := hc.Do(req)
				if err != nil || res.StatusCode != 200 {
					failed.Add(1)
				}
				if res != nil {
					res.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	ingested := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d deliveries failed", failed.Load())
	}
	if mode == "web" {
		b.ReportMetric(float64(posts*11)/ingested.Seconds(), "updates_ingested/s")
		return
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	var repliedAt time.Duration
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var replied, synced int
		if err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM channel_posts WHERE replied_at IS NOT NULL), (SELECT count(*) FROM file_bot_ids WHERE r2_synced_at IS NOT NULL)`).Scan(&replied, &synced); err != nil {
			b.Fatal(err)
		}
		if replied == posts && repliedAt == 0 {
			repliedAt = time.Since(start)
		}
		if replied == posts && (synced == posts*11 || noR2) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("after 10 min: %d/%d replied, %d/%d file_ids in R2", replied, posts, synced, posts*11)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	replies := 0
	for _, c := range tg.CallsTo("sendMessage") {
		if c.OK && c.Params["chat_id"] == "-1001111111111" {
			replies++
		}
	}
	if replies != posts {
		b.Fatalf("%d replies recorded for %d posts", replies, posts)
	}
	b.ReportMetric(float64(posts)/elapsed.Seconds(), "posts/s")
	b.ReportMetric(float64(posts)/repliedAt.Seconds(), "posts_replied/s")
	b.ReportMetric(float64(posts*11)/ingested.Seconds(), "updates_ingested/s")
}
