#!/usr/bin/env bash
# The main job: the hello stack (examples/stacks/hello/compose.yaml) brought up by
# orchestr with `orchestr up --wait`, checked over HTTP, shown, and taken down.
#
# It runs its own daemon (embedded defaults: one node, no configuration) with its state
# in a temporary directory and inside a network namespace of its own, so that your
# machine's network, /var/lib/orchestr and /run/orchestr are left as they were.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
orchestr="$top/.venv/bin/orchestr"
stack="$top/examples/stacks/hello/compose.yaml"
work=$(mktemp -d /tmp/orchestr-hello.XXXXXX)
ns="orchestr-hello-$$"
sock="$work/orchestr.sock"
export ORCHESTR_HOST="unix://$sock"
export ORCHESTR_CACHE_DIR="$work/cache"   # the loader's cache of valid stacks
daemon=""

in_ns() { nsenter --net="/run/netns/$ns" "$@"; }

cleanup() {
  set +e
  if [ -n "$daemon" ]; then
    in_ns "$orchestr" down -f "$stack" -t 1 >/dev/null 2>&1
    kill -TERM "$daemon" 2>/dev/null
    wait "$daemon" 2>/dev/null
  fi
  ip netns delete "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
"$top/.venv/bin/python" -m agent.images.busybox --image --data-root "$work/data" >/dev/null
# nsenter execs the daemon in place: $! is the daemon itself, which cleanup stops
nsenter --net="/run/netns/$ns" "$orchestr" daemon --host "$ORCHESTR_HOST" \
  --data-root "$work/data" --exec-root "$work/exec" --cgroup-parent "/orchestr-hello-$$" \
  >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "the daemon did not start; its log:" >&2; cat "$work/daemon.log" >&2; exit 1; }

echo "== orchestr up -f examples/stacks/hello/compose.yaml --wait"
in_ns "$orchestr" up -f "$stack" --wait --wait-timeout 60
echo "== GET http://127.0.0.1:8080/hostname (the web service's published port)"
in_ns busybox wget -qO- http://127.0.0.1:8080/hostname
echo "== orchestr compose ps"
in_ns "$orchestr" compose -f "$stack" ps --all
echo "== orchestr compose logs client (it fetched the page from web by its service name)"
in_ns "$orchestr" compose -f "$stack" logs --no-log-prefix client
echo "== orchestr down"
in_ns "$orchestr" down -f "$stack" -t 1
