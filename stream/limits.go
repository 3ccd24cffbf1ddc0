package stream

import (
	"sort"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// Per-process accounting. Streams are served by the web process(es); the
// per-bot and per-IP limits and the least-loaded choice count this
// process's streams. The ranking from the database (HolderList: flood wait
// and sends in flight from every process) is the starting order, and a
// flood wait met here is written back to it for every process to see.
type load struct {
	perBot, perIP int

	mu    sync.Mutex
	bots  map[int64]*botState
	ips   map[string]int
	total int
}

type botState struct {
	streams  int
	badUntil time.Time // flood wait or recent failure: ranked last
}

func newLoad(perBot, perIP int) *load {
	return &load{perBot: perBot, perIP: perIP, bots: map[int64]*botState{}, ips: map[string]int{}}
}

func (l *load) bot(id int64) *botState {
	b := l.bots[id]
	if b == nil {
		b = &botState{}
		l.bots[id] = b
	}
	return b
}

// acquireIP counts a stream of ip; false when ip is at its limit.
func (l *load) acquireIP(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP > 0 && l.ips[ip] >= l.perIP {
		return false
	}
	l.ips[ip]++
	return true
}

func (l *load) releaseIP(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ips[ip]--; l.ips[ip] <= 0 {
		delete(l.ips, ip)
	}
}

// pick chooses among holders not yet tried: healthy before bad (flood wait
// here or in the database, or a recent failure), then fewest streams here,
// then the database's order; a bot at the per-bot limit is skipped. It
// takes the bot's stream slot. limited reports that only bots at their
// limit were left.
func (l *load) pick(holders []db.Holder, tried map[int64]bool, now time.Time) (h db.Holder, ok, limited bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	type cand struct {
		h   db.Holder
		i   int
		bad bool
		n   int
	}
	var cs []cand
	for i, h := range holders {
		if tried[h.BotID] {
			continue
		}
		b := l.bot(h.BotID)
		cs = append(cs, cand{h: h, i: i, bad: h.FloodWaitUntil.After(now) || b.badUntil.After(now), n: b.streams})
	}
	sort.SliceStable(cs, func(a, b int) bool {
		if cs[a].bad != cs[b].bad {
			return !cs[a].bad
		}
		if cs[a].n != cs[b].n {
			return cs[a].n < cs[b].n
		}
		return cs[a].i < cs[b].i
	})
	for _, c := range cs {
		if l.perBot > 0 && c.n >= l.perBot {
			limited = true
			continue
		}
		l.bot(c.h.BotID).streams++
		l.total++
		return c.h, true, false
	}
	return db.Holder{}, false, limited
}

func (l *load) release(botID int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bot(botID).streams--
	l.total--
}

func (l *load) markBad(botID int64, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.bot(botID); until.After(b.badUntil) {
		b.badUntil = until
	}
}

// Streams is the number of streams bot serves here now.
func (l *load) streams(botID int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bot(botID).streams
}
