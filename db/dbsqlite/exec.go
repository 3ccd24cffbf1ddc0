package dbsqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ferry-dev/ferry/db"
)

// querier is what a *sql.DB and a *sql.Tx both do.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// executor runs db.Executor's statements on q: outside a transaction d is
// set (a method of several statements then begins its own), inside one tx
// is, and now is the transaction's start, the now() of every statement in
// it as on Postgres.
type executor struct {
	q   querier
	d   *Driver
	tx  *txState
	now time.Time
}

// clock is now() in microseconds: the transaction's start, or this
// statement's outside one.
func (e executor) clock() int64 {
	if e.now.IsZero() {
		return time.Now().UnixMicro()
	}
	return e.now.UnixMicro()
}

// atomic runs f as one unit, as a single Postgres statement is: in a
// transaction of its own outside one (committed when f succeeds), in a
// savepoint inside one (rolled back when f fails, undoing f's writes, the
// transaction then aborted as Postgres aborts it).
func (e executor) atomic(ctx context.Context, f func(e executor) error) error {
	if e.tx == nil {
		tx, err := e.d.begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if err := f(tx.executor); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	sp, err := (&Tx{executor: e, st: e.tx}).savepoint(ctx)
	if err != nil {
		return err
	}
	if err := f(e); err != nil {
		cause := e.tx.aborted
		_ = sp.rollbackTo(ctx)
		if e.tx.aborted == nil {
			e.tx.aborted = cause
		}
		return err
	}
	return sp.release(ctx)
}

// usable refuses a statement in a transaction an earlier one aborted.
func (e executor) usable() error {
	if e.tx != nil && e.tx.aborted != nil {
		return &abortedError{e.tx.aborted}
	}
	return nil
}

// failed records a statement's error: in a transaction it aborts it, as
// every error does on Postgres, until it rolls back (to a savepoint). It
// also covers what SQLite itself does to a transaction after an interrupt
// (a cancelled context) or an I/O error: roll all of it back, so that the
// statements after would each commit on their own.
func (e executor) failed(err error) error {
	if err != nil && e.tx != nil && e.tx.aborted == nil {
		e.tx.aborted = err
	}
	return err
}

func (e executor) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if err := checkArgs(args); err != nil {
		return nil, e.failed(err)
	}
	res, err := e.q.ExecContext(ctx, query, args...)
	return res, e.failed(wrapErr(err))
}

// query runs query and calls row for each row it returns. An error of row
// (a scan, a decode) is the caller's, not the statement's: it does not
// abort the transaction.
func (e executor) query(ctx context.Context, row func(*sql.Rows) error, query string, args ...any) error {
	if err := e.usable(); err != nil {
		return err
	}
	if err := checkArgs(args); err != nil {
		return e.failed(err)
	}
	rows, err := e.q.QueryContext(ctx, query, args...)
	if err != nil {
		return e.failed(wrapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return e.failed(wrapErr(rows.Err()))
}

// queryRow scans query's first row into dest; sql.ErrNoRows when none.
func (e executor) queryRow(ctx context.Context, dest []any, query string, args ...any) error {
	found := false
	err := e.query(ctx, func(rows *sql.Rows) error {
		if found {
			return nil
		}
		found = true
		return rows.Scan(dest...)
	}, query, args...)
	if err == nil && !found {
		return sql.ErrNoRows
	}
	return err
}

// strings collects a query's single text column.
func (e executor) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	var out []string
	err := e.query(ctx, func(rows *sql.Rows) error {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	}, query, args...)
	return out, err
}

// notFound turns "no rows" into db.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return db.ErrNotFound
	}
	return err
}

// micros is t as stored: microseconds since the epoch.
func micros(t time.Time) int64 { return t.UnixMicro() }

// timeOf is a stored time, in the local zone as pgx returns timestamptz.
func timeOf(us int64) time.Time { return time.UnixMicro(us) }

// nullTime is a nullable stored time; zero when NULL.
func nullTime(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return timeOf(us.Int64)
}

