package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/webhook"
)

// BenchmarkWebhookIngest posts updates from 64 concurrent senders through the
// real HTTP handler, group-commit intake and Postgres, and in the same run
// measures River's raw InsertMany on the same database as the baseline.
//
//	go test -run '^$' -bench WebhookIngest -benchtime 1x ./webhook/
func BenchmarkWebhookIngest(b *testing.B) {
	const senders, total = 64, 20000
	ctx := context.Background()
	cfg := testConfig(&testing.T{})
	logger := slog.New(slog.DiscardHandler)
	for i := 0; i < b.N; i++ {
		d := dbtest.New(b)
		bots, _ := botapi.New(cfg.Bots, "http://127.0.0.1:1", nil, logger)
		client, err := jobs.NewClient(&jobs.Deps{DB: d, Config: cfg, Bots: bots, Logger: logger}, jobs.ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		in := jobs.NewIntake(d, client, logger)
		ictx, cancel := context.WithCancel(ctx)
		go in.Run(ictx)
		srv := httptest.NewServer(webhook.NewServer(webhook.Options{Config: cfg, Intake: in, Logger: logger, Ready: func(context.Context) error { return nil }}))
		url := fmt.Sprintf("%s/tg/%d", srv.URL, botID)
		secret := cfg.WebhookSecretToken(botID)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}

		lat := make([]time.Duration, total)
		var next, failures atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for s := 0; s < senders; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := next.Add(1)
					if n > total {
						return
					}
					body := fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":{"id":7,"type":"private"},"text":"/start"}}`, n, n)
					req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
					req.Header.Set(webhook.SecretHeader, secret)
					t0 := time.Now()
					res, err := hc.Do(req)
					if err != nil || res.StatusCode != 200 {
						failures.Add(1)
					}
					if res != nil {
						res.Body.Close()
					}
					lat[n-1] = time.Since(t0)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		srv.Close()
		cancel()
		if failures.Load() > 0 {
			b.Fatalf("%d requests failed", failures.Load())
		}
		counts, err := client.JobCountByState(ctx)
		committed := 0
		for _, n := range counts {
			committed += n
		}
		if err != nil || committed != total {
			b.Fatalf("committed %d jobs (err %v), want %d", committed, err, total)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })

		// Baseline: River's InsertMany of the same number of update jobs, in
		// batches of 1000, on a fresh database.
		d2 := dbtest.New(b)
		client2, err := jobs.NewClient(&jobs.Deps{DB: d2, Config: cfg, Bots: bots, Logger: logger}, jobs.ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		for base := 0; base < total; base += 1000 {
			params := make([]river.InsertManyParams, 1000)
			for j := range params {
				id := int64(base + j + 1)
				params[j] = river.InsertManyParams{Args: jobs.UpdateArgs{BotID: botID, UpdateID: id, Update: []byte(fmt.Sprintf(`{"update_id":%d}`, id))}}
			}
			if _, err := client2.InsertMany(ctx, params); err != nil {
				b.Fatal(err)
			}
		}
		rawRate := float64(total) / time.Since(t1).Seconds()
		rate := float64(total) / elapsed.Seconds()
		b.ReportMetric(rate, "updates/s")
		b.ReportMetric(float64(lat[total/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[total*99/100].Microseconds())/1000, "p99_ms")
		b.ReportMetric(rawRate, "insertmany_jobs/s")
		b.ReportMetric(rate/rawRate, "ratio_vs_insertmany")
	}
}
