package dbsqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/db"
)

// LeaseAcquire upserts a live lease.
func (e executor) LeaseAcquire(ctx context.Context, id string, ttl time.Duration) error {
	now := e.clock()
	_, err := e.exec(ctx, `
INSERT INTO process_leases (id, started_at, expires_at) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at`, id, now, now+ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("acquire lease %s: %w", id, err)
	}
	return nil
}

// LeaseRenew extends a live lease only (see the Postgres driver).
func (e executor) LeaseRenew(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	now := e.clock()
	res, err := e.exec(ctx, `UPDATE process_leases SET expires_at = ? WHERE id = ? AND expires_at > ?`, now+ttl.Microseconds(), id, now)
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", id, err)
	}
	return n == 1, nil
}

// LeaseRelease deletes a lease.
func (e executor) LeaseRelease(ctx context.Context, id string) error {
	if _, err := e.exec(ctx, `DELETE FROM process_leases WHERE id = ?`, id); err != nil {
		return fmt.Errorf("release lease %s: %w", id, err)
	}
	return nil
}

// LeaseList reads every lease.
func (e executor) LeaseList(ctx context.Context) ([]db.Lease, error) {
	now := e.clock()
	var out []db.Lease
	err := e.query(ctx, func(rows *sql.Rows) error {
		var l db.Lease
		var started, expires int64
		if err := rows.Scan(&l.ID, &started, &expires); err != nil {
			return err
		}
		l.StartedAt, l.ExpiresAt, l.Live = timeOf(started), timeOf(expires), expires > now
		out = append(out, l)
		return nil
	}, `SELECT id, started_at, expires_at FROM process_leases ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return out, nil
}

// LeaseRescueJobs hands back orphaned running jobs in one statement, in
// riversqlite's formats: times as datetime('now', 'subsec') text, JSON
// columns as jsonb, errors as River's AttemptError objects.
func (e executor) LeaseRescueJobs(ctx context.Context, self string) ([]db.LeaseRescuedJob, error) {
	var out []db.LeaseRescuedJob
	err := e.atomic(ctx, func(e executor) error {
		now := e.clock()
		if _, err := e.exec(ctx, `DELETE FROM process_leases WHERE expires_at < ?`, now-time.Hour.Microseconds()); err != nil {
			return err
		}
		return e.query(ctx, func(rows *sql.Rows) error {
			var j db.LeaseRescuedJob
			if err := rows.Scan(&j.ID, &j.Kind, &j.Runner, &j.State); err != nil {
				return err
			}
			out = append(out, j)
			return nil
		}, `
UPDATE river_job SET
    state = CASE WHEN json_extract(metadata, '$.cancel_attempted_at') IS NOT NULL THEN 'cancelled'
                 WHEN attempt >= max_attempts THEN 'discarded' ELSE 'available' END,
    finalized_at = CASE WHEN json_extract(metadata, '$.cancel_attempted_at') IS NOT NULL OR attempt >= max_attempts
                        THEN datetime('now', 'subsec') END,
    scheduled_at = CASE WHEN json_extract(metadata, '$.cancel_attempted_at') IS NOT NULL OR attempt >= max_attempts
                        THEN scheduled_at ELSE datetime('now', 'subsec') END,
    errors = jsonb(json_insert(json(coalesce(errors, jsonb('[]'))), '$[#]', json_object(
        'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'attempt', attempt,
        'error', 'the process running this job (' || coalesce(json_extract(attempted_by, '$[#-1]'), 'unknown') || ') stopped renewing its lease',
        'trace', ''))),
    metadata = jsonb_set(metadata, '$."ferry:lease_rescues"',
        coalesce(CASE json_type(metadata, '$."ferry:lease_rescues"') WHEN 'integer' THEN json_extract(metadata, '$."ferry:lease_rescues"') END, 0) + 1)
WHERE state = 'running'
  AND coalesce(json_extract(attempted_by, '$[#-1]'), '') <> ?
  AND NOT EXISTS (SELECT 1 FROM process_leases l
                  WHERE l.id = json_extract(river_job.attempted_by, '$[#-1]') AND l.expires_at > ?)
RETURNING id, kind, coalesce(json_extract(attempted_by, '$[#-1]'), ''), state`, self, now)
	})
	if err != nil {
		return nil, fmt.Errorf("rescue jobs of lapsed leases: %w", err)
	}
	return out, nil
}
