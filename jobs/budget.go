package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/index"
)

// budget is the send budget every send takes its turn from (nil, which
// paces nothing, without a botpool).
func (d *Deps) budget() *botpool.Budget { return d.Senders.Budget() }

// answerWithin is how long a send that must go (a command's answer, a
// status message) waits for its turn inside the job; a turn further away
// snoozes the job instead (no attempt used) and the update runs again.
const answerWithin = 20 * time.Second

// paced waits for botID's turn in chatID before a send that must go.
func paced(ctx context.Context, d *Deps, botID, chatID int64) error {
	err := d.budget().Wait(ctx, chatID, botID, answerWithin)
	if wait, ok := botpool.AsWait(err); ok {
		return river.JobSnooze(wait)
	}
	return err
}

// pacedAfter waits for botID's turn in chatID however far away it is (as
// long as ctx lets it): for a send that follows what the job has done
// already (a command's answer, "Posted to the channel"), which a snooze
// would make the job do again.
func pacedAfter(ctx context.Context, d *Deps, botID, chatID int64) error {
	for {
		err := d.budget().Wait(ctx, chatID, botID, answerWithin)
		wait, ok := botpool.AsWait(err)
		if !ok {
			return err
		}
		if err := botpool.SleepUntil(ctx, time.Now().Add(wait)); err != nil {
			return err
		}
	}
}

// floodCheck records a Bot API 429 in the send budget, so that no process
// sends from botID into chatID before retry_after, and returns err.
func floodCheck(ctx context.Context, d *Deps, botID, chatID int64, method string, err error) error {
	if wait, ok := botapi.RetryAfter(err); ok {
		d.budget().Refused(ctx, botID, chatID, method, wait)
	}
	return err
}

// sendMethod is the Bot API method sendFileID uses for a file type.
func sendMethod(typ string) string {
	switch typ {
	case index.TypeVideo:
		return "sendVideo"
	case index.TypeAudio:
		return "sendAudio"
	case index.TypeAnimation:
		return "sendAnimation"
	}
	return "sendDocument"
}

// budgetLines is /stats' account of the send budget: sends that waited
// for their turn, 429s, and each bot that is busy now.
func (w *UpdateWorker) budgetLines(ctx context.Context, sb *strings.Builder) error {
	state, err := w.d.budget().State(ctx)
	if err != nil {
		return err
	}
	var sends, queued, refused int64
	for _, s := range state {
		sends, queued, refused = sends+s.Sends, queued+s.Queued, refused+s.Refused
	}
	fmt.Fprintf(sb, "\n<b>Send budget</b>: %d sends, %d queued behind the budget, %s of 429 (Too Many Requests)",
		sends, queued, plural(int(refused), "answer", "answers"))
	for _, s := range state {
		b, ok := w.d.Bots.ByID(s.BotID)
		if !ok || (s.NextIn == 0 && s.BlockedFor == 0 && s.BusyChats == 0) {
			continue
		}
		fmt.Fprintf(sb, "\nb_%d:", b.Slot)
		if s.BlockedFor > 0 {
			fmt.Fprintf(sb, " blocked in every chat for %s;", roundTenth(s.BlockedFor))
		}
		if s.BusyChats > 0 {
			fmt.Fprintf(sb, " busy in %d chats (chat %d: next turn in %s)", s.BusyChats, s.Busiest, roundTenth(s.BusiestIn))
		} else {
			fmt.Fprintf(sb, " next turn in %s", roundTenth(s.NextIn))
		}
	}
	return nil
}

func roundTenth(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
