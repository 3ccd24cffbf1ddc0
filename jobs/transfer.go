package jobs

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"
	"github.com/gotd/td/tgerr"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/mtproto"
)

// transferWords name a kind of transfer in its status texts.
type transferWords struct {
	noun, past, gerund string // "upload", "Uploaded", "uploading"
}

// transferEnd is how one slice of an upload or relay ended.
type transferEnd struct {
	job     *rivertype.JobRow
	words   transferWords
	key     string // the resume state's key
	name    string
	size    int64
	as      string // how it was posted, e.g. " as a streamable video"; may be ""
	msgID   int
	err     error
	slice   context.Context
	started time.Time
	// floodBot is the bot a FLOOD_WAIT is recorded against; 0 when the wait
	// is another account's (the premium user session).
	floodBot int64
	status   *ProgressMessage
	final    func(text string, markup models.ReplyMarkup)
}

// finishTransfer turns the end of an upload or relay slice into the job's
// result and its final status: complete (with the bytes counted in the
// same transaction, so a retry after a crash does not count them again),
// cancel, snooze for the next slice or a flood wait, or retry.
func finishTransfer(ctx context.Context, d *Deps, e transferEnd) error {
	w, name := e.words, html.EscapeString(e.name)
	cancelled := errors.Is(context.Cause(ctx), river.ErrJobCancelledRemotely)
	err, msgID := e.err, e.msgID
	if errors.Is(err, mtproto.ErrAlreadyPosted) && !cancelled {
		// RANDOM_ID_DUPLICATE: an earlier attempt posted it and died
		// before recording the message; retrying cannot post it again.
		msgID, err = postedID(ctx, d, e.key), nil
	}
	switch {
	case err == nil:
		err := db.WithTx(ctx, d.DB, func(tx db.Tx) error {
			if err := tx.UploadTotalAdd(ctx, e.size); err != nil {
				return err
			}
			if err := d.River.JobCompleteTx(ctx, tx, e.job); err != nil {
				return fmt.Errorf("complete %s job: %w", w.noun, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if msgID == 0 {
			e.final(fmt.Sprintf("%s <b>%s</b> (%s): it was already in the channel (Telegram did not say which post).",
				w.past, name, index.HumanSize(e.size)), nil)
			return nil
		}
		took := time.Since(e.started)
		e.final(fmt.Sprintf("%s <b>%s</b> (%s)%s in %s, %s/s on average.", w.past, name, index.HumanSize(e.size), e.as,
			took.Round(time.Second), index.HumanSize(int64(float64(e.size)/max(took.Seconds(), 0.001)))),
			LinkButton("Open post", MessageLink(d.Config.ChannelID, msgID)))
		return nil
	case cancelled:
		e.final(fmt.Sprintf("Cancelled the %s of <b>%s</b>.", w.noun, name), nil)
		return river.JobCancel(errors.New("cancelled by an admin"))
	case ctx.Err() != nil:
		// Shutting down: the next process resumes from the acknowledged parts.
		return river.JobSnooze(time.Second)
	case e.slice.Err() != nil:
		// Slice over; continue at once in a new attempt that does not count.
		return river.JobSnooze(0)
	case errors.Is(err, mtproto.ErrTooLarge):
		e.final(fmt.Sprintf("Cannot %s <b>%s</b>: %s", w.noun, name, html.EscapeString(err.Error())), nil)
		return river.JobCancel(err)
	}
	if wait, ok := tgerr.AsFloodWait(err); ok {
		if e.floodBot != 0 {
			d.floodWaited(ctx, e.floodBot, wait)
		}
		e.status.Set(fmt.Sprintf("Telegram asked to wait %s before %s <b>%s</b>.", wait, w.gerund, name))
		return river.JobSnooze(wait)
	}
	e.final(fmt.Sprintf("%s of <b>%s</b> failed (attempt %d of %d), retrying: %s", capitalize(w.noun), name,
		e.job.Attempt, e.job.MaxAttempts, html.EscapeString(err.Error())), CancelButton(e.job.ID))
	return fmt.Errorf("%s %s: %w", w.noun, e.name, err)
}

// postedID is the message id the resume state under key recorded, or 0.
func postedID(ctx context.Context, d *Deps, key string) int {
	st, ok, err := d.UploadState.Load(ctx, key)
	if err != nil || !ok {
		return 0
	}
	return st.MessageID
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
