package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/labstack/echo/v4"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/webhook"
)

// flyConfig is the part of Fly's app configuration ferry's profiles use;
// a key outside it fails the test (a typo Fly would ignore or refuse).
type flyConfig struct {
	App           string `toml:"app"`
	PrimaryRegion string `toml:"primary_region"`
	KillSignal    string `toml:"kill_signal"`
	KillTimeout   string `toml:"kill_timeout"`
	Build         struct {
		Dockerfile string `toml:"dockerfile"`
	} `toml:"build"`
	Deploy struct {
		ReleaseCommand string `toml:"release_command"`
		Strategy       string `toml:"strategy"`
	} `toml:"deploy"`
	Env         map[string]string `toml:"env"`
	Processes   map[string]string `toml:"processes"`
	HTTPService *struct {
		InternalPort       int      `toml:"internal_port"`
		ForceHTTPS         bool     `toml:"force_https"`
		Processes          []string `toml:"processes"`
		AutoStopMachines   string   `toml:"auto_stop_machines"`
		AutoStartMachines  bool     `toml:"auto_start_machines"`
		MinMachinesRunning int      `toml:"min_machines_running"`
		Concurrency        struct {
			Type      string `toml:"type"`
			SoftLimit int    `toml:"soft_limit"`
			HardLimit int    `toml:"hard_limit"`
		} `toml:"concurrency"`
		Checks []flyCheck `toml:"checks"`
	} `toml:"http_service"`
	Checks  map[string]flyCheck `toml:"checks"`
	Restart []struct {
		Policy    string   `toml:"policy"`
		Retries   int      `toml:"retries"`
		Processes []string `toml:"processes"`
	} `toml:"restart"`
	VM []struct {
		Size      string   `toml:"size"`
		Memory    string   `toml:"memory"`
		Processes []string `toml:"processes"`
	} `toml:"vm"`
}

type flyCheck struct {
	Type        string   `toml:"type"`
	Port        int      `toml:"port"`
	Method      string   `toml:"method"`
	Path        string   `toml:"path"`
	GracePeriod string   `toml:"grace_period"`
	Interval    string   `toml:"interval"`
	Timeout     string   `toml:"timeout"`
	Processes   []string `toml:"processes"`
}

