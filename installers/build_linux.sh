#!/usr/bin/env bash
# Builds the light MedPLIB Studio for Linux (no Python, no PyTorch needed where it runs) and
# smoke-tests it outside any virtual environment:
#
#   bash installers/build_linux.sh            # -> $BUILD/medplib-studio-VERSION-linux-x86_64.tar.gz
#
# BUILD is $MEDPLIB_BUILD_DIR or ~/.cache/medplib-studio/build (never inside the repository).
# Steps: LiteMedSAM model files from the real weights, checked against eager PyTorch
# (`medplib-studio lite-models build`, reused while the weights are the same); PyInstaller with
# installers/medplib_studio.spec; a tarball with the folder, a desktop entry, an icon and
# install.sh; then, with `env -i` and PATH=/usr/bin:/bin and an empty HOME (a fresh machine):
# --version, `info` on pydicom's CT, `segment` with a box (mask equal to the full install's
# at the same precision), and the window under Xvfb drawing a box, with a screenshot.
# Sizes and times go to $BUILD/numbers.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MEDPLIB_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/medplib-studio/build}"
venv="${MEDPLIB_STUDIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/medplib-studio/venv}"
[ -x "$venv/bin/python" ] || venv="$(bash "$here/scripts/setup.sh")"
py="$venv/bin/python"
export PYTHONPATH="$here"
version="$("$py" -c 'import medplib_core; print(medplib_core.__version__)')"
name="medplib-studio-$version-linux-$(uname -m)"
mkdir -p "$build"
say() { printf '== %s\n' "$*" >&2; }

# 1. model files (the weights' checksum decides whether the folder is still current)
sha="$("$py" -c 'from medplib_core.engines.litemedsam_model import weights_path, file_sha256; print(file_sha256(weights_path()))')"
have="$("$py" -m medplib_core.cli.main lite-models show "$build/lite_models" 2>/dev/null \
        | "$py" -c 'import json,sys; print(json.load(sys.stdin)["weights_sha256"])' 2>/dev/null || true)"
if [ "$have" != "$sha" ]; then
  say "building LiteMedSAM model files (checked against eager PyTorch)"
  nice -n 5 "$py" -m medplib_core.cli.main lite-models build "$build/lite_models" >/dev/null
fi

# 2. freeze
say "PyInstaller"
"$py" "$here/installers/make_icon.py" "$build/medplib-studio.png"
start=$(date +%s)
MEDPLIB_LITE_MODELS_SRC="$build/lite_models" MEDPLIB_ICON="$build/medplib-studio.png" nice -n 5 \
  "$py" -m PyInstaller --noconfirm --log-level WARN --distpath "$build/dist" --workpath "$build/work" \
  "$here/installers/medplib_studio.spec"
freeze_s=$(( $(date +%s) - start ))

# 3. package: the folder, a desktop entry and icon, and an installer for the user's menu
stage="$build/stage/$name"
rm -rf "$build/stage" && mkdir -p "$stage"
cp -a "$build/dist/medplib-studio" "$stage/medplib-studio"
cp "$build/medplib-studio.png" "$stage/medplib-studio.png"
cp "$here/installers/linux/medplib-studio.desktop" "$stage/medplib-studio.desktop"
cp "$here/installers/linux/install.sh" "$stage/install.sh"
tarball="$build/$name.tar.gz"
tar -C "$build/stage" -czf "$tarball" "$name"

