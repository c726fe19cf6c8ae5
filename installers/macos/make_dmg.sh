#!/usr/bin/env bash
# Packs a (signed or unsigned) .app into a compressed disk image with a link to /Applications.
#   bash installers/macos/make_dmg.sh "build/dist/MedPLIB Studio.app" build/MedPLIB-Studio.dmg
set -euo pipefail
app="$1"; out="$2"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
hdiutil create -volname "MedPLIB Studio" -srcfolder "$stage" -format UDZO -ov "$out"
