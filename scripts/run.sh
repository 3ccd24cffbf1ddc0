#!/usr/bin/env bash
# `make run`: build ferry and run `ferry serve` on this machine. With only a
# bot token it runs on the embedded database (DATA_DIR/ferry.db) and
# long-polls Telegram; DATABASE_URL picks Postgres, PUBLIC_URL or
# WEBHOOK_SECRET webhooks.
set -euo pipefail
cd "$(dirname "$0")/.."
envval() { # value from the environment, else from .env
  local v="${!1:-}"
  if [ -z "$v" ] && [ -f .env ]; then v=$(grep -E "^$1=" .env | tail -1 | cut -d= -f2- | sed -e 's/^"//' -e 's/"$//'); fi
  echo "$v"
}
if [ -z "$(envval BOT_TOKENS)$(envval BOT_TOKEN)" ]; then
  echo "make run: set BOT_TOKENS (or BOT_TOKEN) in the environment or in .env (see .env.example)" >&2
  exit 2
fi
go build -buildvcs=auto -o bin/ferry ./cmd/ferry
exec ./bin/ferry serve
