package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/webhook"
)

// recorder is a Submitter that remembers what it was given.
type recorder struct {
	mu  sync.Mutex
	got []jobs.Update
	err error
}

func (r *recorder) Submit(_ context.Context, u jobs.Update) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.got = append(r.got, u)
	return nil
}

const botID = 123456

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.FromMap(map[string]string{
		"BOT_TOKENS":     fmt.Sprintf("%d:AAH%s", botID, strings.Repeat("z", 32)),
		"WEBHOOK_SECRET": "master",
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func post(t *testing.T, h http.Handler, path, secret string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set(webhook.SecretHeader, secret)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

const update = `{"update_id":42,"message":{"message_id":1,"date":1700000000,"chat":{"id":7,"type":"private"},"from":{"id":7,"is_bot":false,"first_name":"A"},"text":"/start"}}`

func TestWebhookAnswers(t *testing.T) {
	cfg := testConfig(t)
	secret := cfg.WebhookSecretToken(botID)
	path := fmt.Sprintf("/tg/%d", botID)
	cases := []struct {
		name   string
		path   string
		secret string
		body   []byte
		want   int
	}{
		{"ok", path, secret, []byte(update), 200},
		{"wrong secret", path, "nope", []byte(update), 401},
		{"no secret", path, "", []byte(update), 401},
		{"another bot's secret", path, cfg.WebhookSecretToken(botID + 1), []byte(update), 401},
		{"unknown bot", "/tg/999", secret, []byte(update), 404},
		{"not a number", "/tg/abc", secret, []byte(update), 404},
		{"too large", path, secret, append([]byte(`{"update_id":1,"x":"`), bytes.Repeat([]byte("a"), 2<<20)...), 413},
		{"truncated JSON", path, secret, []byte(`{"update_id":`), 400},
		{"no update_id", path, secret, []byte(`{"message":{}}`), 400},
		{"wrong types", path, secret, []byte(`{"update_id":1,"message":5}`), 400},
		{"array", path, secret, []byte(`[1,2]`), 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			e := webhook.NewServer(webhook.Options{Config: cfg, Intake: rec, Logger: slog.New(slog.DiscardHandler), Ready: func(context.Context) error { return nil }})
			res := post(t, e, tc.path, tc.secret, tc.body)
			if res.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", res.Code, res.Body, tc.want)
			}
			if want := tc.want == 200; (len(rec.got) == 1) != want {
				t.Fatalf("submitted %d updates", len(rec.got))
			}
			if tc.want == 200 && (rec.got[0].UpdateID != 42 || rec.got[0].BotID != botID || string(rec.got[0].Raw) != update) {
				t.Fatalf("submitted %+v", rec.got[0])
			}
		})
	}
}

func TestWebhookAnswers503WhenNotCommitted(t *testing.T) {
	cfg := testConfig(t)
	rec := &recorder{err: errors.New("database down")}
	e := webhook.NewServer(webhook.Options{Config: cfg, Intake: rec, Logger: slog.New(slog.DiscardHandler), Ready: func(context.Context) error { return nil }})
	res := post(t, e, fmt.Sprintf("/tg/%d", botID), cfg.WebhookSecretToken(botID), []byte(update))
	if res.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 so Telegram re-delivers", res.Code)
	}
	if strings.Contains(res.Body.String(), "database down") {
		t.Fatalf("internal error leaked to caller: %s", res.Body)
	}
}

func TestRiverUIRequiresCredentials(t *testing.T) {
	cfg := testConfig(t)
	cfg.RiverUIUser, cfg.RiverUIPassword = "admin", "pw"
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "river ui") })
	e := webhook.NewServer(webhook.Options{Config: cfg, RiverUI: ui, Logger: slog.New(slog.DiscardHandler), Ready: func(context.Context) error { return nil }})
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"admin", "bad", 401}, {"other", "pw", 401}, {"admin", "pw", 200}} {
		req := httptest.NewRequest(http.MethodGet, "/riverui/jobs", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Fatalf("%s/%s: status %d, want %d", tc.user, tc.pass, rec.Code, tc.want)
		}
	}
}

func TestReadyzReflectsDatabase(t *testing.T) {
	cfg := testConfig(t)
	var readyErr error
	e := webhook.NewServer(webhook.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Ready: func(context.Context) error { return readyErr }})
	get := func(path string) int {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if get("/healthz") != 200 || get("/readyz") != 200 {
		t.Fatal("healthy server not ready")
	}
	readyErr = errors.New("migrations pending")
	if get("/readyz") != 503 || get("/healthz") != 200 {
		t.Fatal("readyz ignores the database")
	}
}

func FuzzParseUpdate(f *testing.F) {
	f.Add([]byte(update))
	f.Add([]byte(`{"update_id":`))
	f.Add([]byte(`{"update_id":1,"channel_post":{"message_id":1,"date":1,"chat":{"id":-100,"type":"channel"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		id, _, err := webhook.ParseUpdate(body)
		if err == nil && id < 0 {
			t.Fatalf("accepted negative update_id %d", id)
		}
	})
}
