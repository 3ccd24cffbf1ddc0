package botpool

import "time"

// SetLease shortens how long a send counts as in flight, so a test can see
// a dead process's sends expire.
func (p *Pool) SetLease(d time.Duration) { p.lease = d }

// SetPruneEvery changes how often a Take prunes spent send_budget rows.
func (b *Budget) SetPruneEvery(d time.Duration) { b.pruneEvery = d }

// SetNow replaces the budget's clock.
func (b *Budget) SetNow(now func() time.Time) { b.now = now }
