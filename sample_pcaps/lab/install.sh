#!/usr/bin/env bash
# Install what the lab scenarios record with (root, Debian): servers, capture tools and the
# Python clients. The tests do not need any of it (they read the recorded captures);
# tests/run.sh installs what they need.
#
#   bash sample_pcaps/lab/install.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root (apt-get, ip netns)" >&2; exit 2; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  tshark tcpdump nginx-light haproxy squid tinyproxy openssl curl ethtool iproute2 iptables >/dev/null
python3 -m pip install -q -e ".[test]"
python3 -m pip install -q "requests>=2.31" "urllib3>=2" "httpx[http2]>=0.27" "aiohttp>=3.9" "gunicorn>=21" "h2>=4"