# 4. smoke test on a "fresh machine": no venv, clean PATH, empty HOME, bundle unpacked anew
say "smoke test (env -i, PATH=/usr/bin:/bin)"
smoke="$(mktemp -d "${TMPDIR:-/tmp}/medplib-smoke.XXXXXX")"
xvfb_pid=""
cleanup() { [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null; rm -rf "$smoke"; }
trap cleanup EXIT
mkdir -p "$smoke/home"
tar -C "$smoke" -xzf "$tarball"
bin="$smoke/$name/medplib-studio/medplib-studio"
ct="$("$py" -c 'from pydicom.data import get_testdata_file as g; print(g("CT_small.dcm"))')"
clean=(env -i PATH=/usr/bin:/bin HOME="$smoke/home" LANG=C.UTF-8)
"${clean[@]}" "$bin" --version
"${clean[@]}" "$bin" info "$ct" --json > "$smoke/info.json"
"$py" -m medplib_core.cli.main info "$ct" --json > "$smoke/info_full.json"
box=(--box 30 30 100 100)
"${clean[@]}" MEDPLIB_ENCODER_PRECISION=f32 MEDPLIB_DECODER_PRECISION=f32 "$bin" segment "$ct" "${box[@]}" \
  --out "$smoke/light.nii.gz" > "$smoke/light.json"
MEDPLIB_ENCODER_PRECISION=f32 MEDPLIB_DECODER_PRECISION=f32 "$py" -m medplib_core.cli.main segment "$ct" "${box[@]}" \
  --out "$smoke/full.nii.gz" > "$smoke/full.json"
"$py" -m medplib_core.cli.main segment "$ct" "${box[@]}" --out "$smoke/full_auto.nii.gz" > /dev/null
"$py" - "$smoke" <<'EOF'
import json, sys
from pathlib import Path
import nibabel as nib
import numpy as np
d = Path(sys.argv[1])
a, b, c = (np.asarray(nib.load(d / f).dataobj) > 0 for f in ("light.nii.gz", "full.nii.gz", "full_auto.nii.gz"))
assert a.any(), "the bundle's mask is empty"
assert np.array_equal(a, b), f"bundle and full install differ at fp32: {int((a ^ b).sum())} voxels"
dice = 2 * (a & c).sum() / (a.sum() + c.sum())
info = json.loads((d / "info.json").read_text())
assert info == json.loads((d / "info_full.json").read_text()), "`info` differs from the full install's"
print(f"info: size {info['size_ijk']} as in the full install; segment: {int(a.sum())} voxels, equal to the full install (fp32); "
      f"Dice vs the full install's default precision {dice:.4f}")
(d / "dice.txt").write_text(f"{dice:.4f}")
EOF

# the window under Xvfb: open the CT, draw a box with LiteMedSAM, screenshot
hook="$smoke/hook.py"
cat > "$hook" <<'EOF'
import os, time
from PySide6.QtGui import QGuiApplication
assert wait_until(lambda: window.session.volume is not None, 120), "the scan did not load"
usable = time.time()
assert wait_until(lambda: window.engine.ready or window.engine.state == "error", 300), "engine"
assert window.engine.ready, f"engine state {window.engine.state}"
ready = time.time()
window.resize(1280, 800); window.move(0, 0); wait(200)
cv = window.viewer.active.canvas
QTest.keyClick(cv, Qt.Key.Key_B)
t0 = time.time()
drag(cv, image_point(cv, 30, 30), image_point(cv, 100, 100))
assert wait_until(lambda: window.session.proposal is not None and window.engine.pending is None, 120)
mask_s = time.time() - t0
wait(500)
QGuiApplication.primaryScreen().grabWindow(0).save(os.environ["SHOT"])
print(f"TIMES usable={usable} ready={ready} box_mask_s={mask_s:.3f}", flush=True)
window.close()
EOF
Xvfb_out="$smoke/xvfb.display"
Xvfb -displayfd 1 -screen 0 1280x800x24 -nolisten tcp > "$Xvfb_out" 2>/dev/null &
xvfb_pid=$!
for _ in $(seq 100); do [ -s "$Xvfb_out" ] && break; sleep 0.1; done
display=":$(head -n1 "$Xvfb_out")"
rm -rf "$smoke/home" && mkdir -p "$smoke/home"   # first use: no OpenVINO cache, no settings
t_launch=$(date +%s.%N)
"${clean[@]}" DISPLAY="$display" QT_QPA_PLATFORM=xcb MEDPLIB_STUDIO_HOOK="$hook" SHOT="$build/window.png" \
  "$bin" gui "$ct" > "$smoke/gui.out" 2> "$smoke/gui.err" || { cat "$smoke/gui.out" "$smoke/gui.err" >&2; exit 1; }
grep -q '^TIMES' "$smoke/gui.out" || { cat "$smoke/gui.out" "$smoke/gui.err" >&2; exit 1; }
kill "$xvfb_pid" && wait "$xvfb_pid" 2>/dev/null || true
xvfb_pid=""

# 5. numbers
"$py" - "$build" "$tarball" "$stage" "$t_launch" "$freeze_s" "$(cat "$smoke/dice.txt")" "$smoke/gui.out" <<'EOF'
import json, os, re, sys
from pathlib import Path
build, tarball, stage, t_launch, freeze_s, dice, gui_out = sys.argv[1:]
times = dict(re.findall(r"(\w+)=([\d.]+)", next(l for l in open(gui_out) if l.startswith("TIMES"))))
installed = sum(f.stat().st_size for f in Path(stage).rglob("*") if f.is_file() and not f.is_symlink())
numbers = {
    "bundle_compressed_mb": round(os.path.getsize(tarball) / 2**20, 1),
    "installed_mb": round(installed / 2**20, 1),
    "cold_start_to_usable_window_s": round(float(times["usable"]) - float(t_launch), 2),
    "cold_start_to_engine_ready_s": round(float(times["ready"]) - float(t_launch), 2),
    "first_box_to_mask_s": float(times["box_mask_s"]),
    "launch_to_first_mask_s": round(float(times["ready"]) - float(t_launch) + float(times["box_mask_s"]), 2),
    "dice_vs_full_install_default": float(dice),
    "freeze_s": int(freeze_s), "tarball": tarball, "screenshot": str(Path(build) / "window.png"),
}
(Path(build) / "numbers.json").write_text(json.dumps(numbers, indent=1))
print(json.dumps(numbers, indent=1))
EOF
say "done: $tarball"
