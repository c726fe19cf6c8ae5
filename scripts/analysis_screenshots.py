"""Screenshots of the analysis tools in the real window under Xvfb (issue 14).

    python scripts/analysis_screenshots.py --out out/analysis [--scan DICOM_DIR --labels LABELS]

Opens the shared CT series (512×512×20, DICOM) with its 32-label map (placed by world
coordinates), then through real input events: the 2×2 layout with the crosshair set by
Shift+move (``crosshair.png``), a ruler and an ellipse ROI (``measure.png``), the Statistics
panel (``stats.png``), labels drawn as outlines (``outline.png``) and the 3D pane once the
surfaces are in (``3d.png``). Grabs the X screen each time. Prints the PNG paths and a JSON line
("INFO ...") with what the window showed. Needs ../shared/data (or --scan/--labels) and Xvfb.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "volumes"

HOOK = r'''
import json, os
from PySide6.QtGui import QGuiApplication
from PySide6.QtCore import QPoint
out = os.environ["SHOT_DIR"]
info = {}

def shot(name):
    wait(600)
    QGuiApplication.primaryScreen().grabWindow(0).save(os.path.join(out, name))

assert wait_until(lambda: window.session.volume is not None, 120), "the scan did not load"
window.resize(1400, 860)
window.move(0, 0)
window.files.import_labels(os.environ["SHOT_LABELS"])
assert wait_until(lambda: len(window.session.counts) > 20, 120), "the labels did not import"
ext = window.extension("analysis")
window.raise_()
window.activateWindow()  # the load's progress box had the focus; shortcuts need the window active
assert wait_until(lambda: app.activeWindow() is window, 10), "the window is not active"
info["labels"] = len(window.session.labels)
info["gl"] = ext.surface.reason or "ok"
from PySide6.QtWidgets import QToolBar
main_bar = window.findChild(QToolBar, "main_toolbar")
QTest.mouseClick(main_bar.widgetForAction(window.actions_by_name["layout_grid"]), Qt.MouseButton.LeftButton)  # 2×2
wait(400)
ax = window.viewer.views[0]
cv = ax.canvas
QTest.keyClick(cv, Qt.Key.Key_C)  # crosshair on
info["crosshair_shown"] = ext.crosshair.enabled
h, w = cv.shape
# Shift + move over the liver (left of the image = patient's right)
target = image_point(cv, w * 0.30, h * 0.45)
QTest.mouseMove(cv, target)
from PySide6.QtGui import QMouseEvent
from PySide6.QtCore import QEvent, QPointF
ev = QMouseEvent(QEvent.Type.MouseMove, QPointF(target), cv.mapToGlobal(QPointF(target)), Qt.MouseButton.NoButton,
                 Qt.MouseButton.NoButton, Qt.KeyboardModifier.ShiftModifier)
app.sendEvent(cv, ev)
wait(300)
c = ext.crosshair.cursor
info["cursor_voxel"] = list(c.voxel) if c.voxel else None
info["cursor_label"] = int(window.session.labelmap.array[c.voxel[2], c.voxel[1], c.voxel[0]]) if c.voxel else None
info["views"] = {v.orientation: v.index for v in window.viewer.views}
shot("crosshair.png")
# a ruler across the liver and an ellipse ROI in it
QTest.keyClick(cv, Qt.Key.Key_M)
drag(cv, image_point(cv, w * 0.18, h * 0.40), image_point(cv, w * 0.42, h * 0.52))
QTest.keyClick(cv, Qt.Key.Key_R)
drag(cv, image_point(cv, w * 0.24, h * 0.52), image_point(cv, w * 0.33, h * 0.62))
info["measurements"] = [m.to_dict() for m in window.session.measurements]
info["measured"] = window.session.measurements.results()
shot("measure.png")
# the statistics panel in front, label rows computed
dock = window.docks["stats_dock"]
dock.show(); dock.raise_()
assert wait_until(lambda: len(ext.stats.rows) > 20, 120), "statistics"
info["stats_rows"] = len(ext.stats.rows)
window.resizeDocks([window.labels_dock], [720], Qt.Orientation.Horizontal)  # room for the columns, as a user drags it
shot("stats.png")
window.resizeDocks([window.labels_dock], [420], Qt.Orientation.Horizontal)
# outlines
ext.controls.mode.setCurrentIndex(1)
wait(300)
shot("outline.png")
# the 3D pane: surfaces of every label
if ext.surface.available:
    assert wait_until(lambda: len(ext.surface.items) >= len(window.session.counts) and ext.surface._task is None, 300), "surfaces"
    info["surfaces"] = len(ext.surface.items)
    gl = ext.surface.gl
    r = gl.rect()
    info["camera_before"] = [gl.opts["azimuth"], gl.opts["elevation"]]
    drag(gl, QPoint(r.width() // 2, r.height() // 2), QPoint(r.width() // 2 + 40, r.height() // 2 + 30))  # rotate
    info["camera_after"] = [gl.opts["azimuth"], gl.opts["elevation"]]
    wait(800)
shot("3d.png")
info["three_d_cell"] = [ext.fourth.mapTo(window, QPoint(0, 0)).x(), ext.fourth.mapTo(window, QPoint(0, 0)).y(),
                        ext.fourth.width(), ext.fourth.height()]
print("INFO " + json.dumps(info), flush=True)
print("SHOT", out, flush=True)
window.close_discarding() if hasattr(window, "close_discarding") else window.close()
'''


def take(out: Path, scan: Path = SHARED / "ct_series_j2k", labels: Path = SHARED / "ct_series_j2k_labels.nii.gz",
         timeout: float = 600) -> tuple[list[Path], str]:
    """Run the app under Xvfb; the PNG paths and the INFO JSON text."""
    import screenshot as shots  # scripts/screenshot.py (this script's folder is on sys.path)
    out.mkdir(parents=True, exist_ok=True)
    with shots.shot_session(size="1440x900x24", prefix="medplib-analysis-") as (tmp, display):
        proc = shots.run_hooked_app(HOOK, [str(scan), "--no-engine"],
                                    {"SHOT_DIR": str(out.resolve()), "SHOT_LABELS": str(labels),
                                     "MEDPLIB_STUDIO_KEEP_RECOVERY": "0"}, tmp, display, timeout)
    info = next((line[5:] for line in proc.stdout.splitlines() if line.startswith("INFO ")), "{}")
    names = ("crosshair.png", "measure.png", "stats.png", "outline.png", "3d.png")
    return [out / n for n in names], info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/analysis")
    p.add_argument("--scan", default=str(SHARED / "ct_series_j2k"))
    p.add_argument("--labels", default=str(SHARED / "ct_series_j2k_labels.nii.gz"))
    a = p.parse_args(argv)
    paths, info = take(Path(a.out), Path(a.scan), Path(a.labels))
    for path in paths:
        print(path)
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
