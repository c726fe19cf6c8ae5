#!/usr/bin/env bash
# Sets everything up (re-using the environment when it is current) and opens MedPLIB Studio on a
# real sample volume (mricron-data brain MRI) with the embedded LiteMedSAM engine. Extra arguments go to `medplib-studio gui`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/setup.sh" --with-xvfb)"
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--sample)
if [ "$(uname)" = "Linux" ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "No display found: starting MedPLIB Studio on a virtual display (Xvfb)." >&2
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$venv/bin/medplib-studio" gui "${args[@]}"
fi
exec "$venv/bin/medplib-studio" gui "${args[@]}"
