#!/usr/bin/env bash
# `make run`: build ferry and run `ferry serve` on this machine.
# Until the embedded database lands, an empty DATABASE_URL means a local
# PostgreSQL: it is started (or installed) and a `ferry` database created.
# With no PUBLIC_URL, updates are long-polled, so a bot token is all you need.
set -euo pipefail
cd "$(dirname "$0")/.."
envval() { # value from the environment, else from .env
  local v="${!1:-}"
  if [ -z "$v" ] && [ -f .env ]; then v=$(grep -E "^$1=" .env | tail -1 | cut -d= -f2- | sed -e 's/^"//' -e 's/"$//'); fi
  echo "$v"
}
go build -o bin/ferry ./cmd/ferry
if [ -z "$(envval BOT_TOKENS)$(envval BOT_TOKEN)" ]; then
  echo "make run: set BOT_TOKENS (or BOT_TOKEN) in the environment or in .env (see .env.example)" >&2
  exit 2
fi
if [ -z "$(envval DATABASE_URL)" ]; then
  admin=$(scripts/ensure-postgres.sh)
  psql "$admin" -qtAc "SELECT 1 FROM pg_database WHERE datname='ferry'" | grep -q 1 || psql "$admin" -qc "CREATE DATABASE ferry"
  export DATABASE_URL="${admin%/postgres?sslmode=disable}/ferry?sslmode=disable"
  echo "make run: using local PostgreSQL database ferry" >&2
fi
if [ -z "$(envval UPDATES_MODE)" ] && [ -z "$(envval PUBLIC_URL)" ]; then
  export UPDATES_MODE=poll
  echo "make run: no PUBLIC_URL, so updates are long-polled (UPDATES_MODE=poll)" >&2
fi
exec ./bin/ferry serve
