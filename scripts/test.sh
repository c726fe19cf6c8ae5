#!/usr/bin/env bash
# Sets everything up (re-using the environment when it is current) and runs the whole test suite.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/setup.sh" --with-xvfb)"
cd "$here"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export PYTHONDONTWRITEBYTECODE=1
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider --timeout=900 --durations=15 "$@"  # the slowest tests: CI stays under 30 min
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "no tests were collected" >&2
  exit 1
fi
exit "$rc"
