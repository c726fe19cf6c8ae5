#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs everything into it.
# Re-runnable: a second run only checks that the environment is current.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MEDPLIB_STUDIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/medplib-studio/venv}"
python="${PYTHON:-python3}"
want_xvfb="${1:-}"

log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages for a real Qt window on a virtual display (Xvfb) and Qt's xcb platform.
debs=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xkb1
      libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0 libxcb-xinerama0 libxcb-cursor0
      libegl1 libgl1 libfontconfig1 libdbus-1-3 x11-apps)
# A real PACS for the DICOMweb tests: Orthanc and its DICOMweb plugin (the tests start their own
# Orthanc on free ports; the system service the package may start is stopped again below).
pacs_debs=(orthanc orthanc-dicomweb)
# The sample volume `medplib-studio --sample` opens: the Colin 27 brain MRI of MRIcron's templates.
pacs_debs+=(mricron-data)
if [ "$want_xvfb" = "--with-xvfb" ] && command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for d in "${debs[@]}" "${pacs_debs[@]}"; do
    dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages for a virtual display and the test PACS: ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" orthanc "* ]] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-active --quiet orthanc 2>/dev/null; then
      log "stopping the Orthanc system service the package started (the tests run their own)"
      $sudo_cmd systemctl disable --now orthanc >/dev/null 2>&1 || true
    fi
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment at $venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi

stamp="$venv/.medplib-studio-stamp"
digest="$(cat "$here/pyproject.toml" "$here/scripts/setup.sh" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  log "installing torch + torchvision as a matched pair from the registry"
  # torchvision pins the torch it was built against; installing both in one
  # resolve keeps them matched (never mix with a local CPU-only torch wheel).
  "$venv/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.2"
  log "installing medplib-studio and its dependencies"
  "$venv/bin/python" -m pip install -q -e "$here[test,cluster]"
  if "$venv/bin/python" -m pip show opencv-python >/dev/null 2>&1; then
    log "removing opencv-python (only opencv-python-headless is allowed)"
    "$venv/bin/python" -m pip uninstall -q -y opencv-python
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps opencv-python-headless
  fi
  echo "$digest" > "$stamp"
else
  "$venv/bin/python" -m pip install -q --no-deps -e "$here" >/dev/null
fi
echo "$venv"
