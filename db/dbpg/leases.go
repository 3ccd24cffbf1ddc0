package dbpg

import (
	"context"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// LeaseAcquire upserts a live lease.
func (e executor) LeaseAcquire(ctx context.Context, id string, ttl time.Duration) error {
	_, err := e.q.Exec(ctx, `
INSERT INTO process_leases (id, expires_at) VALUES ($1, now() + make_interval(secs => $2))
ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at`, id, ttl.Seconds())
	if err != nil {
		return fmt.Errorf("acquire lease %s: %w", id, err)
	}
	return nil
}

// LeaseRenew extends a live lease only: a lapsed one may have had its jobs
// handed back, and its process must learn that rather than carry on.
func (e executor) LeaseRenew(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	tag, err := e.q.Exec(ctx, `
UPDATE process_leases SET expires_at = now() + make_interval(secs => $2)
WHERE id = $1 AND expires_at > now()`, id, ttl.Seconds())
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// LeaseRelease deletes a lease.
func (e executor) LeaseRelease(ctx context.Context, id string) error {
	if _, err := e.q.Exec(ctx, `DELETE FROM process_leases WHERE id = $1`, id); err != nil {
		return fmt.Errorf("release lease %s: %w", id, err)
	}
	return nil
}

// LeaseList reads every lease.
func (e executor) LeaseList(ctx context.Context) ([]db.Lease, error) {
	rows, err := e.q.Query(ctx, `SELECT id, started_at, expires_at, expires_at > now() FROM process_leases ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []db.Lease
	for rows.Next() {
		var l db.Lease
		if err := rows.Scan(&l.ID, &l.StartedAt, &l.ExpiresAt, &l.Live); err != nil {
			return nil, fmt.Errorf("list leases: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return out, nil
}

// LeaseRescueJobs hands back orphaned running jobs in one statement, as
// River's rescuer does (an error in errors, cancelled when a cancel was
// asked, discarded without attempts left), but available at once. The
// row's state and runner are checked again under its lock, so a job
// another process fetched meanwhile is left alone.
func (e executor) LeaseRescueJobs(ctx context.Context, self string) ([]db.LeaseRescuedJob, error) {
	rows, err := e.q.Query(ctx, `
WITH gone AS (
    DELETE FROM process_leases WHERE expires_at < now() - interval '1 hour'
), orphans AS (
    SELECT j.id, j.attempted_by[array_length(j.attempted_by, 1)] AS runner,
           CASE WHEN j.metadata ? 'cancel_attempted_at' THEN 'cancelled'
                WHEN j.attempt >= j.max_attempts THEN 'discarded'
                ELSE 'available' END AS new_state
    FROM river_job j
    WHERE j.state = 'running'
      AND j.attempted_by[array_length(j.attempted_by, 1)] IS DISTINCT FROM $1
      AND NOT EXISTS (SELECT 1 FROM process_leases l
                      WHERE l.id = j.attempted_by[array_length(j.attempted_by, 1)] AND l.expires_at > now())
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE river_job j SET
    state = o.new_state::river_job_state,
    finalized_at = CASE WHEN o.new_state <> 'available' THEN now() END,
    scheduled_at = CASE WHEN o.new_state = 'available' THEN now() ELSE j.scheduled_at END,
    errors = array_append(j.errors, jsonb_build_object('at', now(), 'attempt', j.attempt,
        'error', 'the process running this job (' || coalesce(o.runner, 'unknown') || ') stopped renewing its lease', 'trace', '')),
    metadata = j.metadata || jsonb_build_object('ferry:lease_rescues',
        coalesce(CASE WHEN jsonb_typeof(j.metadata -> 'ferry:lease_rescues') = 'number'
                      THEN (j.metadata ->> 'ferry:lease_rescues')::int END, 0) + 1)
FROM orphans o
WHERE j.id = o.id AND j.state = 'running'
  AND j.attempted_by[array_length(j.attempted_by, 1)] IS NOT DISTINCT FROM o.runner
RETURNING j.id, j.kind, coalesce(o.runner, ''), o.new_state`, self)
	if err != nil {
		return nil, fmt.Errorf("rescue jobs of lapsed leases: %w", err)
	}
	defer rows.Close()
	var out []db.LeaseRescuedJob
	for rows.Next() {
		var j db.LeaseRescuedJob
		if err := rows.Scan(&j.ID, &j.Kind, &j.Runner, &j.State); err != nil {
			return nil, fmt.Errorf("rescue jobs of lapsed leases: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rescue jobs of lapsed leases: %w", err)
	}
	return out, nil
}
