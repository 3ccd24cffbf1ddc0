package dbpg

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// AsyncCommit exposes asyncCommit to the external tests.
func (d *Driver) AsyncCommit(ctx context.Context, queue func(*pgx.Batch)) error {
	return d.asyncCommit(ctx, queue)
}
