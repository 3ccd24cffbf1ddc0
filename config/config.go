// Package config reads ferry's settings from the environment and an optional
// .env file (the environment wins), using the names of the SPEC contract.
// Secrets are kept out of every String and log form of the config.
package config

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/joho/godotenv"
)

// Bot is one configured bot. Slot is its 1-based position (b_1..b_N), which
// names its file_id in the shared R2 index, so the order of BOT_TOKENS matters.
type Bot struct {
	Slot  int
	ID    int64
	Token string
}

// String never shows the token: only the slot and the public bot id.
func (b Bot) String() string { return fmt.Sprintf("b_%d(%d)", b.Slot, b.ID) }

// LogValue keeps the token out of structured logs.
func (b Bot) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("slot", b.Slot), slog.Int64("id", b.ID))
}

// R2 holds the Cloudflare R2 (S3 API) settings of the shared file index.
type R2 struct {
	Endpoint        string `env:"R2_ENDPOINT" help:"R2 (S3 API) endpoint URL of the shared file index"`
	AccountID       string `env:"R2_ACCOUNT_ID" help:"Cloudflare account id: the R2 endpoint is derived from it"`
	Bucket          string `env:"R2_BUCKET" help:"R2 bucket; unset: the records stay in DATA_DIR/r2/ (ferry r2 sync copies them later)"`
	AccessKeyID     string `env:"R2_ACCESS_KEY_ID" help:"R2 access key id"`
	SecretAccessKey string `env:"R2_SECRET_ACCESS_KEY" help:"R2 secret access key"`
	Folder          string `env:"R2_FOLDER" envDefault:"linkerz" help:"folder (key prefix) of the records in the bucket"`
	PublicURL       string `env:"R2_PUBLIC_URL" help:"public base URL of the bucket, shown in links to records"`
}

// Enabled reports whether enough is set to talk to a bucket.
func (r R2) Enabled() bool { return r.Bucket != "" && (r.Endpoint != "" || r.AccountID != "") }

