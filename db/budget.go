package db

import "time"

// SendBudget is one row of the send budget (send_budget): how a bot paces
// its sends into one chat (ChatID ≠ 0), or all its sends (ChatID 0, the
// bot's row, which also keeps its counters). Package botpool decides; the
// rows live in the database so that every process spends the same budget.
type SendBudget struct {
	BotID  int64
	ChatID int64
	// NextAt is the earliest the next send may go (zero: at once).
	NextAt time.Time
	// BlockedUntil is when a 429's retry_after ends (zero: none).
	BlockedUntil time.Time
	// Sends, Queued and Refused count, on the bot's row: sends granted,
	// sends that had to wait for their turn, and 429 answers.
	Sends, Queued, Refused int64
}
