#!/usr/bin/env bash
# ensure-tool.sh PROGRAM PACKAGE WHY: the tests need PROGRAM (from Debian's
# PACKAGE). Install it when it is missing and apt can; otherwise say exactly
# what is missing and fail.
set -euo pipefail
prog=$1 pkg=$2 why=$3
command -v "$prog" >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "installing $pkg for $why (apt-get install $pkg)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null; }
	command -v "$prog" >/dev/null && exit 0
fi
echo "make test: $why need $prog on PATH (apt-get install $pkg)" >&2
exit 1
