package db

import "time"

// Lease is a worker process's claim to be alive (process_leases). Its id
// is the River client id of the process, which River records in a running
// job's attempted_by, so a job whose runner's lease lapsed can be handed
// back at once instead of after River's stuck-job horizon.
type Lease struct {
	ID        string
	StartedAt time.Time
	ExpiresAt time.Time
	// Live: ExpiresAt is after the database's now.
	Live bool
}

// LeaseRescuedJob is a running River job handed back because its runner's
// lease lapsed.
type LeaseRescuedJob struct {
	ID     int64
	Kind   string
	Runner string // the lapsed client id (last of attempted_by)
	// State is the job's new state: available, or cancelled when a cancel
	// was asked while it ran, or discarded when it had no attempt left.
	State string
}
