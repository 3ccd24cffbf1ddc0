package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot"

	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/telegramtest"
)

func TestFormatProgress(t *testing.T) {
	got := jobs.FormatProgress(jobs.ProgressView{Verb: "Uploading", Name: "a<b>.mp4", Acked: 1 << 30, Total: 4 << 30, Speed: 20 << 20, ETA: 150 * time.Second, Elapsed: 51 * time.Second})
	for _, want := range []string{"a&lt;b&gt;.mp4", "[████░░░░░░░░░░░░]", "25.0%", "1.00 GB of 4.00 GB", "20.00 MB/s", "ETA: 2m30s", "Elapsed: 51s"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress %q lacks %q", got, want)
		}
	}
}

func TestProgressMessageThrottlesAndObeys429(t *testing.T) {
	tg := telegramtest.NewServer(t)
	const token = "111:AAH" + "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
	tg.AddBot(token)
	d := testDeps(t, nil, tg.URL(), nil)
	b := d.Bots.All()[0]
	ctx := context.Background()
	msg, err := b.Client.SendMessage(ctx, &bot.SendMessageParams{ChatID: 77, Text: "Queued"})
	if err != nil {
		t.Fatal(err)
	}
	pm := jobs.NewProgressMessage(b, 77, msg.ID, jobs.CancelButton(9), 300*time.Millisecond)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { pm.Run(runCtx); close(done) }()

	// 1.5 s of progress reported every 5 ms: ~300 Sets, at most ~6 edits.
	tg.FailNext("editMessageText", 1, telegramtest.TooManyRequests(1))
	start := time.Now()
	for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
		pm.Set(jobs.FormatProgress(jobs.ProgressView{Verb: "Uploading", Name: "f", Acked: int64(i), Total: 1000}))
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	<-done
	edits := tg.CallsTo("editMessageText")
	if len(edits) < 2 || len(edits) > 6 {
		t.Fatalf("%d edits in 1.5 s at a 300 ms interval", len(edits))
	}
	if gap := edits[1].Time.Sub(edits[0].Time); gap < 950*time.Millisecond {
		t.Fatalf("edit %v after a 429 with retry_after 1s", gap)
	}
	if !strings.Contains(edits[1].Params["reply_markup"], "cancel:9") {
		t.Fatalf("cancel button lost: %s", edits[1].Params["reply_markup"])
	}
	tg.FailNext("editMessageText", 1, telegramtest.TooManyRequests(1))
	if err := pm.Finish(ctx, "Done: <b>f</b>", nil); err != nil {
		t.Fatal(err)
	}
	final, ok := tg.Message(77, msg.ID)
	if !ok || final.Text != "Done: f" {
		t.Fatalf("final message %+v", final)
	}
}
