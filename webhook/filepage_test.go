package webhook_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/index"
	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/webhook"
)

type oneFile struct{ f index.File }

func (o oneFile) GetFile(_ context.Context, id string) (index.File, error) {
	if id != o.f.UniqueID {
		return index.File{}, db.ErrNotFound
	}
	return o.f, nil
}

func pageServer(t *testing.T, secret string, public bool) (*httptest.Server, *links.Signer) {
	t.Helper()
	cfg, err := config.FromMap(map[string]string{"BOT_TOKENS": "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "LINK_SECRET": secret,
		"FILE_PAGE_PUBLIC": map[bool]string{true: "true", false: ""}[public]})
	if err != nil {
		t.Fatal(err)
	}
	f := index.File{UniqueID: "AgADvideo1", Name: `clip <1>.mp4`, Size: 123456, MimeType: "video/mp4", Type: index.TypeVideo,
		DC: 4, Duration: 95, Width: 1280, Height: 720, ChatID: -1001234567890, MessageID: 42, CreatedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	s := links.New(secret)
	srv := httptest.NewServer(webhook.NewServer(webhook.Options{Config: cfg, Files: oneFile{f}, Links: s,
		Logger: slog.New(slog.DiscardHandler), Ready: func(context.Context) error { return nil }}))
	t.Cleanup(srv.Close)
	return srv, s
}

func fetch(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

var srcRE = regexp.MustCompile(`<video id="player" controls preload="metadata" src="([^"]+)"`)

func TestFilePageSigned(t *testing.T) {
	srv, s := pageServer(t, "page secret", false)
	if code, body := fetch(t, srv.URL+"/f/AgADvideo1"); code != 403 || !strings.Contains(body, "needs a signed link") {
		t.Fatalf("unsigned page: %d %s", code, body)
	}
	if code, _ := fetch(t, s.PageURL(srv.URL, "AgADvideo1", time.Now().Add(-time.Minute))); code != 403 {
		t.Fatalf("expired page link: %d", code)
	}
	// A stream signature is not a page signature.
	dl := s.DownloadURL(srv.URL, "AgADvideo1", "x", time.Now().Add(time.Hour), links.Inline)
	_, q, _ := strings.Cut(dl, "?")
	if code, _ := fetch(t, srv.URL+"/f/AgADvideo1?"+q); code != 403 {
		t.Fatalf("page opened with a stream signature: %d", code)
	}
	code, body := fetch(t, s.PageURL(srv.URL, "AgADvideo1", time.Now().Add(time.Minute)))
	if code != 200 {
		t.Fatalf("signed page: %d %s", code, body)
	}
	for _, want := range []string{"<h1>clip &lt;1&gt;.mp4</h1>", "1280×720", "1m35s", "DC 4", "https://t.me/c/1234567890/42", `id="download"`, "120.56 KB"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The player's link is a valid inline stream link that outlives the
	// page link (a minute) by the configured lifetime (24 h).
	m := srcRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no player in %s", body)
	}
	u, err := url.Parse(strings.ReplaceAll(m[1], "&amp;", "&"))
	if err != nil || !strings.HasPrefix(u.Path, "/dl/AgADvideo1/") {
		t.Fatalf("player src %q", m[1])
	}
	if err := s.Verify("AgADvideo1", u.Query().Get("exp"), u.Query().Get("sig"), links.Inline, time.Now().Add(23*time.Hour)); err != nil {
		t.Fatalf("player link: %v", err)
	}
}

func TestFilePagePublicAndLinksOff(t *testing.T) {
	srv, _ := pageServer(t, "page secret", true)
	if code, body := fetch(t, srv.URL+"/f/AgADvideo1"); code != 200 || !srcRE.MatchString(body) {
		t.Fatalf("public page: %d %s", code, body)
	}
	if code, _ := fetch(t, srv.URL+"/f/AgADother1"); code != 404 {
		t.Fatalf("unknown file: %d", code)
	}
	off, _ := pageServer(t, "", false)
	code, body := fetch(t, off.URL+"/f/AgADvideo1")
	if code != 200 || srcRE.MatchString(body) || !strings.Contains(body, "Streaming links are off") {
		t.Fatalf("links off: %d %s", code, body)
	}
}
