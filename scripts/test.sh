#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, code health, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check orchestr agent tests bench
ruff format --check orchestr agent tests bench
echo "== mypy"
mypy
echo "== pytest"
set +e
pytest -n 2 -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
