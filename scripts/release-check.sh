#!/usr/bin/env bash
# `make release-check`: build this machine's release binary the way a release
# does (.goreleaser.yaml, GoReleaser v2.15.1, snapshot, one target) and run its
# `ferry version`, which must name the commit it was built from. GoReleaser is
# installed with `go install` into $(go env GOPATH)/bin when missing; it is a
# tool of this script, not a dependency in go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
want=2.15.1
gr=${GORELEASER:-$(go env GOPATH)/bin/goreleaser}
if ! { [ -x "$gr" ] && "$gr" --version 2>/dev/null | grep -q "GitVersion:[[:space:]]*v\?$want\b"; }; then
  echo "release-check: installing goreleaser v$want (go install; a few minutes the first time)" >&2
  GOBIN=$(dirname "$gr") go install "github.com/goreleaser/goreleaser/v2@v$want"
fi
"$gr" check
"$gr" build --snapshot --single-target --clean
bin=$(python3 -c 'import json; print(next(a["path"] for a in json.load(open("dist/artifacts.json")) if a["type"] == "Binary"))')
file "$bin" 2>/dev/null | grep -q "statically linked" || { file "$bin" >&2; echo "release-check: $bin is not static" >&2; exit 1; }
out=$("$bin" version)
echo "$bin version: $out"
rev=$(git rev-parse HEAD)
case "$out" in
  *"revision $rev"*) ;;
  *) echo "release-check: ferry version does not name HEAD ($rev)" >&2; exit 1 ;;
esac
