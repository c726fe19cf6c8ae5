#!/usr/bin/env bash
# Adds a desktop-menu entry for the current user that runs the project's medplib-studio.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MEDPLIB_STUDIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/medplib-studio/venv}"
dest="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mkdir -p "$dest"
sed "s|^Exec=medplib-studio|Exec=$venv/bin/medplib-studio|" "$here/installers/linux/medplib-studio.desktop" \
  > "$dest/medplib-studio.desktop"
echo "installed $dest/medplib-studio.desktop"
