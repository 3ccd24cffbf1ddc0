#!/usr/bin/env bash
# `make image-check`: build the Dockerfile without a Docker daemon and run the
# image. buildah builds it (`buildah bud --isolation chroot`, which works
# as root without a daemon or user namespaces). When the base images the
# Dockerfile names are not in buildah's storage and cannot be pulled (no
# registry access, as on the project's CI machine), local stand-ins are built
# under those names first:
#   debian:bookworm-slim  a Debian bookworm root from `debootstrap --variant=minbase`
#   golang:1.26-bookworm  that root plus this machine's Go toolchain (GOROOT) at
#                         /usr/local/go, GOPATH=/go, as in the official image
# The debootstrap root is cached as a tarball in $FERRY_IMAGE_CACHE (default
# ~/.cache/ferry-image-check, outside the repository).
# Then, in the built image: `ferry version`, `ferry migrate` and `ferry web`
# on Postgres (host network, a scratch database), `ferry webhook set` against
# the Bot API stand-in (telegramtest/cmd/fakebot, on this host), one /start
# delivered by the stand-in to web's webhook and committed as a River job,
# then `ferry worker` works it and the stand-in records the reply.
#
# Needs: root, buildah, debootstrap (apt-get install buildah debootstrap),
# psql and a PostgreSQL (scripts/ensure-postgres.sh), Go.
# Settings: FERRY_IMAGE (tag, default localhost/ferry:check),
# FERRY_IMAGE_NO_CACHE=1 (rebuild every step; cache mounts still apply),
# FERRY_IMAGE_STANDINS=rebuild (rebuild the stand-ins). The image is kept
# (`buildah rmi localhost/ferry:check` removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
say() { echo "image-check: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (buildah --isolation chroot and debootstrap need it)"
for c in buildah debootstrap psql go curl; do
  command -v "$c" >/dev/null || die "$c is missing (apt-get install buildah debootstrap postgresql-client; Go ≥ 1.26)"
done

cache=${FERRY_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry-image-check}
image=${FERRY_IMAGE:-localhost/ferry:check}
mkdir -p "$cache"
work=$(mktemp -d /tmp/ferry-image-check.XXXXXX)
pids=() ctrs=() db=""
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for c in "${ctrs[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  [ -n "$db" ] && psql "$pg_url" -qtAc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  if [ $rc != 0 ]; then
    for f in "$work"/*.log; do [ -f "$f" ] && { say "--- $(basename "$f") (last 30 lines)"; tail -n 30 "$f" >&2; }; done
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
t0=$SECONDS
step() { say "[$((SECONDS - t0))s] $*"; }

# ---- base images ----
bases=$(awk 'toupper($1) == "FROM" {print $2}' Dockerfile)
full_name() { # docker.io/library/NAME:TAG, the name buildah looks up for FROM NAME:TAG
  case "$1" in */*/*) echo "$1" ;; */*) echo "docker.io/$1" ;; *) echo "docker.io/library/$1" ;; esac
}
have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

debian_standin() { # $1 = name
  local tar="$cache/debian-bookworm-minbase.tar"
  if [ ! -s "$tar" ]; then
    step "debootstrap bookworm (minbase) into $cache (once; a few minutes)"
    local rootfs="$cache/rootfs.tmp"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $work/debootstrap.log"
    # The official image's sources (main, updates, security) and its apt
    # cleanup, so that `apt-get install` in the Dockerfile behaves as there.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$rootfs"
  fi
  step "importing the Debian root as $1"
  # A scratch container filled from the tarball (what `buildah import` does
  # in newer buildah; 1.28, Debian bookworm's, has no import).
  local c m
  c=$(buildah from scratch)
  ctrs+=("$c")
  m=$(buildah mount "$c")
  tar -C "$m" --numeric-owner -xf "$tar"
  buildah umount "$c" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --label ferry.standin=debootstrap "$c"
  buildah commit -q "$c" "$1" >/dev/null
}

