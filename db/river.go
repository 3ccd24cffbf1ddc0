package db

import (
	"context"
	"fmt"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
	"riverqueue.com/riverui"
	"riverqueue.com/riverui/uiendpoints"
)

// River is the River client of a Driver's database without its transaction
// type, so that jobs and workers are written once for every driver: a
// transaction is a Tx, unwrapped for River by the driver that made it.
type River interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())

	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	InsertTx(ctx context.Context, tx Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	InsertManyTx(ctx context.Context, tx Tx, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	// JobCompleteTx completes the running job in tx (river.JobCompleteTx):
	// call it from the job's worker.
	JobCompleteTx(ctx context.Context, tx Tx, job *rivertype.JobRow) error

	JobCancel(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobRetry(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	// JobCountByState counts jobs by state (River's driver, as riverui does).
	JobCountByState(ctx context.Context) (map[rivertype.JobState]int, error)

	QueuePause(ctx context.Context, name string, opts *river.QueuePauseOpts) error
	QueueResume(ctx context.Context, name string, opts *river.QueuePauseOpts) error
	// QueueList lists the queues River knows, with when each was paused.
	QueueList(ctx context.Context, params *river.QueueListParams) (*river.QueueListResult, error)

	// UIEndpoints is the River UI's API on this client (riverui.NewEndpoints).
	UIEndpoints() uiendpoints.Bundle
}

// NewRiver wraps a River client made on driver; drivers call it from their
// NewRiver.
func NewRiver[TTx any](driver riverdriver.Driver[TTx], cfg *river.Config) (River, error) {
	c, err := river.NewClient(driver, cfg)
	if err != nil {
		return nil, err
	}
	return &riverClient[TTx]{Client: c}, nil
}

type riverClient[TTx any] struct {
	*river.Client[TTx]
}

func (c *riverClient[TTx]) tx(tx Tx) (TTx, error) {
	t, ok := tx.RiverTx().(TTx)
	if !ok {
		var zero TTx
		return zero, fmt.Errorf("db: a %T is not a transaction of this River client's driver", tx.RiverTx())
	}
	return t, nil
}

func (c *riverClient[TTx]) InsertTx(ctx context.Context, tx Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	t, err := c.tx(tx)
	if err != nil {
		return nil, err
	}
	return c.Client.InsertTx(ctx, t, args, opts)
}

func (c *riverClient[TTx]) InsertManyTx(ctx context.Context, tx Tx, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	t, err := c.tx(tx)
	if err != nil {
		return nil, err
	}
	return c.Client.InsertManyTx(ctx, t, params)
}

// anyArgs stands for a job's args where only its row matters.
type anyArgs struct{}

func (anyArgs) Kind() string { return "" }

func (c *riverClient[TTx]) JobCompleteTx(ctx context.Context, tx Tx, job *rivertype.JobRow) error {
	t, err := c.tx(tx)
	if err != nil {
		return err
	}
	_, err = river.JobCompleteTx[riverdriver.Driver[TTx]](ctx, t, &river.Job[anyArgs]{JobRow: job})
	return err
}

func (c *riverClient[TTx]) JobCountByState(ctx context.Context) (map[rivertype.JobState]int, error) {
	return c.Client.Driver().GetExecutor().JobCountByAllStates(ctx, &riverdriver.JobCountByAllStatesParams{})
}

func (c *riverClient[TTx]) UIEndpoints() uiendpoints.Bundle {
	return riverui.NewEndpoints(c.Client, nil)
}
