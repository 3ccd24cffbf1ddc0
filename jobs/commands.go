package jobs

import (
	"context"
	"errors"
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/botapi"
	"github.com/ferry-dev/ferry/db"
)

// Command is one chat command of the menu.
type Command struct {
	Name, Help string
	Admin      bool
}

// Commands is the menu registered with setMyCommands, in display order.
func Commands() []Command {
	table := (&UpdateWorker{}).commands()
	out := make([]Command, len(table))
	for i, c := range table {
		out[i] = c.Command
	}
	return out
}

// call is one command as its handler gets it.
type call struct {
	bot  *botapi.Bot
	msg  *models.Message
	args string
}

// command is a menu entry and what runs it. run returns the HTML answer,
// or "" when the handler has answered in the chat itself.
type command struct {
	Command
	run func(ctx context.Context, c call) (string, error)
}

// commands is the one table of chat commands, in menu order; built per
// call from w, so the package holds no mutable state.
func (w *UpdateWorker) commands() []command {
	text := func(s string) func(context.Context, call) (string, error) {
		return func(context.Context, call) (string, error) { return s, nil }
	}
	return []command{
		{Command{"start", "What this bot does", false}, text("<b>ferry</b> moves big files into Telegram and keeps an index of them.\n" +
			"Admins: send me a file or use /upload. Add me to a channel as admin to index its files.\nSend /help for the commands.")},
		{Command{"help", "List the commands", false}, func(_ context.Context, c call) (string, error) {
			return w.help(c.msg.From != nil && w.d.Config.IsAdmin(c.msg.From.ID)), nil
		}},
		{Command{"stats", "Jobs by state and updates received", true}, func(ctx context.Context, _ call) (string, error) { return w.stats(ctx) }},
		{Command{"jobs", "Jobs waiting, running or failing", true}, func(ctx context.Context, _ call) (string, error) { return w.jobList(ctx) }},
		{Command{"retry", "/retry <id>: run a job again; /retry sightings: index refused sightings again", true}, func(ctx context.Context, c call) (string, error) {
			if c.args == "sightings" {
				return w.retrySightings(ctx)
			}
			return w.jobAction(ctx, "retry", c.args)
		}},
		{Command{"cancel", "/cancel <id>: cancel a job", true}, func(ctx context.Context, c call) (string, error) { return w.jobAction(ctx, "cancel", c.args) }},
		{Command{"pause", "Pause uploads and indexing", true}, func(ctx context.Context, _ call) (string, error) { return w.queues(ctx, "pause") }},
		{Command{"resume", "Resume uploads and indexing", true}, func(ctx context.Context, _ call) (string, error) { return w.queues(ctx, "resume") }},
		{Command{"upload", "/upload <path> [caption]: upload a file from the server", true}, func(ctx context.Context, c call) (string, error) {
			return "", w.upload(ctx, c.bot, c.msg, c.args)
		}},
		{Command{"find", "/find <text>: search the file index", true}, func(ctx context.Context, c call) (string, error) { return w.find(ctx, c.args) }},
		{Command{"get", "/get <unique_id>: send a file from the index", true}, func(ctx context.Context, c call) (string, error) {
			return w.get(ctx, c.msg.Chat.ID, c.args)
		}},
		{Command{"bots", "The configured bots and their sends", true}, func(ctx context.Context, c call) (string, error) { return w.bots(ctx) }},
	}
}

const refusal = "Sorry, this command is for the admins of this bot."

// The burst limit: a user's commands in private chats past commandBurst
// within one commandWindow are answered once with slowDown, then ignored
// until the window ends, so one user cannot keep the update workers busy.
const (
	commandBurst  = 20
	commandWindow = 10 * time.Second
	slowDown      = "You are sending commands too fast. Please wait a few seconds and try again."
)

// ParseCommand splits "/cmd@bot args" into its parts.
func ParseCommand(text string) (name, target, args string) {
	text = strings.TrimPrefix(text, "/")
	head, rest, _ := strings.Cut(text, " ")
	name, target, _ = strings.Cut(head, "@")
	return strings.ToLower(name), target, strings.TrimSpace(rest)
}

