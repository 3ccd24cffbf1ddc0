package jobs_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"

	"github.com/ferry-dev/ferry/db"
)

// faultDB is a database whose chosen operations fail while a fault is on,
// in or out of a transaction: a test's stand-in for a database that breaks.
type faultDB struct {
	db.Driver
	*faults
}

// faults are the switches of a faultDB.
type faults struct {
	// intakeDown fails the intake's commits (UpdateAcceptMany).
	intakeDown atomic.Bool
	// indexDown fails the index's claims (PostClaimMany), as a database
	// that lost its tables would.
	indexDown atomic.Bool
	// poison refuses, as a data error, to insert the file named poisonName.
	poison atomic.Bool
}

const poisonName = "poison.mkv"

func withFaults(d db.Driver) *faultDB { return &faultDB{Driver: d, faults: &faults{}} }

// dataError is an error the database raises for the data it was given
// (SQLSTATE 23514, a check constraint).
type dataError struct{ msg string }

func (e dataError) Error() string    { return e.msg }
func (e dataError) SQLState() string { return "23514" }

func (f *faults) acceptErr() error {
	if f.intakeDown.Load() {
		return errors.New(`relation "received_updates" does not exist`)
	}
	return nil
}

func (f *faults) claimErr() error {
	if f.indexDown.Load() {
		return errors.New(`relation "files" does not exist`)
	}
	return nil
}

func (f *faults) insertErr(p *db.FileInsertManyParams) error {
	if f.poison.Load() && slices.Contains(p.Name, poisonName) {
		return dataError{"poisoned file"}
	}
	return nil
}

func (d *faultDB) Begin(ctx context.Context) (db.Tx, error) {
	tx, err := d.Driver.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return faultTx{Tx: tx, faults: d.faults}, nil
}

func (d *faultDB) UpdateAcceptMany(ctx context.Context, p *db.UpdateAcceptManyParams) (*db.UpdateAcceptManyResult, error) {
	if err := d.acceptErr(); err != nil {
		return nil, err
	}
	return d.Driver.UpdateAcceptMany(ctx, p)
}

func (d *faultDB) PostClaimMany(ctx context.Context, p *db.PostClaimManyParams) ([]db.PostClaim, error) {
	if err := d.claimErr(); err != nil {
		return nil, err
	}
	return d.Driver.PostClaimMany(ctx, p)
}

func (d *faultDB) FileInsertMany(ctx context.Context, p *db.FileInsertManyParams) error {
	if err := d.insertErr(p); err != nil {
		return err
	}
	return d.Driver.FileInsertMany(ctx, p)
}

// faultTx is a transaction of a faultDB; its savepoints are too.
type faultTx struct {
	db.Tx
	*faults
}

func (t faultTx) Savepoint(ctx context.Context, f func(db.Tx) error) error {
	return t.Tx.Savepoint(ctx, func(sp db.Tx) error { return f(faultTx{Tx: sp, faults: t.faults}) })
}

func (t faultTx) UpdateAcceptMany(ctx context.Context, p *db.UpdateAcceptManyParams) (*db.UpdateAcceptManyResult, error) {
	if err := t.acceptErr(); err != nil {
		return nil, err
	}
	return t.Tx.UpdateAcceptMany(ctx, p)
}

func (t faultTx) PostClaimMany(ctx context.Context, p *db.PostClaimManyParams) ([]db.PostClaim, error) {
	if err := t.claimErr(); err != nil {
		return nil, err
	}
	return t.Tx.PostClaimMany(ctx, p)
}

func (t faultTx) FileInsertMany(ctx context.Context, p *db.FileInsertManyParams) error {
	if err := t.insertErr(p); err != nil {
		return err
	}
	return t.Tx.FileInsertMany(ctx, p)
}
