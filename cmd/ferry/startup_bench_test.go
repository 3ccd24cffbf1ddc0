package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db/dbtest"
)

// BenchmarkStartupToReady measures process start → first 200 on /readyz,
// with migrations already applied (as on a Fly machine waking from zero).
//
//	go test -run '^$' -bench StartupToReady -benchtime 1x ./cmd/ferry/
func BenchmarkStartupToReady(b *testing.B) {
	env := dbtest.NewEnv(b)
	for k, v := range map[string]string{
		"BOT_TOKENS":     "4242:AAH" + strings.Repeat("s", 32),
		"WEBHOOK_SECRET": "s",
		"BOT_API_URL":    "http://127.0.0.1:1",
	} {
		env[k] = v
	}
	for i := 0; i < b.N; i++ {
		var times []time.Duration
		for run := 0; run < 10; run++ {
			started := time.Now()
			p := start(b, env, "serve")
			times = append(times, p.waitReady(b, started))
			p.stop()
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50_ms_to_ready")
		b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max_ms_to_ready")
		b.Log(fmt.Sprint(times))
	}
}
