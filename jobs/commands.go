package jobs

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strconv"
	"strings"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
)

// Command is one chat command of the menu.
type Command struct {
	Name, Help string
	Admin      bool
}

// Commands is the menu registered with setMyCommands, in display order.
var Commands = []Command{
	{"start", "What this bot does", false},
	{"help", "List the commands", false},
	{"stats", "Jobs by state and updates received", true},
	{"jobs", "Jobs waiting, running or failing", true},
	{"retry", "/retry <id>: run a job again", true},
	{"cancel", "/cancel <id>: cancel a job", true},
	{"pause", "Pause uploads and indexing", true},
	{"resume", "Resume uploads and indexing", true},
	{"upload", "/upload <path> [caption]: upload a file from the server", true},
	{"find", "/find <text>: search the file index", true},
	{"get", "/get <unique_id>: send a file from the index", true},
	{"bots", "The configured bots", true},
}

const refusal = "Sorry, this command is for the admins of this bot."

// ParseCommand splits "/cmd@bot args" into its parts.
func ParseCommand(text string) (name, target, args string) {
	text = strings.TrimPrefix(text, "/")
	head, rest, _ := strings.Cut(text, " ")
	name, target, _ = strings.Cut(head, "@")
	return strings.ToLower(name), target, strings.TrimSpace(rest)
}

func (w *UpdateWorker) command(ctx context.Context, b *botapi.Bot, m *models.Message) error {
	name, target, args := ParseCommand(m.Text)
	if target != "" && !strings.EqualFold(target, username(ctx, w.d, b)) {
		return nil // addressed to another bot in a group
	}
	var cmd *Command
	for i := range Commands {
		if Commands[i].Name == name {
			cmd = &Commands[i]
		}
	}
	chat := m.Chat.ID
	if cmd == nil {
		if m.Chat.Type != models.ChatTypePrivate {
			return nil
		}
		return w.reply(ctx, b, chat, "Unknown command. Send /help for the list.")
	}
	if cmd.Admin && (m.From == nil || !w.d.Config.IsAdmin(m.From.ID)) {
		return w.reply(ctx, b, chat, refusal)
	}
	// Commands that act in the chat themselves; the rest answer with text.
	switch cmd.Name {
	case "upload":
		return w.upload(ctx, b, m, args)
	case "get":
		text, err := w.get(ctx, chat, args)
		if err != nil || text == "" {
			return err
		}
		return w.reply(ctx, b, chat, text)
	}
	text, err := w.run(ctx, cmd.Name, args)
	if err != nil {
		return err
	}
	return w.reply(ctx, b, chat, text)
}

// run computes the answer of an admin-checked command.
func (w *UpdateWorker) run(ctx context.Context, name, args string) (string, error) {
	switch name {
	case "start":
		return "<b>ferry</b> moves big files into Telegram and keeps an index of them.\n" +
			"Admins: send me a file or use /upload. Add me to a channel as admin to index its files.\nSend /help for the commands.", nil
	case "help":
		var sb strings.Builder
		sb.WriteString("<b>Commands</b>\n")
		for _, c := range Commands {
			fmt.Fprintf(&sb, "/%s — %s\n", c.Name, html.EscapeString(c.Help))
		}
		return sb.String(), nil
	case "stats":
		return w.stats(ctx)
	case "jobs":
		return w.jobList(ctx)
	case "retry", "cancel":
		return w.jobAction(ctx, name, args)
	case "pause", "resume":
		return w.queues(ctx, name)
	case "bots":
		var sb strings.Builder
		sb.WriteString("<b>Bots</b>\n")
		for _, b := range w.d.Bots.All() {
			fmt.Fprintf(&sb, "b_%d: %d\n", b.Slot, b.ID)
		}
		return sb.String(), nil
	case "find":
		return w.find(ctx, args)
	}
	return "", fmt.Errorf("command %s: %w", name, errNotReady)
}

