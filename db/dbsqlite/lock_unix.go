//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package dbsqlite

import (
	"errors"
	"os"
	"syscall"
)

// errLocked: another open file holds the lock.
var errLocked = errors.New("locked")

// lockFile takes an exclusive flock on name (created when missing) without
// waiting, and returns its release. flock belongs to the open file, so a
// second open refuses even within one process; the kernel releases it when
// the process dies, so a crash leaves no stale lock.
func lockFile(name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}
