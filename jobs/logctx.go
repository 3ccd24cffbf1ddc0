package jobs

import (
	"context"
	"log/slog"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// logKey carries a job's logger in its context.
type logKey struct{}

// jobLogs is the River middleware that gives every job a logger carrying
// its id, kind and attempt, so each line a worker logs says which job it
// is about.
func jobLogs(base *slog.Logger) rivertype.WorkerMiddleware {
	return river.WorkerMiddlewareFunc(func(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
		l := base.With("job_id", job.ID, "kind", job.Kind, "attempt", job.Attempt)
		return doInner(context.WithValue(ctx, logKey{}, l))
	})
}

// logOf is the logger of the job ctx belongs to, or d's outside a job.
func logOf(ctx context.Context, d *Deps) *slog.Logger {
	if l, ok := ctx.Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	return d.Logger
}
