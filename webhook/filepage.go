package webhook

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/stream"
)

// FileLookup finds an indexed file; *index.Indexer is one.
type FileLookup interface {
	GetFile(ctx context.Context, uniqueID string) (index.File, error)
}

// uniqueIDRE is the shape of a Bot API file_unique_id (URL-safe base64).
var uniqueIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{4,64}$`)

var filePage = template.Must(template.New("file").Funcs(template.FuncMap{"size": index.HumanSize}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.F.Name}} · ferry</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:1.5rem auto;padding:0 1rem;color:#1d1d1f;background:#fafafa}
h1{font-size:1.35rem;word-break:break-word;margin:.2rem 0 1rem}
video,audio{width:100%;max-height:70vh;background:#000;border-radius:.5rem}
audio{background:none}
.actions{margin:1rem 0}
.btn{display:inline-block;padding:.6rem 1.1rem;border-radius:.4rem;background:#0a66c2;color:#fff;text-decoration:none;font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0}
dt{font-weight:600;color:#555}dd{margin:0;word-break:break-word}
.note{color:#666;font-size:.9rem}
</style>
</head><body>
<h1>{{.F.Name}}</h1>
{{if .Stream}}{{if .Video}}<video id="player" controls preload="metadata" src="{{.Stream}}"{{if .F.Width}} width="{{.F.Width}}" height="{{.F.Height}}"{{end}}></video>
{{else if .Audio}}<audio id="player" controls preload="metadata" src="{{.Stream}}"></audio>
{{end}}<div class="actions"><a class="btn" id="download" href="{{.Download}}" download>Download ({{size .F.Size}})</a></div>
{{end}}<dl>
<dt>Size</dt><dd>{{size .F.Size}} ({{.F.Size}} bytes)</dd>
<dt>Type</dt><dd>{{if .F.MimeType}}{{.F.MimeType}}{{else}}{{.F.Type}}{{end}}</dd>
<dt>Location</dt><dd>{{if .F.DC}}DC {{.F.DC}}{{else}}unknown{{end}}</dd>
{{if .F.Duration}}<dt>Duration</dt><dd>{{.Duration}}</dd>{{end}}
{{if .F.Width}}<dt>Resolution</dt><dd>{{.F.Width}}×{{.F.Height}}</dd>{{end}}
{{if .F.Caption}}<dt>Caption</dt><dd>{{.F.Caption}}</dd>{{end}}
<dt>Posted in</dt><dd>{{if .PostURL}}<a href="{{.PostURL}}">message {{.F.MessageID}}</a> of chat <code>{{.F.ChatID}}</code>{{else}}message {{.F.MessageID}} of chat <code>{{.F.ChatID}}</code>{{end}}</dd>
<dt>Indexed</dt><dd>{{.F.CreatedAt.UTC.Format "2006-01-02 15:04 UTC"}}</dd>
<dt>File id</dt><dd><code>{{.F.UniqueID}}</code></dd>
</dl>
{{if .Stream}}<p class="note">These links work until {{.Until.UTC.Format "2006-01-02 15:04 UTC"}}.</p>
{{else}}<p class="note">Streaming links are off on this server (no LINK_SECRET).</p>
{{end}}</body></html>
`))

type filePageData struct {
	F                index.File
	Stream, Download string
	PostURL          string
	Video, Audio     bool
	Duration         string
	Until            time.Time
}

// FilePage configures the /f/ page.
type FilePage struct {
	Files FileLookup
	// Links signs the page's stream and download links and checks the
	// page's own signature; nil: links are off, the page shows metadata.
	Links *links.Signer
	// Lifetime of the links the page hands out (from the page view).
	Lifetime time.Duration
	// Public serves the page without a signature.
	Public bool
	Now    func() time.Time
}

// serveFile is GET /f/{unique_id}: a file's page, where the index replies'
// View button leads: metadata, a player for video and audio, and a
// download button, both through signed /dl links.
func serveFile(p FilePage) echo.HandlerFunc {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Lifetime <= 0 {
		p.Lifetime = 24 * time.Hour
	}
	return func(c echo.Context) error {
		w, r := c.Response(), c.Request()
		id := c.Param("id")
		if !uniqueIDRE.MatchString(id) {
			stream.ErrorPage(w, http.StatusNotFound, "No such file", "This link does not name a file.")
			return nil
		}
		now := p.Now()
		if p.Links != nil && !p.Public {
			q := r.URL.Query()
			if err := p.Links.Verify(id, q.Get("exp"), q.Get("sig"), links.Page, now); err != nil {
				if errors.Is(err, links.ErrExpired) {
					stream.ErrorPage(w, http.StatusForbidden, "Link expired", "This page's link has expired. Ask the bot for a fresh one (/get).")
				} else {
					stream.ErrorPage(w, http.StatusForbidden, "Link not valid", "This page needs a signed link. Ask the bot for one (/get).")
				}
				return nil
			}
		}
		f, err := p.Files.GetFile(r.Context(), id)
		if errors.Is(err, db.ErrNotFound) {
			stream.ErrorPage(w, http.StatusNotFound, "No such file", "This file is not in the index.")
			return nil
		}
		if err != nil {
			stream.ErrorPage(w, http.StatusServiceUnavailable, "Try again", "The index is not reachable right now.")
			return nil
		}
		d := filePageData{F: f, PostURL: postURL(f.ChatID, f.MessageID)}
		mt := strings.ToLower(f.MimeType)
		d.Video = strings.HasPrefix(mt, "video/") || (mt == "" && (f.Type == index.TypeVideo || f.Type == index.TypeAnimation))
		d.Audio = !d.Video && (strings.HasPrefix(mt, "audio/") || (mt == "" && f.Type == index.TypeAudio))
		if f.Duration > 0 {
			d.Duration = (time.Duration(f.Duration) * time.Second).String()
		}
		if p.Links != nil {
			// Relative links: the page works under any host name. They
			// outlive the page view by the full lifetime.
			d.Until = now.Add(p.Lifetime)
			d.Stream = p.Links.DownloadURL("", f.UniqueID, f.Name, d.Until, links.Inline)
			d.Download = p.Links.DownloadURL("", f.UniqueID, f.Name, d.Until, links.Attachment)
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; media-src 'self'; img-src 'self'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "private, no-store")
		w.WriteHeader(http.StatusOK)
		return filePage.Execute(w, d)
	}
}

// postURL links a channel post (t.me/c/ works for members of private
// channels too); "" for chats that are not channels.
func postURL(chatID, messageID int64) string {
	const prefix = -1000000000000
	if chatID > prefix || messageID <= 0 {
		return ""
	}
	return fmt.Sprintf("https://t.me/c/%d/%d", -chatID+prefix, messageID)
}