// TestFlyProfiles parses both Fly profiles and checks them against ferry
// itself: every process and release command is a subcommand the built
// binary knows (its --help exits 0), every check probes a route the server
// has on the port it listens on, every process group named anywhere
// exists, [env] holds only settings ferry reads (from .env.example) and no
// secret or DATABASE_URL, PUBLIC_URL comes from the app name, and each
// layout's own rules hold.
func TestFlyProfiles(t *testing.T) {
	routes := map[string]bool{}
	e := webhook.NewServer(webhook.Options{Config: &config.Config{}, Ready: func(context.Context) error { return nil }})
	for _, r := range e.Routes() {
		if r.Method == echo.GET {
			routes[r.Path] = true
		}
	}
	known := envExampleNames(t)

	for _, profile := range []string{"../../fly.toml", "../../deploy/fly.scale-to-zero.toml"} {
		t.Run(filepath.Base(profile), func(t *testing.T) {
			var fc flyConfig
			md, err := toml.DecodeFile(profile, &fc)
			if err != nil {
				t.Fatal(err)
			}
			if un := md.Undecoded(); len(un) > 0 {
				t.Fatalf("keys this test does not know (typos?): %v", un)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(profile), fc.Build.Dockerfile)); err != nil {
				t.Fatalf("build.dockerfile %q, relative to the profile: %v", fc.Build.Dockerfile, err)
			}
			if fc.KillSignal != "SIGTERM" && fc.KillSignal != "SIGINT" {
				t.Fatalf("kill_signal %q: ferry shuts down gracefully on SIGTERM and SIGINT only", fc.KillSignal)
			}
			// ferry's shutdown deadline is 30 s (server.go).
			if d, err := time.ParseDuration(fc.KillTimeout); err != nil || d <= 30*time.Second {
				t.Fatalf("kill_timeout %q must exceed ferry's 30 s shutdown", fc.KillTimeout)
			}

			// Commands: arguments to the image's ENTRYPOINT /app/ferry.
			commands := map[string]string{}
			for group, cmd := range fc.Processes {
				commands["process "+group] = cmd
			}
			if fc.Deploy.ReleaseCommand != "" {
				commands["release_command"] = fc.Deploy.ReleaseCommand
			}
			for what, cmd := range commands {
				args := strings.Fields(cmd)
				if len(args) == 0 || strings.Contains(args[0], "/") {
					t.Fatalf("%s %q: name the subcommand only (Fly passes it to ENTRYPOINT /app/ferry)", what, cmd)
				}
				if _, ok := commandHelp(args[0]); !ok {
					t.Fatalf("%s %q: ferry has no command %q", what, cmd, args[0])
				}
				out, err := exec.Command(binary, append(args, "--help")...).CombinedOutput()
				if err != nil || !strings.HasPrefix(string(out), "usage: ferry "+args[0]) {
					t.Fatalf("%s: ferry %s --help: %v\n%s", what, cmd, err, out)
				}
			}
			for group, cmd := range fc.Processes {
				if c := strings.Fields(cmd)[0]; c != "serve" && c != "web" && c != "worker" {
					t.Fatalf("process %s runs %q, which exits at once: not a server command", group, cmd)
				}
			}
			if fc.Deploy.ReleaseCommand != "" && fc.Deploy.ReleaseCommand != "migrate" {
				t.Fatalf("release_command %q, want migrate", fc.Deploy.ReleaseCommand)
			}

			// Process groups named anywhere exist; every group has a VM.
			group := func(where string, names []string) {
				t.Helper()
				for _, n := range names {
					if _, ok := fc.Processes[n]; !ok {
						t.Fatalf("%s names process group %q, not in [processes]", where, n)
					}
				}
			}
			hs := fc.HTTPService
			if hs == nil {
				t.Fatal("no [http_service]: Telegram could not reach the webhook")
			}
			group("http_service", hs.Processes)
			for name, c := range fc.Checks {
				group("checks."+name, c.Processes)
			}
			withVM := map[string]bool{}
			for _, vm := range fc.VM {
				group("vm", vm.Processes)
				for _, p := range vm.Processes {
					withVM[p] = true
				}
			}
			for _, r := range fc.Restart {
				group("restart", r.Processes)
			}
			for g := range fc.Processes {
				if !withVM[g] {
					t.Fatalf("process group %s has no [[vm]]", g)
				}
			}

			// Ports and checks: what ferry listens on and serves.
			cfg, err := config.FromMap(map[string]string{"PORT": fc.Env["PORT"]})
			if err != nil {
				t.Fatal(err)
			}
			if hs.InternalPort != cfg.Port {
				t.Fatalf("internal_port %d, but ferry listens on %d (PORT %q)", hs.InternalPort, cfg.Port, fc.Env["PORT"])
			}
			if len(hs.Checks) == 0 {
				t.Fatal("no http_service checks: deploys would not wait for ferry to be up")
			}
			checks := hs.Checks
			for _, c := range fc.Checks {
				if c.Type != "http" || c.Port != cfg.Port {
					t.Fatalf("check %+v: want an http check on port %d", c, cfg.Port)
				}
				checks = append(checks, c)
			}
			for _, c := range checks {
				if c.Method != "GET" || !routes[c.Path] {
					t.Fatalf("check %s %s: the server has no such GET route (%v)", c.Method, c.Path, routes)
				}
				for _, d := range []string{c.GracePeriod, c.Interval, c.Timeout} {
					if _, err := time.ParseDuration(d); err != nil {
						t.Fatalf("check %s: %v", c.Path, err)
					}
				}
			}

			// [env]: settings ferry reads, no secrets, no DATABASE_URL
			// (fly postgres attach sets it), no PUBLIC_URL (derived).
			for k := range fc.Env {
				if !known[k] {
					t.Fatalf("[env] %s is not a setting ferry reads (.env.example)", k)
				}
				switch k {
				case "DATABASE_URL", "PUBLIC_URL", "BOT_TOKENS", "WEBHOOK_SECRET", "SESSION_KEY", "LINK_SECRET",
					"API_HASH", "RIVERUI_PASSWORD", "R2_SECRET_ACCESS_KEY":
					t.Fatalf("[env] sets %s: a secret, or set by Fly (fly postgres attach, FLY_APP_NAME)", k)
				}
			}
			env := map[string]string{"FLY_APP_NAME": fc.App, "BOT_TOKENS": e2eToken, "WEBHOOK_SECRET": "s"}
			for k, v := range fc.Env {
				env[k] = v
			}
			cfg, err = config.FromMap(env)
			if err != nil {
				t.Fatalf("[env] does not load: %v", err)
			}
			if want := "https://" + fc.App + ".fly.dev"; cfg.PublicURL != want || cfg.UpdatesMode != "webhook" {
				t.Fatalf("on Fly, PUBLIC_URL %q and mode %s; want %s from FLY_APP_NAME, webhook", cfg.PublicURL, cfg.UpdatesMode, want)
			}
			if err := checkIdleExit(cfg.IdleExitAfter); err != nil {
				t.Fatal(err)
			}

			if filepath.Base(profile) == "fly.toml" {
				// Always on: web and worker apart, on Postgres.
				if fc.Processes["web"] != "web" || fc.Processes["worker"] != "worker" || !slices.Equal(hs.Processes, []string{"web"}) {
					t.Fatalf("processes %v, http_service on %v: want web (behind the proxy) and worker", fc.Processes, hs.Processes)
				}
				if cfg.IdleExitAfter != 0 {
					t.Fatal("IDLE_EXIT_AFTER in the always-on layout: `serve` only, and web and worker ignore it")
				}
				return
			}
			// Scale to zero: one serve group that stops itself, started by
			// the proxy, and left stopped after a clean exit.
			if len(fc.Processes) != 1 || len(hs.Processes) != 1 || fc.Processes[hs.Processes[0]] != "serve" {
				t.Fatalf("processes %v, http_service on %v: want one group running serve", fc.Processes, hs.Processes)
			}
			if hs.AutoStopMachines != "off" || !hs.AutoStartMachines || hs.MinMachinesRunning != 0 {
				t.Fatalf("auto_stop %q, auto_start %v, min running %d: want off (ferry stops itself), true, 0",
					hs.AutoStopMachines, hs.AutoStartMachines, hs.MinMachinesRunning)
			}
			if cfg.IdleExitAfter <= 0 {
				t.Fatal("no IDLE_EXIT_AFTER: the machine would never stop")
			}
			if len(fc.Restart) != 1 || fc.Restart[0].Policy != "on-failure" {
				t.Fatalf("restart %+v: want on-failure (always would restart ferry after each idle exit)", fc.Restart)
			}
		})
	}
}

// envExampleNames are the settings .env.example documents.
func envExampleNames(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z][A-Z0-9_]*)=`).FindAllStringSubmatch(string(raw), -1) {
		names[m[1]] = true
	}
	if len(names) < 10 {
		t.Fatal(".env.example lists almost nothing")
	}
	return names
}
