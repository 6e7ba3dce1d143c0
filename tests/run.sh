#!/usr/bin/env bash
# Install what the tests need and run them: the README's test command, and what .ci/run
# calls. Installs tshark (for the cross-checks), tcpdump (`pcapsense record` and `watch`
# capture for real) and chromium (the HTML report is loaded in headless Chromium) with apt
# when running as root, then the package with its test
# extras, then runs pytest with any arguments given, on one worker process per core
# (pytest-xdist: 10 minutes on 2 cores instead of 20; PYTEST_WORKERS=0 runs in one).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v tshark >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null
  else
    echo "tests/run.sh: tshark not installed and not root: the tshark cross-checks will be skipped" >&2
  fi
fi
if ! command -v tcpdump >/dev/null 2>&1 && [ ! -x /usr/sbin/tcpdump ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null
  else
    echo "tests/run.sh: tcpdump not installed and not root: the record/watch tests that capture will be skipped" >&2
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "tests/run.sh: chromium not installed and not root: the browser test will be skipped (it fails in CI)" >&2
  fi
fi
python3 -m pip install -q -e ".[test]"
exec python3 -m pytest -q -n "${PYTEST_WORKERS:-auto}" "$@"
