package main

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/telegramtest"
)

// BenchmarkColdStartToReply is the serverless latency of the scale-to-zero
// layout: from starting `ferry serve` (migrations already applied, as on a
// Fly machine woken from zero) to the webhook's 200 for the first update,
// posted as soon as the port accepts connections (Fly's proxy holds the
// request until then), and to ferry's reply to it arriving at the Bot API.
// Ten starts per run; it reports the median and p90 of both.
//
//	go test -run '^$' -bench ColdStartToReply -benchtime 1x ./cmd/ferry/
//	FERRY_TEST_DB=sqlite go test -run '^$' -bench ColdStartToReply -benchtime 1x ./cmd/ferry/
func BenchmarkColdStartToReply(b *testing.B) {
	tg := telegramtest.NewServer(b)
	tg.AddBot(e2eToken)
	env := dbtest.NewEnv(b)
	for k, v := range map[string]string{
		"BOT_TOKENS": e2eToken, "WEBHOOK_SECRET": "cold-secret", "BOT_API_URL": tg.URL(),
		"IDLE_EXIT_AFTER": "1s",
	} {
		env[k] = v
	}
	secret := config.DeriveSecretToken("cold-secret", e2eBotID)
	// One start first, untimed: it applies the migrations (on SQLite) and
	// warms the page cache, as a deployed image would be.
	p := start(b, env, "serve")
	p.waitReady(b, time.Now())
	p.stop()
	update := int64(50000)
	for i := 0; i < b.N; i++ {
		var accepted, answered []time.Duration
		for run := 0; run < 10; run++ {
			update++
			chat := update // one chat per start: its reply is the first there
			started := time.Now()
			p := start(b, env, "serve")
			if code := postWhenUp(b, p, secret, commandUpdate(update, chat, "/start")); code != 200 {
				b.Fatalf("status %d", code)
			}
			accepted = append(accepted, time.Since(started))
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
				if sent := sentOK(tg, chat); len(sent) > 0 {
					answered = append(answered, sent[0].Time.Sub(started))
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("no reply to update %d:\n%s", update, p.logs())
				}
			}
			p.stop()
		}
		slices.Sort(accepted)
		slices.Sort(answered)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		median := func(s []time.Duration) float64 { return (ms(s[len(s)/2-1]) + ms(s[len(s)/2])) / 2 }
		p90 := func(s []time.Duration) float64 { return ms(s[int(math.Ceil(0.9*float64(len(s))))-1]) } // nearest rank
		b.ReportMetric(median(accepted), "median_ms_to_200")
		b.ReportMetric(p90(accepted), "p90_ms_to_200")
		b.ReportMetric(median(answered), "median_ms_to_reply")
		b.ReportMetric(p90(answered), "p90_ms_to_reply")
		b.Log(fmt.Sprint("to the 200: ", accepted, "\nto the reply: ", answered))
	}
}

// sentOK are the accepted sendMessage calls to chat.
func sentOK(tg *telegramtest.Server, chat int64) []telegramtest.Call {
	var out []telegramtest.Call
	for _, c := range tg.CallsTo("sendMessage") {
		if c.OK && c.Params["chat_id"] == fmt.Sprint(chat) {
			out = append(out, c)
		}
	}
	return out
}
