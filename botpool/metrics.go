package botpool

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the send budget's Prometheus series. A nil *Metrics records
// nothing.
type Metrics struct {
	sends  *prometheus.CounterVec
	queued *prometheus.CounterVec
	skips  *prometheus.CounterVec
	floods *prometheus.CounterVec
}

// NewMetrics registers the budget's series on reg (never the global
// registry) and has b record into them: turns taken and those that had to
// wait (sends queued behind the budget), skipped progress edits, 429
// answers by method and bot, and at scrape time each bot's budget as the
// database has it (every process's sends).
func NewMetrics(reg prometheus.Registerer, b *Budget) *Metrics {
	m := &Metrics{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_send_turns_total", Help: "Send turns taken from the send budget, by bot.",
		}, []string{"bot"}),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sends_queued_total", Help: "Sends that waited behind the send budget for their turn, by bot.",
		}, []string{"bot"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_sends_skipped_total", Help: "Progress edits skipped because the chat's send budget was busy, by bot.",
		}, []string{"bot"}),
		floods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_bot_api_429_total", Help: "Bot API answers of 429 Too Many Requests, by method and bot.",
		}, []string{"method", "bot"}),
	}
	reg.MustRegister(m.sends, m.queued, m.skips, m.floods, &budgetCollector{b: b,
		next:    prometheus.NewDesc("ferry_send_budget_next_seconds", "Seconds until the bot's next send turn in any chat (0: free now).", []string{"bot"}, nil),
		blocked: prometheus.NewDesc("ferry_send_budget_blocked_seconds", "Seconds a 429 still keeps the bot from every chat.", []string{"bot"}, nil),
		busy:    prometheus.NewDesc("ferry_send_budget_busy_chats", "Chats where the bot's send budget is spent now (its next turn is ahead, or a 429 blocks it).", []string{"bot"}, nil),
	})
	if b != nil {
		b.metrics = m
	}
	return m
}

func label(botID int64) string { return strconv.FormatInt(botID, 10) }

func (m *Metrics) taken(turns []Turn, now time.Time) {
	if m == nil {
		return
	}
	for _, t := range turns {
		m.sends.WithLabelValues(label(t.BotID)).Inc()
		if t.At.After(now) {
			m.queued.WithLabelValues(label(t.BotID)).Inc()
		}
	}
}

func (m *Metrics) skipped(botID int64) {
	if m != nil {
		m.skips.WithLabelValues(label(botID)).Inc()
	}
}

func (m *Metrics) refused(botID int64, method string) {
	if m != nil {
		m.floods.WithLabelValues(method, label(botID)).Inc()
	}
}

// budgetCollector reads the budget at scrape time.
type budgetCollector struct {
	b                   *Budget
	next, blocked, busy *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.next
	ch <- c.blocked
	ch <- c.busy
}

// Collect implements prometheus.Collector; a database error yields no series.
func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	state, err := c.b.State(ctx)
	if err != nil {
		return
	}
	for _, s := range state {
		l := label(s.BotID)
		ch <- prometheus.MustNewConstMetric(c.next, prometheus.GaugeValue, s.NextIn.Seconds(), l)
		ch <- prometheus.MustNewConstMetric(c.blocked, prometheus.GaugeValue, s.BlockedFor.Seconds(), l)
		ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, float64(s.BusyChats), l)
	}
}
