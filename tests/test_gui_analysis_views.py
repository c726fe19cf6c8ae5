"""Issue 14 in the real window (model-free engine, offscreen): the linked-view crosshair, ruler and
ROI measurements (undo, project, sidecar), the Statistics panel (worker, updates after edits,
jump to a label) and fill between slices. Driven by real mouse and key events."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.automation import image_point  # noqa: E402
from app.crosshair import VIEW_COLOURS  # noqa: E402
from medplib_core.analysis.interpolate import fill_between_slices  # noqa: E402
from medplib_core.analysis.stats import label_statistics  # noqa: E402
from medplib_core.analysis.views import cursor_at_view, cursor_at_world  # noqa: E402
from medplib_core.export import sidecar_path  # noqa: E402
from studio_support import stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]


@pytest.fixture
def win(make_window, tmp_path):
    return make_window(scan=stacked_ct(tmp_path / "ct.nii.gz"))


def drag(qtbot, canvas, a, b, button=Qt.MouseButton.LeftButton, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.mousePress(canvas, button, modifier, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(canvas, a + (b - a) * (n / 5))
    qtbot.mouseRelease(canvas, button, modifier, pos=b)


def shift_hover(canvas, pos) -> None:
    """The pointer moving over the image with Shift held (no button)."""
    ev = QMouseEvent(QEvent.Type.MouseMove, QPointF(pos), canvas.mapToGlobal(QPointF(pos)), Qt.MouseButton.NoButton,
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.ShiftModifier)
    QApplication.sendEvent(canvas, ev)


def paint_disc(qtbot, w, view, index, cx, cy):
    view.set_index(index)
    cv = view.canvas
    qtbot.keyClick(cv, Qt.Key.Key_D)
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, cx, cy))


def shown_statistics(qtbot, w):
    """The Statistics dock shown, once its table holds the one painted label."""
    dock = w.docks["stats_dock"]
    dock.show()
    dock.raise_()
    panel = w.extension("analysis").stats
    qtbot.waitUntil(lambda: len(panel.rows) == 1 and not panel.job.busy, timeout=20000)
    return panel


def test_crosshair_links_the_three_views_and_survives_the_layout(qtbot, win):
    w = win
    ext = w.extension("analysis")
    ax, cor, sag = w.viewer.views
    qtbot.keyClick(ax.canvas, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)  # 2×2
    assert w.viewer.layout_mode == "grid" and ext.fourth.isVisible()
    qtbot.keyClick(ax.canvas, Qt.Key.Key_C)
    assert ext.crosshair.enabled and w.actions_by_name["crosshair"].isChecked()
    # Shift + move over the axial view: every view goes to the voxel under the pointer
    shift_hover(ax.canvas, image_point(ax.canvas, 40.5, 70.5))
    vol = w.session.volume
    want = cursor_at_view(vol, "axial", ax.index, 70.0, 40.0)
    assert ext.crosshair.cursor.voxel == want.voxel
    assert (cor.index, sag.index) == (want.views["coronal"].index, want.views["sagittal"].index)
    # the reference lines are drawn where the other slices cut this view (coronal: a row), on
    # the screen pixel that holds the voxel centre (the 2×2 cells scale by a fraction)
    ax.canvas.repaint()
    img = ax.canvas.grab().toImage()
    y = math.floor(ax.canvas.to_screen(0, want.views["axial"].row + 0.5).y())
    x_far = math.floor(ax.canvas.to_screen(5.5, 0).x())  # on the line, away from the cursor gap
    assert img.pixelColor(x_far, y) == VIEW_COLOURS["coronal"]
    assert img.pixelColor(x_far, y - 1) != VIEW_COLOURS["coronal"] != img.pixelColor(x_far, y + 1)  # 1 px
    x = math.floor(ax.canvas.to_screen(want.views["axial"].col + 0.5, 0).x())
    y_far = math.floor(ax.canvas.to_screen(0, 5.5).y())
    assert img.pixelColor(x, y_far) == VIEW_COLOURS["sagittal"]
    assert img.pixelColor(x - 1, y_far) != VIEW_COLOURS["sagittal"] != img.pixelColor(x + 1, y_far)
    # a navigate click on the coronal view moves the axial slice; scrolling moves the cursor
    qtbot.keyClick(cor.canvas, Qt.Key.Key_V)
    qtbot.mouseClick(cor.canvas, Qt.MouseButton.LeftButton, pos=image_point(cor.canvas, 60.5, 3.5))
    want = cursor_at_view(vol, "coronal", cor.index, 3.0, 60.0)
    assert ax.index == want.views["axial"].index and ext.crosshair.cursor.voxel == want.voxel
    qtbot.keyClick(ax.canvas, Qt.Key.Key_Down)
    assert ext.crosshair.cursor.views["axial"].index == ax.index
    # the single layout keeps the position: Alt+2 shows the coronal slice through the cursor
    qtbot.keyClick(ax.canvas, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)
    assert w.viewer.layout_mode == "single"
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)
    single = w.viewer.active
    assert single.orientation == "coronal" and single.index == ext.crosshair.cursor.views["coronal"].index
    # C hides the lines, the cursor stays
    qtbot.keyClick(single.canvas, Qt.Key.Key_C)
    assert not ext.crosshair.enabled and ext.crosshair.cursor is not None
    # the offscreen platform has no OpenGL: the 3D pane says so
    assert not ext.surface.available and "OpenGL" in ext.surface.message.text()


def test_ruler_and_roi_measure_undo_save_and_export(qtbot, win, tmp_path):
    w = win
    cv = w.viewer.active.canvas
    vol = w.session.volume
    g = w.viewer.active.geometry()
    qtbot.keyClick(cv, Qt.Key.Key_M)
    assert w.tools.tool == "ruler"
    drag(qtbot, cv, image_point(cv, 20.5, 30.5), image_point(cv, 80.5, 30.5))
    ruler = w.session.measurements[0]
    assert ruler.kind == "ruler" and ruler.start == pytest.approx((30, 20), abs=0.2)  # screen pixel rounding
    length = ruler.length(vol)
    (r0, c0), (r1, c1) = ruler.start, ruler.end
    assert length == pytest.approx(np.hypot((r1 - r0) * g.pixel_spacing[0], (c1 - c0) * g.pixel_spacing[1]))
    # an ellipse ROI: the statistics of the pixel centres inside it, in the scan's unit
    qtbot.keyClick(cv, Qt.Key.Key_R)
    drag(qtbot, cv, image_point(cv, 40.5, 50.5), image_point(cv, 70.5, 90.5))
    roi = w.session.measurements[1]
    assert roi.shape == "ellipse"
    rows, cols = np.mgrid[:g.shape[0], :g.shape[1]]
    (r0, c0), (r1, c1) = roi.corner0, roi.corner1
    inside = ((rows - (r0 + r1) / 2) / ((r1 - r0) / 2)) ** 2 + ((cols - (c0 + c1) / 2) / ((c1 - c0) / 2)) ** 2 <= 1
    values = g.take(vol.array)[inside].astype(float)
    st = roi.statistics(vol)
    assert st.mean == pytest.approx(values.mean()) and st.min == values.min() and st.units == vol.units
    assert st.area == pytest.approx(np.pi / 4 * abs(r1 - r0) * abs(c1 - c0) * np.prod(g.pixel_spacing), rel=1e-6)
    ext = w.extension("analysis")
    text = ext.measure.label(roi)
    assert f"mean {values.mean():.1f}" in text[0] and "mm²" in text[2]  # HU on a CT: tests/test_gui_analysis_labels.py
    assert ext.stats.measure_table.rowCount() == 2
    # drag the ruler's end: the same ruler, longer; undo brings the old end back
    qtbot.keyClick(cv, Qt.Key.Key_M)
    drag(qtbot, cv, image_point(cv, 80.5, 30.5), image_point(cv, 100.5, 30.5))
    assert len(w.session.measurements) == 2 and w.session.measurements[0].end[1] == pytest.approx(100, abs=0.2)
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.session.measurements[0].end[1] == pytest.approx(80, abs=0.2)
    # click on the ROI to select it, Delete removes it, Ctrl+Z brings it back
    qtbot.keyClick(cv, Qt.Key.Key_R)
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 55.5, 70.5))
    assert ext.measure.selected is w.session.measurements[1]
    qtbot.keyClick(cv, Qt.Key.Key_Delete)
    assert len(w.session.measurements) == 1
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [m.kind for m in w.session.measurements] == ["ruler", "ellipse"]
    # kept with the project and exported in the sidecar with their values
    folder = tmp_path / "case.medplib"
    w.files.save_project(str(folder))
    qtbot.waitUntil(lambda: (folder / "project.json").exists() and not w.files.dirty, timeout=20000)
    saved = json.loads((folder / "project.json").read_text())["meta"]["measurements"]
    assert [d["kind"] for d in saved] == ["ruler", "ellipse"]
    out = tmp_path / "labels.nii.gz"
    paint_disc(qtbot, w, w.viewer.active, w.viewer.active.index, 60, 60)
    task = w.files.export(str(out))
    qtbot.waitUntil(lambda: task.finished, timeout=20000)
    side = json.loads(sidecar_path(out).read_text())["measurements"]
    assert side[0]["length"] == pytest.approx(length, rel=1e-4) and side[1]["mean"] == pytest.approx(values.mean(), abs=1e-3)
    w.files.open_project(str(folder))
    qtbot.waitUntil(lambda: not w.files.loading and len(w.session.measurements) == 2, timeout=20000)
    assert w.session.measurements[1].to_dict() == saved[1]


def test_statistics_table_follows_edits_off_the_gui_thread_and_jumps(qtbot, win):
    w = win
    ext = w.extension("analysis")
    ax = w.viewer.active
    paint_disc(qtbot, w, ax, 3, 40, 40)
    paint_disc(qtbot, w, ax, 7, 44, 42)
    panel = shown_statistics(qtbot, w)
    want = label_statistics(w.session.volume, w.session.labelmap.array, w.session.labels)[0]
    got = panel.rows[0]
    assert (got.voxels, got.bbox_min_ijk, got.bbox_max_ijk) == (want.voxels, want.bbox_min_ijk, want.bbox_max_ijk)
    t = panel.labels_table
    assert t.item(0, 2).text() == f"{want.voxels:,}" and t.item(0, 4).text() == f"{want.mean:,.1f}"
    assert t.item(0, 3).text() == f"{want.volume_ml:,.2f}" and t.item(0, 8).text() == (w.session.volume.units or "—")
    assert t.item(0, 10).text() == f"{want.diameters.long:.1f} mm"
    # an edit: the table is computed again (on the worker) and shows the new count
    ticks = []
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    paint_disc(qtbot, w, ax, 9, 50, 50)
    qtbot.waitUntil(lambda: panel.rows and panel.rows[0].voxels == w.session.counts[1] and not panel.job.busy,
                    timeout=20000)
    timer.stop()
    assert ticks  # the event loop kept running meanwhile
    # double-click a row: the cursor goes to the centre of mass; the panel's jump button too
    rect = t.visualRect(t.model().index(0, 1))
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    centre = cursor_at_world(w.session.volume, panel.rows[0].centroid_world)
    assert ext.crosshair.cursor.voxel == centre.voxel and ax.index == centre.views["axial"].index
    ax.set_index(0)
    qtbot.mouseClick(ext.controls.jump, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ax.index == centre.views["axial"].index, timeout=20000)


def test_fill_between_slices_proposes_the_3d_shape(qtbot, win):
    w = win
    ax = w.viewer.active
    qtbot.keyClick(ax.canvas, Qt.Key.Key_D)
    qtbot.keyClick(ax.canvas, Qt.Key.Key_BracketRight)
    for k, (x, y) in ((2, (50, 50)), (8, (62, 58))):
        ax.set_index(k)
        drag(qtbot, ax.canvas, image_point(ax.canvas, x - 6, y), image_point(ax.canvas, x + 6, y))
    drawn = w.session.labelmap.array.copy()
    qtbot.keyClick(ax.canvas, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: w.session.proposal is not None, timeout=20000)
    p = w.session.proposal
    assert p.is_3d and p.record.kind == "interpolate"
    ax.set_index(5)
    assert ax.canvas.proposal_image is not None  # shown on a slice in between
    qtbot.keyClick(ax.canvas, Qt.Key.Key_Return)  # a 3D accept is written on a worker
    qtbot.waitUntil(lambda: w.session.proposal is None and not w.segment.accepting, timeout=20000)
    expected = fill_between_slices(drawn == 1, w.session.volume, "axial").mask
    np.testing.assert_array_equal(w.session.labelmap.array == 1, expected)
    assert all(expected[k].any() for k in range(2, 9)) and not expected[9:].any()
    qtbot.keyClick(ax.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(w.session.labelmap.array, drawn)
    # one drawn slice only: a message, no proposal
    w.session.labelmap.array[:] = 0
    w.session.open(w.session.volume, w.session.path)
    paint_disc(qtbot, w, ax, 4, 50, 50)
    qtbot.keyClick(ax.canvas, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: "two slices" in w.status.currentMessage(), timeout=20000)
    assert w.session.proposal is None


def test_double_clicking_the_axes_draws_them_as_rulers_on_their_slice(qtbot, win):
    """The Long axis cell of a label draws its RECIST long and short axes on the slice they were
    measured on: two rulers of exactly the table's lengths, in one undo step, painted on the canvas."""
    w = win
    ext = w.extension("analysis")
    ax = w.viewer.active
    for cx in (34, 40, 46, 52):  # an elongated blob on axial slice 5
        paint_disc(qtbot, w, ax, 5, cx, 40)
    paint_disc(qtbot, w, ax, 2, 40, 40)
    panel = shown_statistics(qtbot, w)
    d = panel.rows[0].diameters
    assert d.slice_index == 5 and d.long > d.short > 0
    ax.set_index(0)
    t = panel.labels_table
    rect = t.visualRect(t.model().index(0, 10))
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: len(w.session.measurements) == 2, timeout=5000)
    long_r, short_r = w.session.measurements
    vol = w.session.volume
    assert (long_r.orientation, long_r.index, short_r.index) == ("axial", 5, 5)
    assert long_r.length(vol) == pytest.approx(d.long, abs=1e-6)
    assert short_r.length(vol) == pytest.approx(d.short, abs=1e-6)
    assert "long axis" in long_r.name and "short axis" in short_r.name
    assert ax.index == 5 and ext.stats.measure_table.rowCount() == 2
    # painted: the unselected short axis in the ruler colour a quarter of the way along it
    from app.measure_tool import RULER_COLOUR

    cv = ax.canvas
    (r0, c0), (r1, c1) = short_r.start, short_r.end
    p = image_point(cv, c0 + (c1 - c0) * 0.25, r0 + (r1 - r0) * 0.25)
    img = cv.grab().toImage()
    scale = img.width() / cv.width()
    near = [img.pixelColor(int(p.x() * scale) + dx, int(p.y() * scale) + dy)
            for dx in range(-2, 3) for dy in range(-2, 3)]
    assert any(abs(c.red() - RULER_COLOUR.red()) < 60 and c.green() > 170 and c.blue() > 170 for c in near)
    w.actions_by_name["undo"].trigger()
    assert len(w.session.measurements) == 0