// Config is ferry's whole configuration.
type Config struct {
	Bots []Bot `env:"-"`

	APIID            int     `env:"API_ID" help:"MTProto application id from my.telegram.org (uploads, streaming)"`
	APIHash          string  `env:"API_HASH" help:"MTProto application hash from my.telegram.org"`
	ChannelID        int64   `env:"CHANNEL_ID" help:"channel uploads are posted to (Bot API id, -100…)"`
	AdminIDs         []int64 `env:"ADMIN_IDS" help:"comma-separated Telegram user ids allowed to run admin commands"`
	DatabaseURL      string  `env:"DATABASE_URL" help:"Postgres URL (direct, not a transaction-mode PgBouncer); empty: the embedded SQLite in DATA_DIR/ferry.db"`
	DataDir          string  `env:"DATA_DIR" envDefault:"./data" help:"local state: embedded database, records without R2, temp files"`
	Port             int     `env:"PORT" envDefault:"8080" help:"HTTP port"`
	PublicURL        string  `env:"PUBLIC_URL" help:"public base URL for webhooks and links; on Fly derived from FLY_APP_NAME"`
	WebhookSecret    string  `env:"WEBHOOK_SECRET" help:"master secret; each bot's webhook secret token is derived from it"`
	UpdatesMode      string  `env:"UPDATES_MODE" help:"webhook or poll; unset: webhook when PUBLIC_URL or WEBHOOK_SECRET is set, else poll"`
	BotAPIURL        string  `env:"BOT_API_URL" envDefault:"https://api.telegram.org" help:"Bot API server (a self-hosted one, or a stand-in in tests)"`
	MTProtoDCAddr    string  `env:"MTPROTO_DC_ADDR" help:"MTProto DC address host:port (test servers only)"`
	MTProtoPublicKey string  `env:"MTPROTO_PUBLIC_KEY" help:"PEM file of the MTProto server's RSA key (test servers only)"`
	R2               R2
	RiverUIUser      string   `env:"RIVERUI_USER" help:"basic auth user for /riverui (the UI is off without both user and password)"`
	RiverUIPassword  string   `env:"RIVERUI_PASSWORD" help:"basic auth password for /riverui"`
	UploadRoots      []string `env:"UPLOAD_ROOTS" envSeparator:":" help:"colon-separated directories /upload <path> may read"`
	UploadThreads    int      `env:"UPLOAD_THREADS" envDefault:"8" help:"parts in flight per uploaded file (1-64)"` // 8 per SPEC; at 109 ms/part (mtproto/BENCH.md) 8→36, 16→71, 32→137 MB/s, each ≥89% of bound; a 2000 MiB upload peaks at 54 MiB RSS with 8, 74 MiB with 32
	UploadURLAllow   []string `env:"UPLOAD_URL_ALLOW" envSeparator:"," help:"comma-separated hosts or CIDRs /upload <url> may fetch from although loopback/private"`
	SessionKey       string   `env:"SESSION_KEY" help:"key that encrypts the stored MTProto sessions"`
	LinkSecret       string   `env:"LINK_SECRET" help:"key that signs file links (/f/, /dl/); unset: links are off"`
	// LinkLifetime is how long a handed-out file link stays valid.
	LinkLifetime time.Duration `env:"LINK_LIFETIME" envDefault:"24h" help:"how long a handed-out file link stays valid (at least 1m)"`
	// FilePagePublic serves /f/{unique_id} without a signature (default:
	// the page needs a signed link too).
	FilePagePublic bool `env:"FILE_PAGE_PUBLIC" help:"true: /f/{unique_id} needs no signed link"`
	// StreamsPerBot and StreamsPerIP cap concurrent /dl streams (0: no cap).
	StreamsPerBot int `env:"STREAMS_PER_BOT" envDefault:"8" help:"concurrent /dl streams per bot (0: no cap)"`
	StreamsPerIP  int `env:"STREAMS_PER_IP" envDefault:"4" help:"concurrent /dl streams per client IP (0: no cap)"`
	// SendLimits changes the rates the send budget keeps each bot to
	// (botpool.ParseLimits): "" is Telegram's, "none" paces nothing.
	SendLimits string `env:"SEND_LIMITS" help:"send budget per bot, e.g. group=20/6s,bot=30/1s; none: no pacing; unset: Telegram's limits"`
	// IdleExitAfter makes `ferry serve` exit 0 after this long with nothing
	// to do (scale to zero on Fly); zero keeps it running.
	IdleExitAfter time.Duration `env:"IDLE_EXIT_AFTER" help:"ferry serve exits 0 after this long with nothing to do (scale to zero), e.g. 5m; unset: never"`
}

// Load reads the process environment and, when it exists, the .env file at
// dotenvPath ("" skips it). Values in the environment win over the file.
func Load(dotenvPath string) (*Config, error) {
	environ := map[string]string{}
	if dotenvPath != "" {
		fileVals, err := godotenv.Read(dotenvPath)
		switch {
		case err == nil:
			for k, v := range fileVals {
				environ[k] = v
			}
		case errors.Is(err, os.ErrNotExist):
		default:
			return nil, fmt.Errorf("read %s: %w", dotenvPath, err)
		}
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			environ[k] = v
		}
	}
	return FromMap(environ)
}

// Getenv is key's value in the environment, else in the .env file at
// dotenvPath: for the settings needed before the whole configuration is
// read (the log's own), so .env sets them as it sets the rest.
func Getenv(dotenvPath, key string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	vals, err := godotenv.Read(dotenvPath)
	if err != nil {
		return ""
	}
	return vals[key]
}

