package dbsqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// SendBudgetLock creates and reads the rows. SQLite has one writer: the
// transaction that runs this holds the database until it ends, so the
// rows are as locked as Postgres's FOR UPDATE leaves them.
func (e executor) SendBudgetLock(ctx context.Context, chatID int64, botIDs []int64) ([]db.SendBudget, error) {
	if len(botIDs) == 0 {
		return nil, nil
	}
	var out []db.SendBudget
	err := e.atomic(ctx, func(e executor) error {
		bots := jsonArg(botIDs)
		if _, err := e.exec(ctx, `
INSERT INTO send_budget (bot_id, chat_id)
SELECT b.value, c.value FROM json_each(?) b CROSS JOIN json_each(json_array(?, 0)) c WHERE true
ON CONFLICT (bot_id, chat_id) DO NOTHING`, bots, chatID); err != nil {
			return err
		}
		var err error
		out, err = e.budgetRows(ctx, `
SELECT bot_id, chat_id, next_at, blocked_until, sends, queued, refused
FROM send_budget WHERE bot_id IN (SELECT value FROM json_each(?)) AND chat_id IN (?, 0)
ORDER BY bot_id, chat_id`, bots, chatID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lock send budget of chat %d: %w", chatID, err)
	}
	return out, nil
}

func (e executor) budgetRows(ctx context.Context, query string, args ...any) ([]db.SendBudget, error) {
	var out []db.SendBudget
	err := e.query(ctx, func(rows *sql.Rows) error {
		var b db.SendBudget
		var next, blocked sql.NullInt64
		if err := rows.Scan(&b.BotID, &b.ChatID, &next, &blocked, &b.Sends, &b.Queued, &b.Refused); err != nil {
			return err
		}
		b.NextAt, b.BlockedUntil = nullTime(next), nullTime(blocked)
		out = append(out, b)
		return nil
	}, query, args...)
	return out, err
}

// nullMicros is t for a nullable time column (NULL when zero).
func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return micros(t)
}

// SendBudgetSave writes the rows in one statement.
func (e executor) SendBudgetSave(ctx context.Context, rows []db.SendBudget) error {
	if len(rows) == 0 {
		return nil
	}
	arg := jsonArray(len(rows), func(i int) []any {
		r := rows[i]
		return []any{r.BotID, r.ChatID, nullMicros(r.NextAt), r.Sends, r.Queued}
	})
	_, err := e.exec(ctx, `
UPDATE send_budget SET next_at = v.value ->> 2, sends = v.value ->> 3, queued = v.value ->> 4
FROM json_each(?) v
WHERE send_budget.bot_id = v.value ->> 0 AND send_budget.chat_id = v.value ->> 1`, arg)
	if err != nil {
		return fmt.Errorf("save send budget: %w", err)
	}
	return nil
}

// SendBudgetBlock records a 429.
func (e executor) SendBudgetBlock(ctx context.Context, botID, chatID int64, until time.Time) error {
	err := e.atomic(ctx, func(e executor) error {
		if chatID != 0 {
			if _, err := e.exec(ctx, `
INSERT INTO send_budget (bot_id, chat_id, blocked_until) VALUES (?, ?, ?)
ON CONFLICT (bot_id, chat_id) DO UPDATE SET blocked_until = max(coalesce(blocked_until, 0), excluded.blocked_until)`,
				botID, chatID, micros(until)); err != nil {
				return err
			}
		}
		var blocked any
		if chatID == 0 {
			blocked = micros(until)
		}
		_, err := e.exec(ctx, `
INSERT INTO send_budget (bot_id, chat_id, blocked_until, refused) VALUES (?, 0, ?, 1)
ON CONFLICT (bot_id, chat_id) DO UPDATE SET refused = refused + 1,
       blocked_until = CASE WHEN excluded.blocked_until IS NULL THEN blocked_until
                            ELSE max(coalesce(blocked_until, 0), excluded.blocked_until) END`, botID, blocked)
		return err
	})
	if err != nil {
		return fmt.Errorf("block bot %d in chat %d: %w", botID, chatID, err)
	}
	return nil
}

// SendBudgetList reads the bots' rows and the busy chat rows.
func (e executor) SendBudgetList(ctx context.Context, now time.Time) ([]db.SendBudget, error) {
	out, err := e.budgetRows(ctx, `
SELECT bot_id, chat_id, next_at, blocked_until, sends, queued, refused
FROM send_budget WHERE chat_id = 0 OR next_at > ? OR blocked_until > ?
ORDER BY bot_id, chat_id`, micros(now), micros(now))
	if err != nil {
		return nil, fmt.Errorf("list send budget: %w", err)
	}
	return out, nil
}

// SendBudgetPrune deletes the spent chat rows.
func (e executor) SendBudgetPrune(ctx context.Context, before time.Time) (int64, error) {
	res, err := e.exec(ctx, `
DELETE FROM send_budget
WHERE chat_id <> 0 AND coalesce(next_at < ?, 1) AND coalesce(blocked_until < ?, 1)`, micros(before), micros(before))
	if err != nil {
		return 0, fmt.Errorf("prune send budget: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune send budget: %w", err)
	}
	return n, nil
}

// FileBotIDBotsInChat reads the bots by the files' primary key.
func (e executor) FileBotIDBotsInChat(ctx context.Context, chatID int64, uniqueIDs []string) ([]int64, error) {
	var out []int64
	err := e.query(ctx, func(rows *sql.Rows) error {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
		out = append(out, id)
		return nil
	}, `
SELECT DISTINCT bot_id FROM file_bot_ids
WHERE file_unique_id IN (SELECT value FROM json_each(?)) AND chat_id = ? ORDER BY bot_id`, jsonStrings(uniqueIDs), chatID)
	if err != nil {
		return nil, fmt.Errorf("bots in chat %d: %w", chatID, err)
	}
	return out, nil
}