// command runs a chat command; first is false when the job runs it again
// after a failure (the burst limit counted it already).
func (w *UpdateWorker) command(ctx context.Context, b *botapi.Bot, m *models.Message, first bool) error {
	name, target, args := ParseCommand(m.Text)
	if target != "" && !strings.EqualFold(target, username(ctx, w.d, b)) {
		return nil // addressed to another bot in a group
	}
	// Counted once per message: on its first attempt, and in private chats,
	// where one bot receives it (in a group every bot gets its own copy).
	if m.From != nil && first && m.Chat.Type == models.ChatTypePrivate {
		n, err := w.d.DB.CommandCountAdd(ctx, m.From.ID, commandWindow)
		if err != nil {
			return err
		}
		switch {
		case n == commandBurst+1:
			return w.reply(ctx, b, m.Chat.ID, slowDown)
		case n > commandBurst+1:
			logOf(ctx, w.d).Debug("command dropped: the user is over the burst limit", "user_id", m.From.ID, "commands", n)
			return nil
		}
	}
	var cmd *command
	table := w.commands()
	for i := range table {
		if table[i].Name == name {
			cmd = &table[i]
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
	text, err := cmd.run(ctx, call{bot: b, msg: m, args: args})
	if err != nil || text == "" {
		return err
	}
	return w.reply(ctx, b, chat, text)
}

// help lists the commands the asker may run: admins see them all.
func (w *UpdateWorker) help(admin bool) string {
	var sb strings.Builder
	sb.WriteString("<b>Commands</b>\n")
	for _, c := range w.commands() {
		if c.Admin && !admin {
			continue
		}
		fmt.Fprintf(&sb, "/%s — %s\n", c.Name, html.EscapeString(c.Help))
	}
	if !admin {
		sb.WriteString("\nThe other commands are for the admins of this bot.")
	}
	return sb.String()
}

// bots answers /bots (botsinfo.go).
func (w *UpdateWorker) bots(ctx context.Context) (string, error) { return w.botsReport(ctx) }

func (w *UpdateWorker) stats(ctx context.Context) (string, error) {
	st, err := w.d.DB.StatsCount(ctx)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "<b>ferry stats</b>\nUpdates received: %d (last 24 h: %d)\n<b>Jobs</b>\n", st.Updates, st.UpdatesDay)
	byState, err := w.d.River.JobCountByState(ctx)
	if err != nil {
		return "", fmt.Errorf("count jobs: %w", err)
	}
	var states []rivertype.JobState
	for state, n := range byState {
		if n > 0 {
			states = append(states, state)
		}
	}
	slices.Sort(states)
	var counts []string
	for _, state := range states {
		counts = append(counts, fmt.Sprintf("%s: %d", state, byState[state]))
	}
	if len(counts) == 0 {
		counts = []string{"none"}
	}
	sb.WriteString(strings.Join(counts, "\n"))
	fmt.Fprintf(&sb, "\n<b>Bots</b>: %d", len(w.d.Bots.All()))
	fmt.Fprintf(&sb, "\n<b>Index</b>: %d files; %d posts answered; %d sightings waiting; %d records waiting for their write",
		st.Files, st.PostsReplied, st.SightingsWaiting, st.R2Pending)
	if st.SightingsFailed > 0 {
		fmt.Fprintf(&sb, "; %d could not be indexed (send /retry sightings to try again)", st.SightingsFailed)
	}
	if err := w.budgetLines(ctx, &sb); err != nil {
		return "", err
	}
	if err := w.uploadsAndUptime(ctx, &sb); err != nil {
		return "", err
	}
	return sb.String(), nil
}

// retrySightings answers /retry sightings: the sightings the index refused
// go back into the drain's queue, with a drain job committed alongside so
// they are taken at once.
func (w *UpdateWorker) retrySightings(ctx context.Context) (string, error) {
	if w.d.Index == nil {
		return "The file index is not enabled.", nil
	}
	var n int
	err := db.WithTx(ctx, w.d.DB, func(tx db.Tx) error {
		var err error
		if n, err = tx.SightingFailureRequeue(ctx); err != nil || n == 0 {
			return err
		}
		if _, err := w.d.River.InsertTx(ctx, tx, IndexDrainArgs{}, nil); err != nil {
			return fmt.Errorf("queue index_drain job: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "No sightings to retry: every sighting was indexed.", nil
	}
	return fmt.Sprintf("Requeued %d sightings for indexing.", n), nil
}

func (w *UpdateWorker) jobList(ctx context.Context) (string, error) {
	res, err := w.d.River.JobList(ctx, river.NewJobListParams().
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
	var row *rivertype.JobRow
	if name == "retry" {
		row, err = w.d.River.JobRetry(ctx, id)
	} else {
		row, err = w.d.River.JobCancel(ctx, id)
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
	for _, q := range WorkQueues() {
		var err error
		if name == "pause" {
			err = w.d.River.QueuePause(ctx, q, nil)
		} else {
			err = w.d.River.QueueResume(ctx, q, nil)
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
	for _, c := range Commands() {
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
