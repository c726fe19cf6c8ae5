#!/usr/bin/env bash
# Builds the medplib-studio wheel into dist/ using the project's virtual environment.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$here/scripts/setup.sh")"
"$venv/bin/python" -m pip wheel --no-deps -w "$here/dist" "$here"
ls -1 "$here"/dist/medplib_studio-*.whl
