// Package migrations holds ferry's own schema as goose SQL files, one folder
// per dialect, embedded so the single binary can migrate any database it is
// pointed at. River's tables are migrated by rivermigrate (see the drivers
// in package db).
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var all embed.FS

// Postgres is the Postgres schema: one baseline until the first release,
// then numbered goose migrations (NNNNN_name.sql) on top of it.
func Postgres() fs.FS {
	sub, err := fs.Sub(all, "postgres")
	if err != nil {
		panic(err) // the folder is embedded above
	}
	return sub
}

// SQLite is the SQLite schema: the same tables and rules as Postgres's, in
// SQLite's types, numbered like it.
func SQLite() fs.FS {
	sub, err := fs.Sub(all, "sqlite")
	if err != nil {
		panic(err) // the folder is embedded above
	}
	return sub
}
