package stream

import (
	"html/template"
	"net/http"
)

var errorPage = template.Must(template.New("err").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}} · ferry</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// page answers with a small readable HTML page.
func page(w http.ResponseWriter, code int, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = errorPage.Execute(w, struct{ Title, Text string }{title, text})
}

// ErrorPage writes the same page for other handlers (the file page's 403).
func ErrorPage(w http.ResponseWriter, code int, title, text string) { page(w, code, title, text) }
