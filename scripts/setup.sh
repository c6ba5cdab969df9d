#!/usr/bin/env bash
# Everything orchestr needs on a fresh Debian machine, as root: system packages,
# a virtualenv in .venv, and orchestr installed into it (editable, with tests).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  busybox-static   # the base of the example and test images
  iproute2         # ip netns: test hosts
  libseccomp2      # seccomp filters, loaded through ctypes
  runc             # the peer the runtime is compared with (interop tests, bench)
  skopeo           # the peer for image archives and registries (interop tests)
  umoci            # the peer that makes OCI layouts (interop tests)
  docker-registry  # a registry on loopback for pull/push tests
  openssl          # certificates for the mutual-TLS tests
  hyperfine        # bench/
  nftables         # published ports, masquerade and isolation rules (nft -f -)
  bind9-dnsutils   # dig: the real resolver client of the DNS tests
  iperf3           # bench/: network throughput
  tini             # docker run --init: /usr/bin/tini-static becomes /sbin/docker-init
  docker-compose   # the judge of the Compose loader (tests/integration/test_compose_compat.py)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
    rm -rf .venv
    "$PY" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# The build backend's warnings are noise for a user; show them only on failure.
if ! .venv/bin/pip install -q -e '.[test]' 2>.venv/pip-install.log; then
  cat .venv/pip-install.log >&2
  exit 1
fi
# Bytecode now, so no start-up compiles (PYTHONDONTWRITEBYTECODE may be set).
.venv/bin/python -m compileall -q orchestr agent >/dev/null

# The lean launcher: `orchestr runtime` runs once per container operation, so it
# starts without site (-S) and finds the package by its path, not through the
# editable install's import hook (~20 ms); orchestr/__main__.py loads site for
# every other command.
src=$(.venv/bin/python -c 'import orchestr, os; print(os.path.dirname(os.path.dirname(os.path.abspath(orchestr.__file__))))')
cat > .venv/bin/orchestr <<LAUNCHER
#!$PWD/.venv/bin/python -S
import sys
sys.path.insert(0, "$src")
from orchestr.__main__ import main
sys.exit(main())
LAUNCHER
chmod 755 .venv/bin/orchestr
echo "setup: done (.venv/bin/orchestr)"
