package botpool

import "time"

// SetLease shortens how long a send counts as in flight, so a test can see
// a dead process's sends expire.
func (p *Pool) SetLease(d time.Duration) { p.lease = d }
