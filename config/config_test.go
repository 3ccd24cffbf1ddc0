package config_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/config"
)

func tok(id int) string { return fmt.Sprintf("%d:AAH%s", id, strings.Repeat("x", 32)) }

func TestBotTokensOrderGivesSlots(t *testing.T) {
	cfg, err := config.FromMap(map[string]string{"BOT_TOKENS": tok(111) + ", " + tok(222) + "," + tok(333)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Bots) != 3 || cfg.Bots[0].ID != 111 || cfg.Bots[2].Slot != 3 || cfg.Bots[2].ID != 333 {
		t.Fatalf("bots = %v", cfg.Bots)
	}
}

func TestMultiTokensSortNumerically(t *testing.T) {
	env := map[string]string{"BOT_TOKEN": tok(1)}
	for i := 1; i <= 11; i++ {
		env[fmt.Sprintf("MULTI_TOKEN%d", i)] = tok(100 + i)
	}
	cfg, err := config.FromMap(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Bots) != 12 {
		t.Fatalf("got %d bots", len(cfg.Bots))
	}
	for i, b := range cfg.Bots[1:] {
		if b.ID != int64(101+i) || b.Slot != i+2 {
			t.Fatalf("slot %d = %v, want MULTI_TOKEN%d", b.Slot, b, i+1)
		}
	}
}

func TestBadTokensStopStartWithoutEchoingThem(t *testing.T) {
	secret := "SECRETPART" + strings.Repeat("y", 30)
	cases := map[string]map[string]string{
		"malformed": {"BOT_TOKENS": tok(1) + ",notatoken" + secret},
		"duplicate": {"BOT_TOKENS": "5:" + secret + ",5:" + secret},
		"bad multi": {"BOT_TOKEN": tok(1), "MULTI_TOKENx": tok(2)},
	}
	for name, env := range cases {
		_, err := config.FromMap(env)
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if strings.Contains(err.Error(), "SECRETPART") {
			t.Fatalf("%s: error leaks the token: %v", name, err)
		}
	}
}

func TestCheckNamesEveryMissingSetting(t *testing.T) {
	cfg, err := config.FromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Check(config.NeedBots, config.NeedWebhookSecret, config.NeedPublicURL)
	for _, name := range []string{"BOT_TOKENS", "WEBHOOK_SECRET", "PUBLIC_URL"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Fatalf("error %v does not name %s", err, name)
		}
	}
}

func TestDotenvIsReadAndEnvironmentWins(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".env")
	if err := os.WriteFile(p, []byte("PORT=9999\nCHANNEL_ID=-100123\nADMIN_IDS=1,2\nUPLOAD_ROOTS=/a:/b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORT", "7777")
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 7777 || cfg.ChannelID != -100123 || !cfg.IsAdmin(2) || cfg.IsAdmin(3) || len(cfg.UploadRoots) != 2 {
		t.Fatalf("cfg = %+v", cfg)
	}
	if cfg.R2.Folder != "linkerz" || cfg.UploadThreads != 8 || cfg.UpdatesMode != "poll" || cfg.DatabasePath() != "data/ferry.db" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

// Webhooks are the default once the machine is set up for them; with
// neither PUBLIC_URL nor WEBHOOK_SECRET nothing could reach it, so it polls.
// UPDATES_MODE, when set, wins.
func TestUpdatesModeDefault(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "poll"},
		{map[string]string{"WEBHOOK_SECRET": "s"}, "webhook"},
		{map[string]string{"PUBLIC_URL": "https://ferry.example"}, "webhook"},
		{map[string]string{"PUBLIC_URL": "https://ferry.example", "UPDATES_MODE": "poll"}, "poll"},
		{map[string]string{"UPDATES_MODE": "Webhook"}, "webhook"},
	} {
		cfg, err := config.FromMap(tc.env)
		if err != nil || cfg.UpdatesMode != tc.want {
			t.Fatalf("%v: mode %q, %v; want %q", tc.env, cfg.UpdatesMode, err, tc.want)
		}
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	cfg, err := config.FromMap(map[string]string{
		"BOT_TOKENS": tok(42), "WEBHOOK_SECRET": "whsecretvalue", "DATABASE_URL": "postgres://u:dbpassword@h/d",
		"SESSION_KEY": "sesskeyvalue", "RIVERUI_PASSWORD": "uipassword", "R2_SECRET_ACCESS_KEY": "r2secretvalue",
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", cfg, "bot", cfg.Bots[0])
	out := buf.String() + fmt.Sprint(cfg.Bots)
	for _, s := range []string{"AAHxxxx", "whsecretvalue", "dbpassword", "sesskeyvalue", "uipassword", "r2secretvalue"} {
		if strings.Contains(out, s) {
			t.Fatalf("log leaks %q: %s", s, out)
		}
	}
	if !strings.Contains(out, `"id":42`) {
		t.Fatalf("log lacks bot id: %s", out)
	}
}

func TestSecretTokenPerBot(t *testing.T) {
	a := config.DeriveSecretToken("m", 1)
	if a == config.DeriveSecretToken("m", 2) || a == config.DeriveSecretToken("n", 1) || len(a) != 64 {
		t.Fatalf("derived tokens not distinct: %s", a)
	}
}

// Every variable the config reads has help text (so `--help` describes it)
// and appears in .env.example and the README; a new field without them
// fails here.
func TestEverySettingIsDocumented(t *testing.T) {
	example, err := os.ReadFile("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range config.Settings() {
		if seen[s.Name] {
			t.Errorf("%s listed twice", s.Name)
		}
		seen[s.Name] = true
		if len(s.Help) < 5 {
			t.Errorf("%s has no help tag", s.Name)
		}
		if !strings.Contains(string(example), s.Name) {
			t.Errorf("%s is missing from .env.example", s.Name)
		}
		if !strings.Contains(string(readme), "`"+s.Name+"`") {
			t.Errorf("%s is missing from README.md's Configuration", s.Name)
		}
		if !strings.Contains(config.HelpText(), "  "+s.Name+" ") {
			t.Errorf("%s is missing from HelpText", s.Name)
		}
	}
	for _, name := range []string{"BOT_TOKENS", "DATABASE_URL", "R2_SECRET_ACCESS_KEY", "IDLE_EXIT_AFTER", "SEND_LIMITS",
		"LINK_LIFETIME", "FILE_PAGE_PUBLIC", "STREAMS_PER_BOT", "STREAMS_PER_IP", "UPLOAD_URL_ALLOW", "LINK_SECRET", "LOG_FORMAT"} {
		if !seen[name] {
			t.Errorf("Settings lacks %s", name)
		}
	}
	if !strings.Contains(config.HelpText(), "PORT                  HTTP port; default 8080") {
		t.Errorf("defaults not shown:\n%s", config.HelpText())
	}
}
