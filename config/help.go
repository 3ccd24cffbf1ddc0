package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Setting is one environment variable ferry reads, for `--help`.
type Setting struct {
	Name    string
	Help    string
	Default string
}

// Settings lists every variable ferry reads: the bot tokens and the log's
// own (read outside the struct), then each `env` field of Config in order,
// its text from the field's `help` tag. Help is generated from it, so a new
// setting cannot be missing there.
func Settings() []Setting {
	out := []Setting{
		{Name: "BOT_TOKENS", Help: "comma-separated bot tokens; their order gives the slots b_1..b_N (required)"},
		{Name: "BOT_TOKEN", Help: "with MULTI_TOKEN1..N (numeric order): the same tokens, as the seed bots name them"},
	}
	out = appendSettings(out, reflect.TypeOf(Config{}))
	return append(out,
		Setting{Name: "LOG_LEVEL", Help: "debug, info, warn or error", Default: "info"},
		Setting{Name: "LOG_FORMAT", Help: "text or json; unset: text on a terminal, JSON otherwise"},
	)
}

func appendSettings(out []Setting, t reflect.Type) []Setting {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "-" {
			continue
		}
		if name == "" {
			if f.Type.Kind() == reflect.Struct {
				out = appendSettings(out, f.Type)
			}
			continue
		}
		out = append(out, Setting{Name: name, Help: f.Tag.Get("help"), Default: f.Tag.Get("envDefault")})
	}
	return out
}

// HelpText is Settings as the server commands' --help prints them.
func HelpText() string {
	var b strings.Builder
	b.WriteString("environment (a .env file in the working directory is read too; the environment wins):\n")
	for _, s := range Settings() {
		line := s.Help
		if s.Default != "" {
			line += "; default " + s.Default
		}
		fmt.Fprintf(&b, "  %-21s %s\n", s.Name, line)
	}
	return strings.TrimRight(b.String(), "\n")
}
