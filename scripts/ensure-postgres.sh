#!/usr/bin/env bash
# Makes sure a local PostgreSQL answers and prints a URL for it on stdout.
# Order: an already reachable server (TEST_DATABASE_URL or the default) → start
# the installed Debian cluster → install it with apt (root only). Anything it
# cannot do is said on stderr and the script exits non-zero: tests never skip
# for want of a database.
set -euo pipefail
url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
pw_url="postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"

reachable() { psql "$1" -qtAc 'select 1' >/dev/null 2>&1; }
say() { echo "ensure-postgres: $*" >&2; }

# A URL given explicitly is the only one used: never fall back to another server.
if [ -n "${TEST_DATABASE_URL:-}" ]; then
  reachable "$TEST_DATABASE_URL" && { echo "$TEST_DATABASE_URL"; exit 0; }
  say "TEST_DATABASE_URL is set but PostgreSQL does not answer there (psql could not connect)"
  exit 1
fi

if command -v psql >/dev/null 2>&1; then
  reachable "$url" && { echo "$url"; exit 0; }
  reachable "$pw_url" && { echo "$pw_url"; exit 0; }
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL is not installed; installing it with apt-get (postgresql)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    say "PostgreSQL is missing. Install PostgreSQL 15+ (Debian: sudo apt-get install postgresql)"
    say "or point TEST_DATABASE_URL/DATABASE_URL at a server you have."
    exit 1
  fi
fi

ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
if [ -z "$ver" ]; then say "no PostgreSQL cluster under /etc/postgresql"; exit 1; fi
if ! pg_lsclusters -h 2>/dev/null | awk '{print $4}' | grep -q online; then
  say "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || { say "could not start PostgreSQL $ver"; exit 1; }
fi
for _ in $(seq 1 50); do
  reachable "$url" && { echo "$url"; exit 0; }
  reachable "$pw_url" && { echo "$pw_url"; exit 0; }
  pg_isready -q -h 127.0.0.1 2>/dev/null && break
  sleep 0.2
done
# A fresh Debian install asks for a password over TCP: give the postgres user
# one known to the tests (local development only).
if [ "$(id -u)" = 0 ]; then
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >&2 || true
  reachable "$pw_url" && { echo "$pw_url"; exit 0; }
fi
say "PostgreSQL runs but ferry cannot log in at $url; set TEST_DATABASE_URL to a URL that works"
exit 1