// FromMap builds a Config from explicit variables; tests and Load use it.
func FromMap(environ map[string]string) (*Config, error) {
	cfg := &Config{}
	if err := env.ParseWithOptions(cfg, env.Options{Environment: environ}); err != nil {
		// caarlos0/env names the variable but never echoes secret values
		// beyond the one that failed to parse; none of ours are numeric.
		return nil, fmt.Errorf("config: %w", err)
	}
	bots, err := parseBots(environ)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.Bots = bots
	if app := environ["FLY_APP_NAME"]; cfg.PublicURL == "" && app != "" {
		// Fly sets FLY_APP_NAME on every machine: fly.toml names no URL.
		cfg.PublicURL = "https://" + app + ".fly.dev"
	}
	cfg.UpdatesMode = strings.ToLower(strings.TrimSpace(cfg.UpdatesMode))
	if cfg.UpdatesMode == "" {
		cfg.UpdatesMode = defaultUpdatesMode(cfg)
	}
	if cfg.UpdatesMode != "webhook" && cfg.UpdatesMode != "poll" {
		return nil, fmt.Errorf("config: UPDATES_MODE must be webhook or poll, got %q", cfg.UpdatesMode)
	}
	if cfg.LinkLifetime < time.Minute {
		return nil, fmt.Errorf("config: LINK_LIFETIME must be at least 1m, got %v", cfg.LinkLifetime)
	}
	if cfg.StreamsPerBot < 0 || cfg.StreamsPerIP < 0 {
		return nil, fmt.Errorf("config: STREAMS_PER_BOT and STREAMS_PER_IP must not be negative")
	}
	if cfg.UploadThreads < 1 || cfg.UploadThreads > 64 {
		return nil, fmt.Errorf("config: UPLOAD_THREADS must be 1..64, got %d", cfg.UploadThreads)
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	cfg.BotAPIURL = strings.TrimRight(cfg.BotAPIURL, "/")
	return cfg, nil
}

// defaultUpdatesMode is webhook, except on a machine set up for no webhook
// at all (neither PUBLIC_URL nor WEBHOOK_SECRET): there Telegram could not
// reach ferry, so it long-polls, and a laptop or Colab runs with a bot token
// alone.
func defaultUpdatesMode(c *Config) string {
	if c.PublicURL == "" && c.WebhookSecret == "" {
		return "poll"
	}
	return "webhook"
}

// DatabasePath is the embedded database's file, used when DATABASE_URL is
// empty.
func (c *Config) DatabasePath() string { return filepath.Join(c.DataDir, "ferry.db") }

// Need names what a command requires; Check reports every missing one at once.
type Need int

const (
	NeedBots Need = iota
	NeedWebhookSecret
	NeedPublicURL
)

// Check returns one error naming every missing setting among needs.
func (c *Config) Check(needs ...Need) error {
	var missing []string
	for _, n := range needs {
		switch n {
		case NeedBots:
			if len(c.Bots) == 0 {
				missing = append(missing, "BOT_TOKENS (or BOT_TOKEN)")
			}
		case NeedWebhookSecret:
			if c.WebhookSecret == "" {
				missing = append(missing, "WEBHOOK_SECRET")
			}
		case NeedPublicURL:
			if c.PublicURL == "" {
				missing = append(missing, "PUBLIC_URL")
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required settings: %s", strings.Join(missing, ", "))
	}
	return nil
}

// IsAdmin reports whether a Telegram user may run admin commands.
func (c *Config) IsAdmin(userID int64) bool {
	for _, id := range c.AdminIDs {
		if id == userID {
			return true
		}
	}
	return false
}

// BotByID finds a configured bot by its numeric id (the {bot} of /tg/{bot}).
func (c *Config) BotByID(id int64) (Bot, bool) {
	for _, b := range c.Bots {
		if b.ID == id {
			return b, true
		}
	}
	return Bot{}, false
}

// BotBySlot finds a configured bot by its 1-based slot.
func (c *Config) BotBySlot(slot int) (Bot, bool) {
	if slot < 1 || slot > len(c.Bots) {
		return Bot{}, false
	}
	return c.Bots[slot-1], true
}

// WebhookSecretToken derives the X-Telegram-Bot-Api-Secret-Token of one bot
// from WEBHOOK_SECRET, so each bot has its own token and one leaked token does
// not open the others. The result uses only [0-9a-f], as Telegram requires a
// subset of [A-Za-z0-9_-] of at most 256 characters.
func (c *Config) WebhookSecretToken(botID int64) string {
	return DeriveSecretToken(c.WebhookSecret, botID)
}

// DeriveSecretToken is the derivation behind WebhookSecretToken.
func DeriveSecretToken(master string, botID int64) string {
	m := hmac.New(sha256.New, []byte(master))
	fmt.Fprintf(m, "ferry/webhook/%d", botID)
	return hex.EncodeToString(m.Sum(nil))
}

// LogValue shows the configuration with every secret replaced by whether it
// is set, so start-up can log what it runs with.
func (c *Config) LogValue() slog.Value {
	set := func(s string) string {
		if s == "" {
			return "unset"
		}
		return "set"
	}
	return slog.GroupValue(
		slog.String("bots", fmt.Sprint(c.Bots)),
		slog.Int("api_id", c.APIID),
		slog.Int64("channel_id", c.ChannelID),
		slog.Int("admins", len(c.AdminIDs)),
		slog.String("database_url", set(c.DatabaseURL)),
		slog.String("data_dir", c.DataDir),
		slog.Int("port", c.Port),
		slog.String("public_url", c.PublicURL),
		slog.String("updates_mode", c.UpdatesMode),
		slog.String("bot_api_url", c.BotAPIURL),
		slog.String("webhook_secret", set(c.WebhookSecret)),
		slog.Bool("r2", c.R2.Enabled()),
		slog.String("riverui", set(c.RiverUIUser+c.RiverUIPassword)),
		slog.Int("upload_threads", c.UploadThreads),
		slog.String("link_secret", set(c.LinkSecret)),
		slog.Duration("link_lifetime", c.LinkLifetime),
		slog.Bool("file_page_public", c.FilePagePublic),
		slog.Any("upload_roots", c.UploadRoots),
		slog.Any("upload_url_allow", c.UploadURLAllow),
	)
}

var tokenRE = regexp.MustCompile(`^([0-9]{1,20}):([A-Za-z0-9_-]{30,})$`)

// parseBots reads BOT_TOKENS, or BOT_TOKEN followed by MULTI_TOKEN1..N in
// numeric order (MULTI_TOKEN10 after MULTI_TOKEN9).
func parseBots(environ map[string]string) ([]Bot, error) {
	var tokens []string
	if list := strings.TrimSpace(environ["BOT_TOKENS"]); list != "" {
		for _, t := range strings.Split(list, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tokens = append(tokens, t)
			}
		}
	} else {
		if t := strings.TrimSpace(environ["BOT_TOKEN"]); t != "" {
			tokens = append(tokens, t)
		}
		type numbered struct {
			n     int
			token string
		}
		var multi []numbered
		for k, v := range environ {
			rest, ok := strings.CutPrefix(k, "MULTI_TOKEN")
			if !ok || strings.TrimSpace(v) == "" {
				continue
			}
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%s: expected MULTI_TOKEN1, MULTI_TOKEN2, …", k)
			}
			multi = append(multi, numbered{n, strings.TrimSpace(v)})
		}
		sort.Slice(multi, func(i, j int) bool { return multi[i].n < multi[j].n })
		for _, m := range multi {
			tokens = append(tokens, m.token)
		}
	}
	bots := make([]Bot, 0, len(tokens))
	seen := map[int64]int{}
	for i, t := range tokens {
		slot := i + 1
		m := tokenRE.FindStringSubmatch(t)
		if m == nil {
			// Never echo the token itself: it is a secret even when malformed.
			return nil, fmt.Errorf("bot token for slot b_%d is malformed (want <digits>:<secret>)", slot)
		}
		id, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bot token for slot b_%d has a bad id: %w", slot, err)
		}
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("bot %d is configured twice (slots b_%d and b_%d)", id, prev, slot)
		}
		seen[id] = slot
		bots = append(bots, Bot{Slot: slot, ID: id, Token: t})
	}
	return bots, nil
}
