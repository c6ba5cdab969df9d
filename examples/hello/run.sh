#!/usr/bin/env bash
# The example: a busybox container run by orchestr's own runtime.
# (Becomes `orchestr up -f examples/stacks/hello/compose.yaml` with the Compose stage.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
orchestr="$top/.venv/bin/orchestr"
work=$(mktemp -d /tmp/orchestr-hello.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$top/.venv/bin/python" -m agent.images.busybox "$work/rootfs"
cd "$work"
"$orchestr" runtime spec
"$top/.venv/bin/python" - config.json <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = ["sh", "-c",
    "echo \"hello from $(hostname), pid $$ of its own namespace\"; "
    "echo \"processes it can see: $(ls /proc | grep -c '^[0-9]')\"; "
    "echo \"network links: $(ls /sys/class/net)\""]
json.dump(config, open(path, "w"), indent=2)
PY
"$orchestr" runtime --root "$work/state" run "hello-$$"
