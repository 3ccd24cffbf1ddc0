package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/urlsource"
)

// urlSource is a file behind a URL, read by the upload pipeline.
type urlSource = urlsource.Source

// isURL tells an /upload argument that is a URL from a path.
func isURL(arg string) bool {
	l := strings.ToLower(arg)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// redactURL is a URL as chat shows it: no user info, no query (either may
// carry a credential).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the URL"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// urlName is a name for the file before the server gives one.
func urlName(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if b := path.Base(u.Path); b != "/" && b != "." && b != "" {
			return b
		}
	}
	return "download"
}

func (d *Deps) urlGuard() (*urlsource.Guard, error) {
	return urlsource.NewGuard(d.Config.UploadURLAllow)
}

// checkURL refuses at once what is not an http(s) URL or names a forbidden
// address literally; names are checked when dialled.
func (d *Deps) checkURL(raw string) error {
	g, err := d.urlGuard()
	if err != nil {
		return err
	}
	_, err = urlsource.CheckURL(raw, g)
	return err
}

// openURL opens raw for an upload: Range requests in parallel, or a spool
// under DATA_DIR/tmp for a server without Range support, bounded by a
// premium session's limit (checkUploadLimit then refuses what no session
// here can upload, with the reason).
func (d *Deps) openURL(ctx context.Context, raw string) (*urlSource, error) {
	g, err := d.urlGuard()
	if err != nil {
		return nil, err
	}
	return urlsource.Open(ctx, raw, urlsource.Options{
		Guard: g, Parallel: 4, SpoolDir: filepath.Join(d.Config.DataDir, "tmp"),
		MaxSize: mtproto.PremiumMaxSize, Logger: d.Logger.With("component", "urlsource"),
	})
}

// checkUploadSize refuses a file the bots cannot upload, with the reason.
func (d *Deps) checkUploadSize(size int64) error {
	return mtproto.NewUploader(nil, nil).CheckSize(size)
}

// permanentURLError: retrying cannot help.
func permanentURLError(err error) bool {
	var se *urlsource.StatusError
	if errors.As(err, &se) {
		return se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests && se.Code != http.StatusRequestTimeout
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return true
	}
	return errors.Is(err, urlsource.ErrForbiddenAddress) || errors.Is(err, urlsource.ErrTooLarge) ||
		errors.Is(err, urlsource.ErrEmpty) || errors.Is(err, mtproto.ErrTooLarge)
}

// urlError is the admin-facing text for a URL that cannot be uploaded.
func urlError(raw string, err error) string {
	shown := html.EscapeString(redactURL(raw))
	var se *urlsource.StatusError
	if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusGone) {
		return fmt.Sprintf("File not found: <code>%s</code> (the server answered %s)", shown, html.EscapeString(se.Status))
	}
	if errors.Is(err, urlsource.ErrForbiddenAddress) {
		var reason string
		if i := strings.Index(err.Error(), urlsource.ErrForbiddenAddress.Error()); i >= 0 {
			reason = err.Error()[i:]
		}
		return fmt.Sprintf("Cannot fetch <code>%s</code>: %s.", shown, html.EscapeString(reason))
	}
	return fmt.Sprintf("Cannot upload <code>%s</code>: %s.", shown, html.EscapeString(err.Error()))
}

// floodWaited records an MTProto FLOOD_WAIT of a bot where every process
// sees it (bot_load), so the next uploads go to another bot meanwhile.
func (d *Deps) floodWaited(ctx context.Context, botID int64, wait time.Duration) {
	err := d.DB.BotSendRelease(ctx, &db.BotSendReleaseParams{BotID: botID, FloodWaitUntil: time.Now().Add(wait)})
	if err != nil {
		logOf(ctx, d).Warn("record flood wait", "bot_id", botID, "err", err)
	}
}

// pickUploader chooses the bot whose MTProto session uploads a file: not
// in flood wait, then the fewest uploads queued or running, then the bot
// that received the command, then slot order. Each bot has its own
// session and its own limits; a failure to look counts as no load.
func pickUploader(ctx context.Context, d *Deps, receiving int64) int64 {
	if len(d.Config.Bots) < 2 {
		return receiving
	}
	load := map[int64]int{}
	if d.River != nil {
		res, err := d.River.JobList(ctx, river.NewJobListParams().Kinds(uploadKinds()...).First(10000).States(
			rivertype.JobStateAvailable, rivertype.JobStateRunning, rivertype.JobStateScheduled,
			rivertype.JobStateRetryable, rivertype.JobStatePending))
		if err != nil {
			logOf(ctx, d).Warn("count uploads per bot", "err", err)
		} else {
			for _, j := range res.Jobs {
				if bot, ok := uploadingBot(j); ok {
					load[bot]++
				}
			}
		}
	}
	flood := map[int64]bool{}
	if loads, err := d.DB.BotLoadList(ctx); err == nil {
		for _, l := range loads {
			flood[l.BotID] = l.FloodWaitUntil.After(time.Now())
		}
	}
	return chooseUploader(d.Config.Bots, receiving, load, flood)
}

// chooseUploader ranks bots (in slot order) as pickUploader says.
func chooseUploader(bots []config.Bot, receiving int64, load map[int64]int, flood map[int64]bool) int64 {
	best := receiving
	better := func(a, b int64) bool { // a before b?
		if flood[a] != flood[b] {
			return !flood[a]
		}
		if load[a] != load[b] {
			return load[a] < load[b]
		}
		return a == receiving && b != receiving
	}
	for _, b := range bots {
		if better(b.ID, best) {
			best = b.ID
		}
	}
	return best
}

// uploadKinds are the jobs that move bytes over a bot's MTProto session.
func uploadKinds() []string { return []string{UploadArgs{}.Kind(), RelayArgs{}.Kind()} }

// uploadingBot is the bot whose MTProto session an upload or relay job
// uses: an upload's chosen uploader, a relay's receiving bot (a file_id
// belongs to one bot).
func uploadingBot(j *rivertype.JobRow) (int64, bool) {
	switch j.Kind {
	case UploadArgs{}.Kind():
		var a UploadArgs
		if decodeArgs(j, &a) == nil {
			return a.uploader(), true
		}
	case RelayArgs{}.Kind():
		var a RelayArgs
		if decodeArgs(j, &a) == nil {
			return a.BotID, true
		}
	}
	return 0, false
}

func decodeArgs(j *rivertype.JobRow, into any) error {
	return json.Unmarshal(j.EncodedArgs, into)
}
