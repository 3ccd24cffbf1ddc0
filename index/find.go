package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/gotd/td/tgerr"
)

// Find searches file names for text (every whitespace-separated word must
// occur, case-insensitively) and returns one page, newest first, with the
// total number of matches for paging. page is 0-based; pageSize defaults to
// 10 and is capped at 100.
func (ix *Indexer) Find(ctx context.Context, text string, page, pageSize int) ([]File, int, error) {
	if pageSize <= 0 {
		pageSize = 10
	}
	if pageSize > 100 {
		pageSize = 100
	}
	if page < 0 {
		page = 0
	}
	words := strings.Fields(strings.ToLower(text))
	if len(words) == 0 {
		return nil, 0, nil
	}
	if len(words) > 8 {
		words = words[:8]
	}
	var where []string
	var args []any
	for _, w := range words {
		args = append(args, "%"+likeEscape(w)+"%")
		where = append(where, fmt.Sprintf(`lower(f.file_name) LIKE $%d ESCAPE '\'`, len(args)))
	}
	cond := strings.Join(where, " AND ")
	n := len(args)
	rows, err := ix.pool.Query(ctx, fmt.Sprintf(`
SELECT `+fileColumns+`, count(*) OVER ()
FROM files f
WHERE %s
ORDER BY f.created_at DESC, f.file_unique_id
LIMIT $%d OFFSET $%d`, cond, n+1, n+2), append(args, pageSize, page*pageSize)...)
	if err != nil {
		return nil, 0, fmt.Errorf("index: find %q: %w", text, err)
	}
	defer rows.Close()
	var files []File
	total := 0
	for rows.Next() {
		var f File
		if err := rows.Scan(&f.UniqueID, &f.Name, &f.Size, &f.MimeType, &f.Type, &f.DC, &f.Caption,
			&f.Duration, &f.Width, &f.Height, &f.ChatID, &f.MessageID, &f.Origin, &f.CreatedAt, &total); err != nil {
			return nil, 0, fmt.Errorf("index: find %q: %w", text, err)
		}
		files = append(files, f)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("index: find %q: %w", text, err)
	}
	if len(files) == 0 && page > 0 {
		// Past the last page count(*) OVER () saw no rows: count alone.
		if err := ix.pool.QueryRow(ctx, `SELECT count(*) FROM files f WHERE `+cond, args...).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("index: count %q: %w", text, err)
		}
	}
	return files, total, nil
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// Holder is a bot that holds its own file_id for a file and can send it.
type Holder struct {
	Slot           int
	BotID          int64
	FileID         string
	InFlight       int
	FloodWaitUntil time.Time // zero when not in flood wait
}

