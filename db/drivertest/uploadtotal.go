package drivertest

import (
	"context"
	"testing"

	"github.com/ferry-dev/ferry/db"
)

func testUploadTotalAdd(t *testing.T, s *suite) {
	d := s.driver(t)
	ctx := t.Context()
	for _, n := range []int64{25 << 20, 1, 3 << 30} {
		if err := d.UploadTotalAdd(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	equal(t, "totals after three uploads", must(d.UploadTotalGet(ctx)).of(t), db.UploadTotal{Files: 3, Bytes: 25<<20 + 1 + 3<<30})
	// In a transaction rolled back, nothing is counted.
	tx, err := d.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.UploadTotalAdd(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(context.WithoutCancel(ctx)); err != nil {
		t.Fatal(err)
	}
	equal(t, "totals after a rolled-back add", must(d.UploadTotalGet(ctx)).of(t), db.UploadTotal{Files: 3, Bytes: 25<<20 + 1 + 3<<30})
}

func testUploadTotalGet(t *testing.T, s *suite) {
	d := s.driver(t)
	equal(t, "totals before any upload", must(d.UploadTotalGet(t.Context())).of(t), db.UploadTotal{})
	if err := d.UploadTotalAdd(t.Context(), 512<<10); err != nil {
		t.Fatal(err)
	}
	equal(t, "totals after one upload", must(d.UploadTotalGet(t.Context())).of(t), db.UploadTotal{Files: 1, Bytes: 512 << 10})
}