func (w *UpdateWorker) stats(ctx context.Context) (string, error) {
	var sb strings.Builder
	var total, day int64
	// Counted per hour: "last 24 h" is the current hour and the 23 before it.
	err := w.d.Pool.QueryRow(ctx, `SELECT coalesce(sum(n), 0), coalesce(sum(n) FILTER (WHERE hour > now() - interval '24 hours'), 0) FROM update_counts`).Scan(&total, &day)
	if err != nil {
		return "", fmt.Errorf("count updates: %w", err)
	}
	fmt.Fprintf(&sb, "<b>ferry stats</b>\nUpdates received: %d (last 24 h: %d)\n<b>Jobs</b>\n", total, day)
	rows, err := w.d.Pool.Query(ctx, `SELECT state::text, count(*) FROM river_job GROUP BY state ORDER BY state`)
	if err != nil {
		return "", fmt.Errorf("count jobs: %w", err)
	}
	counts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var s string
		var n int64
		err := r.Scan(&s, &n)
		return fmt.Sprintf("%s: %d", s, n), err
	})
	if err != nil {
		return "", fmt.Errorf("count jobs: %w", err)
	}
	if len(counts) == 0 {
		counts = []string{"none"}
	}
	sb.WriteString(strings.Join(counts, "\n"))
	fmt.Fprintf(&sb, "\n<b>Bots</b>: %d", len(w.d.Bots.All()))
	var files, waiting, failed int64
	err = w.d.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM files),
		(SELECT coalesce(sum(n), 0) FROM sighting_batches) + (SELECT count(*) FROM post_sightings WHERE error IS NULL),
		(SELECT count(*) FROM post_sightings WHERE error IS NOT NULL)`).Scan(&files, &waiting, &failed)
	if err != nil {
		return "", fmt.Errorf("count index: %w", err)
	}
	fmt.Fprintf(&sb, "\n<b>Index</b>: %d files; %d sightings waiting", files, waiting)
	if failed > 0 {
		fmt.Fprintf(&sb, "; %d could not be indexed (see post_sightings.error)", failed)
	}
	return sb.String(), nil
}

func (w *UpdateWorker) jobList(ctx context.Context) (string, error) {
	client := river.ClientFromContext[pgx.Tx](ctx)
	res, err := client.JobList(ctx, river.NewJobListParams().
		States(rivertype.JobStateAvailable, rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled).
		OrderBy(river.JobListOrderByID, river.SortOrderDesc).First(15))
	if err != nil {
		return "", fmt.Errorf("list jobs: %w", err)
	}
	if len(res.Jobs) == 0 {
		return "No jobs waiting, running or failing.", nil
	}
	var sb strings.Builder
	sb.WriteString("<b>Jobs</b>\n")
	for _, j := range res.Jobs {
		fmt.Fprintf(&sb, "#%d %s %s (attempt %d/%d)", j.ID, j.Kind, j.State, j.Attempt, j.MaxAttempts)
		if n := len(j.Errors); n > 0 {
			msg := j.Errors[n-1].Error
			if len(msg) > 120 {
				msg = msg[:120] + "…"
			}
			fmt.Fprintf(&sb, ": %s", html.EscapeString(msg))
		}
		sb.WriteString("\n")
	}
	return sb.String(), nil
}

func (w *UpdateWorker) jobAction(ctx context.Context, name, args string) (string, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(args, "#"), 10, 64)
	if err != nil || id <= 0 {
		return fmt.Sprintf("Usage: /%s &lt;job id&gt;", name), nil
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	var row *rivertype.JobRow
	if name == "retry" {
		row, err = client.JobRetry(ctx, id)
	} else {
		row, err = client.JobCancel(ctx, id)
	}
	if errors.Is(err, rivertype.ErrNotFound) {
		return fmt.Sprintf("No job #%d.", id), nil
	}
	if err != nil {
		return "", fmt.Errorf("%s job %d: %w", name, id, err)
	}
	return fmt.Sprintf("Job #%d (%s) is now %s.", row.ID, row.Kind, row.State), nil
}

func (w *UpdateWorker) queues(ctx context.Context, name string) (string, error) {
	client := river.ClientFromContext[pgx.Tx](ctx)
	for _, q := range WorkQueues {
		var err error
		if name == "pause" {
			err = client.QueuePause(ctx, q, nil)
		} else {
			err = client.QueueResume(ctx, q, nil)
		}
		// A queue no job has used yet has no row to pause; that is fine.
		if err != nil && !errors.Is(err, rivertype.ErrNotFound) {
			return "", fmt.Errorf("%s queue %s: %w", name, q, err)
		}
	}
	if name == "pause" {
		return "Paused uploads and indexing. Send /resume to continue.", nil
	}
	return "Resumed uploads and indexing.", nil
}

// RegisterCommands sets each bot's menu: /start and /help for everyone, the
// whole list in each admin's private chat.
func RegisterCommands(ctx context.Context, bots *botapi.Bots, adminIDs []int64) error {
	var public, all []models.BotCommand
	for _, c := range Commands {
		bc := models.BotCommand{Command: c.Name, Description: c.Help}
		all = append(all, bc)
		if !c.Admin {
			public = append(public, bc)
		}
	}
	for _, b := range bots.All() {
		if _, err := b.Client.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: public, Scope: &models.BotCommandScopeDefault{}}); err != nil {
			return fmt.Errorf("set commands of bot %s: %w", b.Bot, botapi.Redact(err, b.Token))
		}
		for _, admin := range adminIDs {
			if _, err := b.Client.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: all, Scope: &models.BotCommandScopeChat{ChatID: admin}}); err != nil {
				return fmt.Errorf("set admin commands of bot %s: %w", b.Bot, botapi.Redact(err, b.Token))
			}
		}
	}
	return nil
}
