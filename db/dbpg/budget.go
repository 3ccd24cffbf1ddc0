package dbpg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/db"
)

// SendBudgetLock creates the missing rows first, in a statement of their
// own: rows another transaction inserts concurrently are waited for there,
// and are then visible to the locking read that follows (a single
// statement would not see them). Rows are taken in (bot, chat) order, the
// same in every transaction, so two never wait on each other in a cycle.
func (e executor) SendBudgetLock(ctx context.Context, chatID int64, botIDs []int64) ([]db.SendBudget, error) {
	if len(botIDs) == 0 {
		return nil, nil
	}
	distinct := map[int64]bool{}
	for _, b := range botIDs {
		distinct[b] = true
	}
	want := len(distinct)
	if chatID != 0 {
		want *= 2
	}
	// A prune (SendBudgetPrune) that deletes a spent row between the insert
	// and the locking read leaves it out: insert again, with a fresh
	// snapshot that sees the delete.
	for try := 1; ; try++ {
		out, err := e.sendBudgetLockOnce(ctx, chatID, botIDs)
		if err != nil || len(out) == want || try == 3 {
			return out, err
		}
	}
}

func (e executor) sendBudgetLockOnce(ctx context.Context, chatID int64, botIDs []int64) ([]db.SendBudget, error) {
	if _, err := e.q.Exec(ctx, `
INSERT INTO send_budget (bot_id, chat_id)
SELECT b, c FROM unnest($1::bigint[]) b CROSS JOIN (VALUES ($2::bigint), (0)) v (c)
ORDER BY 1, 2
ON CONFLICT (bot_id, chat_id) DO NOTHING`, botIDs, chatID); err != nil {
		return nil, fmt.Errorf("create send budget of chat %d: %w", chatID, err)
	}
	rows, err := e.q.Query(ctx, `
SELECT bot_id, chat_id, next_at, blocked_until, sends, queued, refused
FROM send_budget WHERE bot_id = ANY($1) AND chat_id IN ($2, 0)
ORDER BY bot_id, chat_id FOR UPDATE`, botIDs, chatID)
	if err != nil {
		return nil, fmt.Errorf("lock send budget of chat %d: %w", chatID, err)
	}
	out, err := collectBudget(rows)
	if err != nil {
		return nil, fmt.Errorf("lock send budget of chat %d: %w", chatID, err)
	}
	return out, nil
}

func collectBudget(rows pgx.Rows) ([]db.SendBudget, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (db.SendBudget, error) {
		var b db.SendBudget
		var next, blocked *time.Time
		err := row.Scan(&b.BotID, &b.ChatID, &next, &blocked, &b.Sends, &b.Queued, &b.Refused)
		if next != nil {
			b.NextAt = *next
		}
		if blocked != nil {
			b.BlockedUntil = *blocked
		}
		return b, err
	})
}

// SendBudgetSave writes every row in one statement.
func (e executor) SendBudgetSave(ctx context.Context, rows []db.SendBudget) error {
	if len(rows) == 0 {
		return nil
	}
	bots, chats := make([]int64, len(rows)), make([]int64, len(rows))
	next := make([]*time.Time, len(rows))
	sends, queued := make([]int64, len(rows)), make([]int64, len(rows))
	for i, r := range rows {
		bots[i], chats[i], sends[i], queued[i] = r.BotID, r.ChatID, r.Sends, r.Queued
		if !r.NextAt.IsZero() {
			next[i] = &rows[i].NextAt
		}
	}
	_, err := e.q.Exec(ctx, `
UPDATE send_budget s SET next_at = v.next_at, sends = v.sends, queued = v.queued
FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::bigint[], $5::bigint[]) v (bot_id, chat_id, next_at, sends, queued)
WHERE s.bot_id = v.bot_id AND s.chat_id = v.chat_id`, bots, chats, next, sends, queued)
	if err != nil {
		return fmt.Errorf("save send budget: %w", err)
	}
	return nil
}

// SendBudgetBlock records a 429 in one statement.
func (e executor) SendBudgetBlock(ctx context.Context, botID, chatID int64, until time.Time) error {
	var err error
	if chatID == 0 {
		_, err = e.q.Exec(ctx, `
INSERT INTO send_budget (bot_id, chat_id, blocked_until, refused) VALUES ($1, 0, $2, 1)
ON CONFLICT (bot_id, chat_id) DO UPDATE SET blocked_until = greatest(send_budget.blocked_until, EXCLUDED.blocked_until),
       refused = send_budget.refused + 1`, botID, until)
	} else {
		_, err = e.q.Exec(ctx, `
WITH chat AS (
    INSERT INTO send_budget (bot_id, chat_id, blocked_until) VALUES ($1, $2, $3)
    ON CONFLICT (bot_id, chat_id) DO UPDATE SET blocked_until = greatest(send_budget.blocked_until, EXCLUDED.blocked_until)
)
INSERT INTO send_budget (bot_id, chat_id, refused) VALUES ($1, 0, 1)
ON CONFLICT (bot_id, chat_id) DO UPDATE SET refused = send_budget.refused + 1`, botID, chatID, until)
	}
	if err != nil {
		return fmt.Errorf("block bot %d in chat %d: %w", botID, chatID, err)
	}
	return nil
}

// SendBudgetList reads the bots' rows and the busy chat rows.
func (e executor) SendBudgetList(ctx context.Context, now time.Time) ([]db.SendBudget, error) {
	rows, err := e.q.Query(ctx, `
SELECT bot_id, chat_id, next_at, blocked_until, sends, queued, refused
FROM send_budget WHERE chat_id = 0 OR next_at > $1 OR blocked_until > $1
ORDER BY bot_id, chat_id`, now)
	if err != nil {
		return nil, fmt.Errorf("list send budget: %w", err)
	}
	out, err := collectBudget(rows)
	if err != nil {
		return nil, fmt.Errorf("list send budget: %w", err)
	}
	return out, nil
}

// SendBudgetPrune deletes the spent chat rows in one statement. A row a
// Take holds locked is re-checked after its commit, so a turn just saved
// is not lost.
func (e executor) SendBudgetPrune(ctx context.Context, before time.Time) (int64, error) {
	tag, err := e.q.Exec(ctx, `
DELETE FROM send_budget
WHERE chat_id <> 0 AND coalesce(next_at < $1, true) AND coalesce(blocked_until < $1, true)`, before)
	if err != nil {
		return 0, fmt.Errorf("prune send budget: %w", err)
	}
	return tag.RowsAffected(), nil
}

// FileBotIDBotsInChat reads the bots by the files' primary key.
func (e executor) FileBotIDBotsInChat(ctx context.Context, chatID int64, uniqueIDs []string) ([]int64, error) {
	rows, err := e.q.Query(ctx, `
SELECT DISTINCT bot_id FROM file_bot_ids
WHERE file_unique_id = ANY($1) AND chat_id = $2 ORDER BY bot_id`, uniqueIDs, chatID)
	if err != nil {
		return nil, fmt.Errorf("bots in chat %d: %w", chatID, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("bots in chat %d: %w", chatID, err)
	}
	return out, nil
}
