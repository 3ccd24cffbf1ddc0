#!/usr/bin/env bash
# `make notebook-check`: execute deploy/colab/ferry.ipynb here with nbclient
# against a stub google.colab.userdata, a locally built ferry served as a
# release download, and the Bot API stand-in (telegramtest/cmd/fakebot); it
# checks that ferry answered /start. NOTEBOOK_TUNNEL=fake also runs the
# tunnel cell (twice) against a fake cloudflared. See scripts/notebook-check.py.
# Needs Debian's python3-nbclient and python3-ipykernel (apt-get install
# python3-nbclient python3-ipykernel): /usr/bin/python3 is used, not
# whatever python3 is first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
py=/usr/bin/python3
"$py" -c 'import nbclient, nbformat, ipykernel' 2>/dev/null || {
  echo "notebook-check: $py lacks nbclient/ipykernel: apt-get install python3-nbclient python3-ipykernel" >&2
  exit 1
}
work=$(mktemp -d /tmp/ferry-notebook-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -buildvcs=auto -trimpath -o "$work/ferry" ./cmd/ferry
go build -o "$work/fakebot" ./telegramtest/cmd/fakebot
"$py" scripts/notebook-check.py "$work" "$work/ferry" "$work/fakebot" || {
  rc=$?
  for f in "$work/home/ferry.log" "$work/fakebot.log" "$work/home/cloudflared.log"; do
    [ -f "$f" ] && { echo "--- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
  done
  exit $rc
}
