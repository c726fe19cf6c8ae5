#!/usr/bin/env bash
# Adds MedPLIB Studio (this unpacked folder) to the current user's desktop menu. Nothing is
# copied: move the folder first if you want it elsewhere (e.g. ~/.local/opt), then run this.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/medplib-studio.png" "$icons/medplib-studio.png"
sed -e "s|^Exec=medplib-studio|Exec=\"$here/medplib-studio/medplib-studio\"|" \
    -e "s|^Icon=.*|Icon=medplib-studio|" "$here/medplib-studio.desktop" > "$apps/medplib-studio.desktop"
echo "installed $apps/medplib-studio.desktop (run: $here/medplib-studio/medplib-studio)"