// Holders lists the bots that can send a file, best first: bots not in
// flood wait before those that are, then fewest sends in flight (leases in
// bot_sends younger than sendLease, from every process), then least
// recently used (so equal bots take turns), then slot.
func (ix *Indexer) Holders(ctx context.Context, uniqueID string) ([]Holder, error) {
	rows, err := ix.pool.Query(ctx, `
SELECT b.slot, b.bot_id, b.file_id, s.n, l.flood_wait_until
FROM file_bot_ids b LEFT JOIN bot_load l ON l.bot_id = b.bot_id
CROSS JOIN LATERAL (
    SELECT count(*)::int AS n FROM bot_sends
    WHERE bot_id = b.bot_id AND started_at > now() - make_interval(secs => $2)) s
WHERE b.file_unique_id = $1
ORDER BY coalesce(l.flood_wait_until > now(), false), s.n,
         l.last_used_at NULLS FIRST, b.slot`, uniqueID, sendLease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("index: holders of %s: %w", uniqueID, err)
	}
	defer rows.Close()
	var hs []Holder
	for rows.Next() {
		var h Holder
		var fw *time.Time
		if err := rows.Scan(&h.Slot, &h.BotID, &h.FileID, &h.InFlight, &fw); err != nil {
			return nil, fmt.Errorf("index: holders of %s: %w", uniqueID, err)
		}
		if fw != nil && fw.After(time.Now()) {
			h.FloodWaitUntil = *fw
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: holders of %s: %w", uniqueID, err)
	}
	return hs, nil
}

// ErrNoHolder is returned by SendWithFailover when no bot could send.
var ErrNoHolder = errors.New("index: no bot could send the file")

// SendWithFailover calls send with each holder in order until one succeeds,
// and returns the holder that did. Each attempt is counted in bot_load
// (in flight while it runs, then a send or a failure), and a flood-wait
// error (Bot API 429 retry_after, or MTProto FLOOD_WAIT) puts that bot in
// flood wait so Holders ranks it last until the wait is over. Holders still
// in flood wait are tried only after all others failed. When every holder
// fails the errors are joined under ErrNoHolder.
func (ix *Indexer) SendWithFailover(ctx context.Context, holders []Holder, send func(context.Context, Holder) error) (Holder, error) {
	if len(holders) == 0 {
		return Holder{}, fmt.Errorf("%w: nobody holds it", ErrNoHolder)
	}
	now := time.Now()
	order := make([]Holder, 0, len(holders))
	var waiting []Holder
	for _, h := range holders {
		if h.FloodWaitUntil.After(now) {
			waiting = append(waiting, h)
			continue
		}
		order = append(order, h)
	}
	order = append(order, waiting...)

	errs := []error{ErrNoHolder}
	for _, h := range order {
		if err := ctx.Err(); err != nil {
			return Holder{}, fmt.Errorf("index: send: %w", err)
		}
		lease := ix.loadBegin(ctx, h.BotID)
		err := send(ctx, h)
		ix.loadEnd(ctx, h.BotID, lease, err)
		if err == nil {
			return h, nil
		}
		ix.log.WarnContext(ctx, "send failed; trying the next bot",
			slog.Int("slot", h.Slot), slog.Int64("bot_id", h.BotID), slog.Any("err", err))
		errs = append(errs, fmt.Errorf("slot %d (bot %d): %w", h.Slot, h.BotID, err))
	}
	return Holder{}, errors.Join(errs...)
}

// FloodWait extracts how long a bot must wait from a Bot API 429 or an
// MTProto FLOOD_WAIT error.
func FloodWait(err error) (time.Duration, bool) {
	var tmr *bot.TooManyRequestsError
	if errors.As(err, &tmr) {
		return time.Duration(tmr.RetryAfter) * time.Second, true
	}
	if d, ok := tgerr.AsFloodWait(err); ok {
		return d, true
	}
	return 0, false
}

// sendLease is how long a send counts as in flight at most: far longer than
// any send by file_id takes, so only a send whose process died is cut short.
const sendLease = 10 * time.Minute

// Load accounting is best effort: a failed update is logged and never fails
// the send it describes. loadBegin returns the lease to end (0 if none).
func (ix *Indexer) loadBegin(ctx context.Context, botID int64) int64 {
	var lease int64
	err := ix.pool.QueryRow(context.WithoutCancel(ctx), `
WITH stale AS (
    DELETE FROM bot_sends WHERE bot_id = $1 AND started_at < now() - make_interval(secs => $2)
), used AS (
    INSERT INTO bot_load (bot_id, last_used_at) VALUES ($1, now())
    ON CONFLICT (bot_id) DO UPDATE SET last_used_at = now(), updated_at = now()
)
INSERT INTO bot_sends (bot_id) VALUES ($1) RETURNING id`, botID, sendLease.Seconds()).Scan(&lease)
	if err != nil {
		ix.log.WarnContext(ctx, "bot load: begin", slog.Int64("bot_id", botID), slog.Any("err", err))
	}
	return lease
}

func (ix *Indexer) loadEnd(ctx context.Context, botID, lease int64, sendErr error) {
	var wait *time.Time
	if d, ok := FloodWait(sendErr); ok {
		t := time.Now().Add(d)
		wait = &t
	}
	ok := sendErr == nil
	_, err := ix.pool.Exec(context.WithoutCancel(ctx), `
WITH ended AS (DELETE FROM bot_sends WHERE id = $4)
UPDATE bot_load SET sends = sends + CASE WHEN $2 THEN 1 ELSE 0 END,
       failures = failures + CASE WHEN $2 THEN 0 ELSE 1 END,
       flood_wait_until = coalesce($3, CASE WHEN flood_wait_until > now() THEN flood_wait_until END),
       updated_at = now()
WHERE bot_id = $1`, botID, ok, wait, lease)
	if err != nil {
		ix.log.WarnContext(ctx, "bot load: end", slog.Int64("bot_id", botID), slog.Any("err", err))
	}
}
