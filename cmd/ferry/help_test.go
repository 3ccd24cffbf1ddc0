package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/db/dbtest"
)

// The server commands' --help names every variable config reads: each
// `env:"…"` tag in config/config.go (read from the source, not from the
// generated list, so a setting left out of the generator fails here too).
func TestServerHelpListsEverySetting(t *testing.T) {
	src, err := os.ReadFile("../../config/config.go")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile("`env:\"([A-Z0-9_]+)\"").FindAllStringSubmatch(string(src), -1) {
		names = append(names, m[1])
	}
	if out, err := exec.Command(binary, "help", "bogus").CombinedOutput(); err == nil || !strings.Contains(string(out), "usage: ferry") {
		t.Fatalf("ferry help bogus: %v, %s", err, out)
	}
	if len(names) < 30 {
		t.Fatalf("found only %d env tags in config.go", len(names))
	}
	names = append(names, "BOT_TOKENS", "BOT_TOKEN", "LOG_LEVEL", "LOG_FORMAT")
	for _, args := range [][]string{{"serve", "--help"}, {"web", "-h"}, {"worker", "--help"}, {"help", "serve"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		cmd := strings.Join(args, " ")
		if err != nil {
			t.Fatalf("ferry %s: %v\n%s", cmd, err, out)
		}
		for _, n := range names {
			if !regexp.MustCompile(`(?m)^  ` + n + ` +\S`).Match(out) {
				t.Errorf("ferry %s does not describe %s", cmd, n)
			}
		}
	}
}

// `ferry migrate --help` on a Postgres DATABASE_URL leaves the database
// without a table; `ferry migrate` on the same database creates them (so
// the count can tell).
func TestMigrateHelpCreatesNoTables(t *testing.T) {
	if dbtest.Backend() == "sqlite" {
		t.Skip("the SQLite case is TestHelpOfEveryCommandChangesNothing (no file made)")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dbtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "ferry_help_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dbtest.Drop(name) })
	url := strings.Replace(dbtest.AdminURL(), "/postgres?", "/"+name+"?", 1)
	if url == dbtest.AdminURL() {
		t.Skipf("cannot derive a database URL from %s", url)
	}
	tables := func() int {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	migrate := func(args ...string) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + url, "BOT_TOKENS=700301:AAH-help-token-0123456789abcdefghijk"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ferry %v: %v\n%s", args, err, out)
		}
	}
	migrate("migrate", "--help")
	migrate("migrate", "-h")
	if n := tables(); n != 0 {
		t.Fatalf("ferry migrate --help created %d tables", n)
	}
	migrate("migrate")
	if n := tables(); n < 5 {
		t.Fatalf("ferry migrate created only %d tables", n)
	}
}

// deploy/README.md describes both Fly profiles and tells no one to set
// PUBLIC_URL or DATABASE_URL by hand (both come from Fly).
func TestDeployReadmeMatchesProfiles(t *testing.T) {
	doc, err := os.ReadFile("../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	profiles, _ := filepath.Glob("../../deploy/*.toml")
	profiles = append(profiles, "../../fly.toml")
	for _, p := range profiles {
		if !strings.Contains(string(doc), filepath.Base(p)) {
			t.Errorf("deploy/README.md does not mention %s", filepath.Base(p))
		}
	}
	for _, bad := range []string{"(and `PUBLIC_URL`) in", "set `PUBLIC_URL` in", "PUBLIC_URL=https"} {
		if strings.Contains(string(doc), bad) {
			t.Errorf("deploy/README.md still says %q", bad)
		}
	}
	for _, want := range []string{"FLY_APP_NAME", "IDLE_EXIT_AFTER", "do not set it again", "direct"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("deploy/README.md does not say %q", want)
		}
	}
}
