package jobs

import (
	"context"
	"fmt"
	"html"
	"strings"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
)

// botsReport is the answer to /bots: one line per configured bot with its
// slot, id and username, what the send choice knows of it (sends,
// failures, a flood wait still running and until when), its sends by
// file_id and uploads in flight, and how it receives updates.
func (w *UpdateWorker) botsReport(ctx context.Context) (string, error) {
	loads, err := w.d.DB.BotLoadList(ctx)
	if err != nil {
		return "", err
	}
	byID := make(map[int64]db.BotLoad, len(loads))
	for _, l := range loads {
		byID[l.BotID] = l
	}
	uploads, err := w.uploadsInFlight(ctx)
	if err != nil {
		return "", err
	}
	sending, err := w.d.Senders.InFlight(ctx)
	if err != nil {
		return "", err
	}
	bots := w.d.Bots.All()
	hooks := w.webhookStates(ctx, bots)
	now := time.Now()
	var sb strings.Builder
	sb.WriteString("<b>Bots</b>\n")
	for i, b := range bots {
		fmt.Fprintf(&sb, "b_%d: %d", b.Slot, b.ID)
		if name := username(ctx, w.d, b); name != "" {
			fmt.Fprintf(&sb, " @%s", html.EscapeString(name))
		}
		l := byID[b.ID]
		fmt.Fprintf(&sb, " — %d sends, %d failed; %s, %s in flight; %s", l.Sends, l.Failures,
			plural(sending[b.ID], "send", "sends"), plural(uploads[b.ID], "upload", "uploads"), hooks[i])
		if wait := l.FloodWaitUntil.Sub(now); wait > 0 {
			fmt.Fprintf(&sb, "; flood wait until %s (%s)", l.FloodWaitUntil.UTC().Format("15:04:05 UTC"), wait.Round(time.Second))
		}
		sb.WriteString("\n")
	}
	return sb.String(), nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// uploadsInFlight counts the running upload and relay jobs of each bot
// whose MTProto session moves the bytes.
func (w *UpdateWorker) uploadsInFlight(ctx context.Context) (map[int64]int, error) {
	res, err := w.d.River.JobList(ctx, river.NewJobListParams().
		Kinds(uploadKinds()...).States(rivertype.JobStateRunning).First(1000))
	if err != nil {
		return nil, fmt.Errorf("list running uploads: %w", err)
	}
	out := map[int64]int{}
	for _, j := range res.Jobs {
		if bot, ok := uploadingBot(j); ok {
			out[bot]++
		}
	}
	return out, nil
}

// webhookStates says how each bot receives updates: long polling, or its
// webhook as getWebhookInfo reports it (asked of every bot at once).
func (w *UpdateWorker) webhookStates(ctx context.Context, bots []*botapi.Bot) []string {
	out := make([]string, len(bots))
	if w.d.Config.UpdatesMode == "poll" {
		for i := range out {
			out[i] = "polling (getUpdates)"
		}
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, b := range bots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := b.Client.GetWebhookInfo(ctx)
			want := fmt.Sprintf("%s/tg/%d", w.d.Config.PublicURL, b.ID)
			switch {
			case err != nil || info == nil:
				out[i] = "webhook unknown (getWebhookInfo failed)"
			case info.URL == "":
				out[i] = "no webhook set"
			case info.URL == want:
				out[i] = fmt.Sprintf("webhook set (%d pending)", info.PendingUpdateCount)
			default:
				out[i] = "webhook set to another URL"
			}
			if err == nil && info != nil && info.URL != "" && info.LastErrorMessage != "" {
				out[i] += ", last error: " + html.EscapeString(info.LastErrorMessage)
			}
		}()
	}
	wg.Wait()
	return out
}

// uploadsAndUptime are /stats' lines about uploads, from upload_totals,
// and how long this process has run.
func (w *UpdateWorker) uploadsAndUptime(ctx context.Context, sb *strings.Builder) error {
	t, err := w.d.DB.UploadTotalGet(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(sb, "\n<b>Uploads</b>: %s, %s uploaded", plural(int(t.Files), "file", "files"), index.HumanSize(t.Bytes))
	if !w.d.Started.IsZero() {
		fmt.Fprintf(sb, "\n<b>Uptime</b>: %s", time.Since(w.d.Started).Round(time.Second))
	}
	return nil
}
