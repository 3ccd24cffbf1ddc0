package webhook

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"regexp"

	"github.com/labstack/echo/v4"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
)

// FileLookup finds an indexed file; *index.Indexer is one.
type FileLookup interface {
	GetFile(ctx context.Context, uniqueID string) (index.File, error)
}

// uniqueIDRE is the shape of a Bot API file_unique_id (URL-safe base64).
var uniqueIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{4,64}$`)

var filePage = template.Must(template.New("file").Funcs(template.FuncMap{"size": index.HumanSize}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Name}} · ferry</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}dt{font-weight:600}dd{margin:0 0 .5rem}</style>
</head><body>
<h1>{{.Name}}</h1>
<dl>
<dt>Size</dt><dd>{{size .Size}} ({{.Size}} bytes)</dd>
<dt>Type</dt><dd>{{if .MimeType}}{{.MimeType}}{{else}}{{.Type}}{{end}}</dd>
<dt>Location</dt><dd>{{if .DC}}DC {{.DC}}{{else}}unknown{{end}}</dd>
{{if .Duration}}<dt>Video</dt><dd>{{.Width}}×{{.Height}}, {{.Duration}} s</dd>{{end}}
{{if .Caption}}<dt>Caption</dt><dd>{{.Caption}}</dd>{{end}}
<dt>File id</dt><dd><code>{{.UniqueID}}</code></dd>
<dt>Indexed</dt><dd>{{.CreatedAt.UTC.Format "2006-01-02 15:04 UTC"}}</dd>
</dl>
</body></html>
`))

// serveFile is GET /f/{unique_id}: a file's metadata page, where the index
// replies' View button leads.
func serveFile(files FileLookup) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		if !uniqueIDRE.MatchString(id) {
			return c.String(http.StatusNotFound, "no such file\n")
		}
		f, err := files.GetFile(c.Request().Context(), id)
		if errors.Is(err, db.ErrNotFound) {
			return c.String(http.StatusNotFound, "no such file\n")
		}
		if err != nil {
			return c.String(http.StatusServiceUnavailable, "try again\n")
		}
		c.Response().Header().Set("Content-Type", "text/html; charset=utf-8")
		c.Response().Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		c.Response().WriteHeader(http.StatusOK)
		return filePage.Execute(c.Response(), f)
	}
}
