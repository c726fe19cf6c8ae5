"""The 3D pane in the real window on an X display (Xvfb, Mesa llvmpipe): a 3D-ball brush stroke
gives a label surface in world coordinates, coloured like the label and framed by the camera; a
second stroke and an undo mesh it again on the worker while the event loop keeps running."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from studio_support import stacked_ct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

pytestmark = [pytest.mark.gui, pytest.mark.xvfb, pytest.mark.timeout(300)]

HOOK = r'''
import json
import numpy as np
from PySide6.QtCore import QPoint, QTimer
from app.surface_view import labelled_world_box
assert wait_until(lambda: window.session.volume is not None, 120), "the scan did not load"
window.resize(1280, 820)
window.raise_(); window.activateWindow()
wait_until(lambda: app.activeWindow() is window, 10)
ext = window.extension("analysis")
pane = ext.surface
info = {"available": pane.available, "reason": pane.reason}
cv = window.viewer.active.canvas
QTest.keyClick(cv, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)  # 2x2: the fourth cell is the 3D pane
wait(300)
QTest.keyClick(cv, Qt.Key.Key_D)
for _ in range(3):
    QTest.keyClick(cv, Qt.Key.Key_BracketRight)  # 10 mm up to about 20
QTest.mouseClick(ext.options.ball, Qt.MouseButton.LeftButton)
info["brush_mm"] = window.tools.brush_size
s = window.session

def settled():
    return pane._task is None and not pane.timer.isActive() and all(
        pane._meshed.get(v) == n for v, n in s.counts.items())

def state():
    surf = pane.surfaces.get(1)
    return {"counts": dict(s.counts), "items": sorted(pane.items),
            "verts_min": surf.vertices.min(axis=0).tolist() if surf else None,
            "verts_max": surf.vertices.max(axis=0).tolist() if surf else None,
            "mesh_ml": surf.enclosed_volume_mm3() / 1000 if surf else None,
            "voxel_ml": s.counts.get(1, 0) * s.volume.voxel_volume_ml}

ticks = []
timer = QTimer(); timer.timeout.connect(lambda: ticks.append(1)); timer.start(20)
QTest.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 45, 60))
assert wait_until(settled, 120), "surfaces"
wait(500)
info["first"] = state()
lo, hi = labelled_world_box(s.volume, s.labelmap.array)
c = pane.gl.opts["center"]
info["camera_centre"] = [c.x(), c.y(), c.z()]
info["box_centre"] = ((lo + hi) / 2).tolist()
info["camera_distance"] = float(pane.gl.opts["distance"])
info["box_size"] = float((hi - lo).max())
from PySide6.QtGui import QImage
img = pane.gl.grabFramebuffer().convertToFormat(QImage.Format.Format_RGB32)
arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[:, :img.width(), 2::-1]
lit = arr[np.abs(arr.astype(int) - (18, 18, 22)).sum(axis=2) > 30]
info["lit_pixels"] = int(len(lit))
info["lit_mean"] = lit.mean(axis=0).tolist() if len(lit) else None
info["label_colour"] = list(s.labels.get(1).color)
# the user turns the camera with a mouse drag, then "Reset view" frames the surfaces again
def camera():
    o = pane.gl.opts
    return {"azimuth": float(o["azimuth"]), "elevation": float(o["elevation"]), "distance": float(o["distance"]),
            "centre": [o["center"].x(), o["center"].y(), o["center"].z()]}
info["reset_enabled"] = pane.reset_button.isEnabled()
# the main window stays on raster composition with the GL pane in it (a render-to-texture GL
# widget would make every repaint of every widget a full-window GL frame)
info["main_surface"] = window.windowHandle().surfaceType().name
info["pane_surface"] = pane.gl.surfaceType().name if hasattr(pane.gl, "surfaceType") else type(pane.gl).__name__
g = pane.gl
mid = g.rect().center()
QTest.mousePress(g, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, mid)
for n in range(1, 9):
    QTest.mouseMove(g, mid + QPoint(12 * n, 6 * n))
    wait(15)
QTest.mouseRelease(g, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, mid + QPoint(96, 48))
g.opts["distance"] *= 2.5  # and zooms out
info["turned"] = camera()
QTest.mouseClick(pane.reset_button, Qt.MouseButton.LeftButton)
info["reset"] = camera()
verts = np.concatenate([x.vertices for x in pane.surfaces.values()])
info["surface_centre"] = ((verts.min(axis=0) + verts.max(axis=0)) / 2).tolist()
info["surface_size"] = float((verts.max(axis=0) - verts.min(axis=0)).max())
ticks.clear()
QTest.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 85, 60))  # the same label, further right
assert wait_until(settled, 120), "surfaces after the second stroke"
info["ticks_while_meshing"] = len(ticks)
info["second"] = state()
QTest.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
assert wait_until(settled, 120), "surfaces after undo"
info["undone"] = state()
print("INFO " + json.dumps(info), flush=True)
print("SHOT", flush=True)
window.close_discarding()
'''


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_ball_strokes_give_framed_label_surfaces_updated_on_the_worker(tmp_path):
    pytest.importorskip("pyqtgraph.opengl")
    from screenshot import run_hooked_app, shot_session

    scan = stacked_ct(tmp_path / "ct.nii.gz")
    with shot_session(size="1280x900x24", prefix="medplib-surface-") as (tmp, display):
        proc = run_hooked_app(HOOK, [str(scan), "--no-engine"], {"MEDPLIB_STUDIO_KEEP_RECOVERY": "0"}, tmp,
                              display, 240)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("INFO "))
    info = json.loads(line[5:])
    assert info["available"], info["reason"]
    assert info["main_surface"] == "RasterSurface" and info["pane_surface"] == "OpenGLSurface"
    first, second, undone = info["first"], info["second"], info["undone"]
    assert first["items"] == [1] and info["brush_mm"] > 15
    # the smoothed mesh encloses about the painted voxels' volume
    assert first["mesh_ml"] == pytest.approx(first["voxel_ml"], rel=0.15)
    # the camera looks at the labelled box and sees all of it
    assert np.allclose(info["camera_centre"], info["box_centre"], atol=1e-3)
    assert info["box_size"] < info["camera_distance"] < 3 * info["box_size"] + 20
    # drawn in the label's colour (lit by a headlight: the same hue, darker or lighter)
    assert info["lit_pixels"] > 500
    mean, colour = np.array(info["lit_mean"]), np.array(info["label_colour"], float)
    assert mean @ colour / (np.linalg.norm(mean) * np.linalg.norm(colour)) > 0.95
    # turned by the mouse and zoomed out; "Reset view" frames the surfaces from the front again
    turned, reset = info["turned"], info["reset"]
    assert info["reset_enabled"]
    assert abs(turned["azimuth"] - (-70)) > 5 or abs(turned["elevation"] - 25) > 5
    assert (reset["azimuth"], reset["elevation"]) == (-70, 25)
    assert np.allclose(reset["centre"], info["surface_centre"], atol=1e-3)
    assert reset["distance"] == pytest.approx(info["surface_size"] * 1.1 + 10, rel=1e-6)
    # the second ball (same label) widens the surface along the image's x; undo brings it back
    assert second["counts"][str(1)] > first["counts"][str(1)]
    assert second["verts_max"][0] - second["verts_min"][0] > first["verts_max"][0] - first["verts_min"][0] + 10
    assert info["ticks_while_meshing"] > 0  # the event loop kept running while meshing
    assert undone["counts"] == first["counts"]
    assert np.allclose(undone["verts_min"], first["verts_min"]) and np.allclose(undone["verts_max"], first["verts_max"])
