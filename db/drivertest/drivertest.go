// Package drivertest is the conformance suite of package db's drivers, in
// the shape of River's riverdrivertest: Run exercises every operation of a
// db.Driver and checks what it did through the interface's other methods
// alone. It holds no SQL, so the same assertions run on every driver.
//
// A driver's own test runs it:
//
//	func TestDriver(t *testing.T) {
//		drivertest.Run(t, func(t *testing.T) db.Driver { return dbtest.New(t) },
//			drivertest.Capabilities{ConcurrentWriters: true})
//	}
package drivertest

import (
	"reflect"
	"testing"

	"github.com/ferry-dev/ferry/db"
)

// Capabilities are what a driver does beyond what every driver must.
type Capabilities struct {
	// ConcurrentWriters: several transactions write at once, each seeing
	// the others' writes once they commit. A lock or claim one holds makes
	// the others wait (claims, FileLockNew, the sightings lock) and a batch
	// one drain took is skipped by the others (SightingBatchTake), as on
	// Postgres. A driver with a single writer (SQLite) leaves it false, and
	// the subtests that need two open transactions are skipped.
	ConcurrentWriters bool
}

// Run runs the suite, each subtest in parallel on its own database from
// newDriver (fresh and migrated; newDriver closes it when the test ends,
// even if a subtest closed it before).
func Run(t *testing.T, newDriver func(t *testing.T) db.Driver, caps Capabilities) {
	s := &suite{newDriver: newDriver, caps: caps}
	all := cases()
	t.Run("EveryMethod", func(t *testing.T) { checkEveryMethod(t, all) })
	for _, c := range all {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, s)
		})
	}
}

// suite is what every case gets: a way to a fresh database and what the
// driver can do.
type suite struct {
	newDriver func(t *testing.T) db.Driver
	caps      Capabilities
}

// driver is a fresh database for t.
func (s *suite) driver(t *testing.T) db.Driver {
	t.Helper()
	return s.newDriver(t)
}

// concurrent skips t on a driver without ConcurrentWriters.
func (s *suite) concurrent(t *testing.T) {
	t.Helper()
	if !s.caps.ConcurrentWriters {
		t.Skip("driver runs one writer at a time (Capabilities.ConcurrentWriters false)")
	}
}

type testCase struct {
	name string
	run  func(t *testing.T, s *suite)
}

// cases are the subtests, each named after the method it is about.
func cases() []testCase {
	return []testCase{
		// Driver and Tx.
		{"Name", testName},
		{"Ping", testPing},
		{"Close", testClose},
		{"Migrate", testMigrate},
		{"Current", testCurrent},
		{"Begin", testBegin},
		{"Commit", testCommit},
		{"Rollback", testRollback},
		{"Savepoint", testSavepoint},
		{"RiverTx", testRiverTx},
		{"NewRiver", testNewRiver},
		{"WithTx", testWithTx},
		{"IsDataError", testIsDataError},

		// The intake and the drain.
		{"UpdateAcceptMany", testUpdateAcceptMany},
		{"SightingBatchTake", testSightingBatchTake},
		{"SightingBatchLockEmpty", testSightingBatchLockEmpty},
		{"SightingFailureInsert", testSightingFailureInsert},
		{"SightingFailureList", testSightingFailureList},
		{"SightingFailureRequeue", testSightingFailureRequeue},
		{"StatsCount", testStatsCount},
		{"CommandCountAdd", testCommandCountAdd},

		// The index.
		{"FileLockNew", testFileLockNew},
		{"FileUnknownMany", testFileUnknownMany},
		{"PostClaimMany", testPostClaimMany},
		{"FileInsertMany", testFileInsertMany},
		{"FileBotIDUpsertMany", testFileBotIDUpsertMany},
		{"PostOutcomeMany", testPostOutcomeMany},
		{"PostPendingReplyMany", testPostPendingReplyMany},
		{"PostMarkRepliedMany", testPostMarkRepliedMany},
		{"FileGet", testFileGet},
		{"FileFind", testFileFind},
		{"FileHeldByAll", testFileHeldByAll},
		{"FileSyncGetMany", testFileSyncGetMany},
		{"FileListAfter", testFileListAfter},
		{"R2PendingListAfter", testR2PendingListAfter},
		{"R2PendingDeleteMany", testR2PendingDeleteMany},

		// Sends.
		{"HolderList", testHolderList},
		{"BotSendLease", testBotSendLease},
		{"BotSendRelease", testBotSendRelease},
		{"BotLoadList", testBotLoadList},
		{"BotSendsInFlight", testBotSendsInFlight},
		{"SendBudgetLock", testSendBudgetLock},
		{"SendBudgetSave", testSendBudgetSave},
		{"SendBudgetBlock", testSendBudgetBlock},
		{"SendBudgetList", testSendBudgetList},
		{"SendBudgetPrune", testSendBudgetPrune},
		{"SendBudgetLockBesidePrune", testSendBudgetLockBesidePrune},
		{"FileBotIDBotsInChat", testFileBotIDBotsInChat},

		// MTProto state.
		{"UploadStateGet", testUploadStateGet},
		{"UploadStateBegin", testUploadStateBegin},
		{"UploadStateSaveAcked", testUploadStateSaveAcked},
		{"UploadStateEnsureRandomID", testUploadStateEnsureRandomID},
		{"UploadStateMarkSent", testUploadStateMarkSent},
		{"UploadStateInvalidate", testUploadStateInvalidate},
		{"UploadStateDelete", testUploadStateDelete},
		{"UploadTotalAdd", testUploadTotalAdd},
		{"UploadTotalGet", testUploadTotalGet},
		{"SessionGet", testSessionGet},
		{"SessionSave", testSessionSave},

		// Process leases.
		{"LeaseAcquire", testLeaseAcquire},
		{"LeaseRenew", testLeaseRenew},
		{"LeaseRelease", testLeaseRelease},
		{"LeaseList", testLeaseList},
		{"LeaseRescueJobs", testLeaseRescueJobs},
	}
}

// checkEveryMethod fails for a method of db.Driver or db.Tx that no case is
// named after: a method added to the interface needs its case here.
func checkEveryMethod(t *testing.T, all []testCase) {
	named := make(map[string]bool, len(all))
	for _, c := range all {
		named[c.name] = true
	}
	for _, it := range []reflect.Type{reflect.TypeFor[db.Driver](), reflect.TypeFor[db.Tx]()} {
		for i := range it.NumMethod() {
			if m := it.Method(i); !named[m.Name] {
				t.Errorf("%s.%s has no subtest in drivertest", it.Name(), m.Name)
			}
		}
	}
}
