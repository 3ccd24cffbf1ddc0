#!/usr/bin/env bash
# The browser tests drive Debian's headless Chromium. Install it when it is
# missing and apt can; otherwise say exactly what is missing and fail.
set -euo pipefail
bin=${FERRY_CHROMIUM:-/usr/bin/chromium}
[ -x "$bin" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "installing chromium for the browser tests (apt-get install chromium)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
	[ -x "$bin" ] && exit 0
fi
echo "make test: the browser tests need headless Chromium at $bin (apt-get install chromium, or set FERRY_CHROMIUM)" >&2
exit 1
