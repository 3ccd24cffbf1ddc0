package r2

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// errStopped ends the walk in CopyLocal once a worker has failed.
var errStopped = errors.New("r2: copy stopped")

// CopyLocal copies every record of from into the bucket behind to, which is
// what `ferry r2 sync` does when a bucket is configured after running
// without one. Each record is created, or merged into the bucket's object
// when one exists (another deployment's, or an earlier partial sync's), so
// the keys already in the bucket are kept and running it again is harmless.
//
// workers records are copied at once (at least 1). progress, if not nil, is
// called after each record with the running count; calls are serialised, so
// it need not be safe for concurrent use. On the first error no new record
// is started, the ones in flight finish, and the error is returned with the
// number copied so far.
func CopyLocal(ctx context.Context, from *Local, to *Store, workers int, progress func(done int, id string)) (int, error) {
	workers = max(workers, 1)
	ids := make(chan string)
	stop := make(chan struct{})
	var (
		mu       sync.Mutex // guards done, firstErr and progress calls
		done     int
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			close(stop)
		}
	}
	for range workers {
		wg.Go(func() {
			for id := range ids {
				select {
				case <-stop: // a select may still hand out ids after a failure
					continue
				default:
				}
				if err := copyOne(ctx, from, to, id); err != nil {
					fail(err)
					continue // keep draining until the walk sees stop and closes ids
				}
				mu.Lock()
				done++
				if progress != nil {
					progress(done, id)
				}
				mu.Unlock()
			}
		})
	}
	walkErr := from.Each(ctx, func(id string) error {
		select {
		case ids <- id:
			return nil
		case <-stop:
			return errStopped
		}
	})
	close(ids)
	wg.Wait()
	if firstErr == nil && walkErr != nil {
		firstErr = walkErr
	}
	return done, firstErr
}

// copyOne creates id's record in the bucket, or merges it into the object
// already there.
func copyOne(ctx context.Context, from *Local, to *Store, id string) error {
	rec, _, err := from.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("r2: copy %s: %w", id, err)
	}
	err = to.Create(ctx, rec)
	if errors.Is(err, ErrExists) {
		_, err = to.Merge(ctx, rec)
	}
	if err != nil {
		return fmt.Errorf("r2: copy %s: %w", id, err)
	}
	return nil
}