// jsonArray is a JSON array parameter for json_each, unnest's stand-in:
// one element per row, each a JSON array of the row's columns. Text in it
// is checked as a text parameter is; a failure is kept in the parameter
// (badArg) for the statement to report, as Postgres reports it.
func jsonArray(n int, row func(i int) []any) any {
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = row(i)
		if err := checkArgs(rows[i]); err != nil {
			return badArg{err}
		}
	}
	return jsonArg(rows)
}

// jsonStrings is a JSON array of strings for json_each.
func jsonStrings(ss []string) any {
	if ss == nil {
		ss = []string{}
	}
	for _, s := range ss {
		if err := checkText(s); err != nil {
			return badArg{err}
		}
	}
	return jsonArg(ss)
}

// jsonArg is v as a JSON text parameter.
func jsonArg(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return badArg{fmt.Errorf("encode a JSON parameter: %w", err)}
	}
	return string(b)
}

// badArg is a parameter that could not be made.
type badArg struct{ err error }

// checkArgs refuses the text Postgres refuses (see checkText).
func checkArgs(args []any) error {
	for _, a := range args {
		switch a := a.(type) {
		case string:
			if err := checkText(a); err != nil {
				return err
			}
		case badArg:
			return a.err
		}
	}
	return nil
}

// checkText refuses a string Postgres cannot store as text: one with a NUL
// byte or that is not UTF-8 (SQLSTATE 22021), where SQLite would store it,
// and encoding/json would quietly change it.
func checkText(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return &textError{"a NUL byte"}
	}
	if !utf8.ValidString(s) {
		return &textError{"bytes that are not UTF-8"}
	}
	return nil
}

// abortedError is Postgres's refusal of a statement in an aborted
// transaction.
type abortedError struct{ cause error }

func (e *abortedError) Error() string {
	return "current transaction is aborted, commands ignored until end of transaction block (after: " + e.cause.Error() + ")"
}
func (e *abortedError) SQLState() string { return "25P02" }

// textError is text refused before it reaches SQLite.
type textError struct{ what string }

func (e *textError) Error() string    { return "text with " + e.what + " (SQLSTATE 22021)" }
func (e *textError) SQLState() string { return "22021" }

// Error is a SQLite error with the SQLSTATE Postgres gives the same fault,
// so db.IsDataError and db.IsRetryable classify it.
type Error struct {
	err  error
	code int
}

func (e *Error) Error() string { return e.err.Error() }
func (e *Error) Unwrap() error { return e.err }

// Code is SQLite's (extended) result code.
func (e *Error) Code() int { return e.code }

// SQLState is the Postgres class of the fault: integrity constraints
// (23...), data exceptions (22000), and a locked database as a
// serialization failure (40001), which a new attempt cures.
func (e *Error) SQLState() string {
	switch e.code {
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		return "23514"
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return "23503"
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return "23505"
	case sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return "23502"
	case sqlite3.SQLITE_CONSTRAINT_DATATYPE:
		// A STRICT table refusing a value's type: Postgres refuses it as
		// a data exception before any constraint.
		return "22000"
	}
	switch e.code & 0xff {
	case sqlite3.SQLITE_CONSTRAINT:
		return "23000"
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return "40001"
	case sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE:
		return "22000"
	}
	return ""
}

// wrapErr gives a SQLite error its SQLSTATE.
func wrapErr(err error) error {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	var done *Error
	if errors.As(err, &done) {
		return err
	}
	return &Error{err: err, code: se.Code()}
}

func init() {
	// ferry_lower is Go's Unicode lower-casing for /find: SQLite's own
	// lower() folds ASCII only, where Postgres's (in a UTF-8 locale)
	// folds every script. It is registered once for every connection of
	// the "sqlite" driver.
	sqlite.MustRegisterDeterministicScalarFunction("ferry_lower", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case nil:
			return nil, nil
		case string:
			return lower(v), nil
		case []byte:
			return lower(string(v)), nil
		default:
			return nil, fmt.Errorf("ferry_lower of a %T", v)
		}
	})
}

// lower is strings.ToLower without its allocation for text that is
// lower-case ASCII already.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return strings.ToLower(s)
		}
	}
	return s
}
