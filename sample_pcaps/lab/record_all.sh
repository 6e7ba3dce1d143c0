#!/usr/bin/env bash
# Record every lab scenario again (root, Linux with network namespaces; nginx, tcpdump,
# tshark, python3 with requests/aiohttp/httpx/h2/gunicorn, tinyproxy, squid, openssl).
# Each scenario cleans up after itself; a failing one is reported and the rest go on.
set -u
cd "$(dirname "$0")"
fail=0
for s in la-*.py; do
  [ "$s" = la-lib.py ] && continue
  echo "== $s"; timeout 180 python3 "$s" || { echo "FAILED: $s"; fail=1; }
done
for s in lb-*.sh; do
  echo "== $s"; timeout 180 bash "$s" || { echo "FAILED: $s"; fail=1; }
done
echo "== core captures (tests/captures/real)"; timeout 300 bash record_core.sh || fail=1
exit $fail