golang_standin() { # $1 = name, $2 = the debian stand-in to start from
  local goroot gover c
  goroot=$(go env GOROOT)
  gover=$(go env GOVERSION)
  case "$1" in *:"${gover#go}"*|*:"$(echo "${gover#go}" | cut -d. -f1,2)"-*) ;;
    *) die "$1 wants another Go than this machine's $gover; install that Go or pull $1" ;;
  esac
  step "building $1 from $2 and this machine's $gover ($goroot)"
  c=$(buildah from --pull=never "$2")
  ctrs+=("$c")
  # What the build stage needs of buildpack-deps: CA certificates and git.
  buildah run --isolation chroot "$c" -- sh -c \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates git >/dev/null && rm -rf /var/lib/apt/lists/*' \
    >"$work/golang-standin.log" 2>&1 || die "apt-get in the golang stand-in failed"
  # This machine's extra CAs (a TLS-intercepting egress proxy, say) so that
  # `go mod download` in the build reaches the module proxy as the host does.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    buildah copy "$c" /usr/local/share/ca-certificates/ /usr/local/share/ca-certificates/ >/dev/null
    buildah run --isolation chroot "$c" -- update-ca-certificates >>"$work/golang-standin.log" 2>&1
  fi
  buildah copy "$c" "$goroot" /usr/local/go >/dev/null
  buildah run --isolation chroot "$c" -- sh -c 'mkdir -p /go/src /go/bin && chmod -R 1777 /go'
  buildah config --env GOLANG_VERSION="${gover#go}" --env GOTOOLCHAIN=local --env GOPATH=/go \
    --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --workingdir /go --label ferry.standin=host-go "$c"
  buildah commit -q "$c" "$1" >/dev/null
}

debian_name="" golang_name=""
for b in $bases; do
  n=$(full_name "$b")
  case "$b" in
    debian:*) debian_name=$n ;;
    golang:*) golang_name=$n ;;
    *) die "Dockerfile names a base image this script has no stand-in for: $b" ;;
  esac
done
[ -n "$debian_name" ] || debian_name=docker.io/library/debian:bookworm-slim
if [ "${FERRY_IMAGE_STANDINS:-}" = rebuild ]; then
  buildah rmi -f "$golang_name" "$debian_name" >/dev/null 2>&1 || true
fi
have_image "$debian_name" || debian_standin "$debian_name"
[ -z "$golang_name" ] || have_image "$golang_name" || golang_standin "$golang_name" "$debian_name"
for n in $debian_name $golang_name; do
  say "base $n: $(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "ferry.standin"}}' "$n" 2>/dev/null | sed 's/^$/a pulled image/; s/^debootstrap$/stand-in (debootstrap)/; s/^host-go$/stand-in (debootstrap root + host Go)/')"
done

# ---- build ----
step "buildah bud --isolation chroot -t $image ."
no_cache=()
[ "${FERRY_IMAGE_NO_CACHE:-}" = 1 ] && no_cache=(--no-cache)
build_start=$SECONDS
buildah bud --isolation chroot --pull=never --layers "${no_cache[@]}" -t "$image" -f Dockerfile . >"$work/build.log" 2>&1 ||
  die "buildah bud failed"
step "built $image in $((SECONDS - build_start))s; $(buildah images --format '{{.Size}}' "$image" | head -1)"

# ---- run ----
pg_url=$(scripts/ensure-postgres.sh)
db="ferry_image_check_$$"
psql "$pg_url" -qtAc "CREATE DATABASE $db" >/dev/null
database_url=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$pg_url" "$db")

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
bot_port=$(free_port)
web_port=$(free_port)
worker_port=$(free_port)
token=1234567890:fakebot-local-token-not-a-secret
bot_id=${token%%:*}

go build -o "$work/fakebot" ./telegramtest/cmd/fakebot
"$work/fakebot" -addr "127.0.0.1:$bot_port" -tokens "$token" >"$work/fakebot.out" 2>"$work/fakebot.log" &
pids+=($!)
bot_url=http://127.0.0.1:$bot_port

ctr=$(buildah from --pull=never "$image")
ctrs+=("$ctr")
env_args=(--env "DATABASE_URL=$database_url" --env "BOT_TOKENS=$token" --env "BOT_API_URL=$bot_url"
  --env "WEBHOOK_SECRET=image-check-webhook-secret" --env "PUBLIC_URL=http://127.0.0.1:$web_port"
  --env "ADMIN_IDS=1001" --env "LOG_FORMAT=json")
run_in=(buildah run --isolation chroot --network host "${env_args[@]}" "$ctr" --)
in_image() { "${run_in[@]}" "$@"; }

step "in the image: ferry version"
in_image /app/ferry version
[ "$(in_image id -u)" = 10001 ] || die "the image does not run as uid 10001"
step "in the image: ferry migrate"
in_image /app/ferry migrate >"$work/migrate.log" 2>&1 || die "ferry migrate failed"
tables=$(psql "$database_url" -qtAc "select count(*) from information_schema.tables where table_schema = 'public'")
[ "$tables" -gt 0 ] || die "ferry migrate created no tables"
say "migrate: $tables tables"

wait_http() { # url, seconds
  for _ in $(seq $((${2} * 5))); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
wait_http "$bot_url/fakebot/bots" 10 || die "fakebot did not start"

step "in the image: ferry web on :$web_port"
# Not through in_image: $! must be buildah's pid, which passes SIGTERM on.
"${run_in[@]}" env PORT="$web_port" /app/ferry web >"$work/web.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$web_port/readyz" 60 || die "ferry web did not become ready"

step "in the image: ferry webhook set"
in_image /app/ferry webhook set >"$work/webhook.log" 2>&1 || die "ferry webhook set failed"
hook=$(curl -fsS "$bot_url/fakebot/calls?method=setWebhook&min=1&timeout=5s")
python3 - "$hook" "http://127.0.0.1:$web_port/tg/$bot_id" <<'EOF' || die "setWebhook was not called as expected"
import json, sys
calls = json.loads(sys.argv[1])
assert calls[-1]["ok"] and calls[-1]["params"]["url"] == sys.argv[2], calls
assert calls[-1]["params"].get("secret_token"), "no secret_token"
EOF

step "one /start through the webhook"
curl -fsS -X POST "$bot_url/fakebot/message?text=/start" >/dev/null
jobs=0
for _ in $(seq 50); do
  jobs=$(psql "$database_url" -qtAc "select count(*) from river_job where kind = 'update'")
  [ "$jobs" -ge 1 ] && break
  sleep 0.2
done
[ "$jobs" = 1 ] || die "expected 1 update job after the webhook delivery, found $jobs"
say "web accepted the update: 1 River job of kind update"

step "in the image: ferry worker"
# Not through in_image: $! must be buildah's pid, which passes SIGTERM on.
"${run_in[@]}" env PORT="$worker_port" /app/ferry worker >"$work/worker.log" 2>&1 &
pids+=($!)
reply=$(curl -fsS "$bot_url/fakebot/calls?method=sendMessage&min=1&timeout=60s") || die "no sendMessage within 60 s"
python3 - "$reply" <<'EOF' || die "the reply to /start is not what ferry sends"
import json, sys
c = json.loads(sys.argv[1])[0]
assert c["ok"] and c["params"]["chat_id"] == "1001", c
assert "moves big files into Telegram" in c["params"]["text"], c["params"]["text"]
print("image-check: the worker answered /start:", c["params"]["text"].splitlines()[0][:80], file=sys.stderr)
EOF
state=$(psql "$database_url" -qtAc "select state from river_job where kind = 'update'")
for _ in $(seq 25); do [ "$state" = completed ] && break; sleep 0.2; state=$(psql "$database_url" -qtAc "select state from river_job where kind = 'update'"); done
[ "$state" = completed ] || die "the update job is $state, not completed"

# Stop them as `docker stop` would: SIGTERM to ferry itself (buildah run,
# when signalled, kills its child outright), and each must exit 0.
ferry_under() { # pid of the ferry process below buildah run $1
  local p=$1 c
  for _ in 1 2 3 4 5; do
    for c in $(ps -o pid= --ppid "$p"); do
      [ "$(ps -o comm= -p "$c")" = ferry ] && { echo "$c"; return 0; }
    done
    p=$(ps -o pid= --ppid "$p" | head -1 | tr -d ' ')
    [ -n "$p" ] || return 1
  done
  return 1
}
for p in "${pids[@]:1}"; do
  f=$(ferry_under "$p") || die "no ferry process under buildah run $p"
  kill -TERM "$f"
done
for p in "${pids[@]:1}"; do rc=0; wait "$p" || rc=$?; [ $rc = 0 ] || die "a ferry process in the image exited $rc on SIGTERM"; done
pids=("${pids[0]}")
step "image-check passed: built, migrated, web accepted /start, worker answered it"
