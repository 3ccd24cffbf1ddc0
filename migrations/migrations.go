// Package migrations holds ferry's own schema as goose SQL files, embedded so
// the single binary can migrate any database it is pointed at. River's tables
// are migrated separately by rivermigrate (see package db).
package migrations

import "embed"

// FS holds the numbered goose migrations (NNNNN_name.sql). Each package that
// owns tables adds its own file; numbers are never reused.
//
//go:embed *.sql
var FS embed.FS
