"""Issue 14 in the real window (offscreen): label display (outline, opacity per label, a filter
over many labels), coded terminology into DICOM SEG, RT Structure Set export and import, and the
brush in millimetres with the 3D ball and the value range. Real mouse and key events."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from app.automation import image_point  # noqa: E402
from app.labels_panel import COL_CODE, COL_VISIBLE  # noqa: E402
from medplib_core.analysis.brush import brush_2d, brush_balls  # noqa: E402
from medplib_core.analysis.contours import label_edges  # noqa: E402
from medplib_core.export import import_labels  # noqa: E402
from studio_support import stacked_ct  # noqa: E402
from test_gui_projects import choose  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


def ct_small() -> str:
    from pydicom.data import get_testdata_file

    return get_testdata_file("CT_small.dcm")


def drag(qtbot, canvas, a, b, button=Qt.MouseButton.LeftButton):
    qtbot.mousePress(canvas, button, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(canvas, a + (b - a) * (n / 5))
    qtbot.mouseRelease(canvas, button, pos=b)


@pytest.mark.shared_data
def test_many_labels_filter_outline_opacity_and_visibility(qtbot, make_window, shared_data):
    vols = shared_data / "volumes"
    w = make_window(scan=vols / "ct_series_j2k", size=(1280, 820))
    w.files.import_labels(str(vols / "ct_series_j2k_labels.nii.gz"))
    qtbot.waitUntil(lambda: len(w.session.counts) > 20, timeout=60000)
    panel = w.labels_panel
    t = panel.table
    n = len(w.session.labels)
    assert t.rowCount() == n >= 30
    # many rows show at once (the imported map showed 3 before)
    shown = t.viewport().height() // t.rowHeight(0)
    assert shown >= 10, shown
    # the filter box keeps only the matching rows
    qtbot.keyClicks(panel.filter, "rib left")
    visible = [w.session.labels.to_list()[r]["name"] for r in range(n) if not t.isRowHidden(r)]
    assert visible == [f"rib_left_{i}" for i in range(6, 13)]
    panel.filter.clear()
    assert not any(t.isRowHidden(r) for r in range(n))
    # outline mode: only each label's edge pixels are drawn, in its colour, at full strength
    ax = w.viewer.active
    ext = w.extension("analysis")
    qtbot.mouseClick(ext.controls.mode, Qt.MouseButton.LeftButton)
    qtbot.keyClick(ext.controls.mode.view(), Qt.Key.Key_Down)
    qtbot.keyClick(ext.controls.mode.view(), Qt.Key.Key_Return)
    assert ext.style.mode == "outline" and ax.canvas.labels_outlined
    plane = ax.geometry().take(w.session.labelmap.array)
    img = ax.canvas.label_image
    arr = np.frombuffer(img.constBits(), np.uint32).reshape(img.height(), img.bytesPerLine() // 4)[:, :img.width()]
    np.testing.assert_array_equal(arr != 0, label_edges(plane) != 0)
    liver = w.session.labels.by_name("liver")
    r, g, b = liver.color
    assert np.all(arr[label_edges(plane) == liver.value] == (0xFF000000 | (r << 16) | (g << 8) | b))
    # the opacity of the active label (liver): its pixels' alpha, the others unchanged
    w.session.set_active(liver.value)
    ext.controls.label_opacity.setValue(40)
    img = ax.canvas.label_image
    arr = np.frombuffer(img.constBits(), np.uint32).reshape(img.height(), img.bytesPerLine() // 4)[:, :img.width()]
    edges = label_edges(plane)
    assert np.all((arr[edges == liver.value] >> 24) == round(0.4 * 255))
    assert np.all((arr[(edges != 0) & (edges != liver.value)] >> 24) == 255)
    # the eye column hides a label (not an undo step)
    row = [lab.value for lab in w.session.labels].index(liver.value)
    rect = t.visualRect(t.model().index(row, COL_VISIBLE))
    t.scrollTo(t.model().index(row, COL_VISIBLE))
    rect = t.visualRect(t.model().index(row, COL_VISIBLE))
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert not w.session.labels[liver.value].visible
    img = ax.canvas.label_image
    arr = np.frombuffer(img.constBits(), np.uint32).reshape(img.height(), img.bytesPerLine() // 4)[:, :img.width()]
    assert not arr[plane == liver.value].any()


def test_terminology_picker_codes_the_label_and_the_seg_carries_it(qtbot, make_window, tmp_path):
    w = make_window(scan=ct_small())
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_D)
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 60, 60))
    ext = w.extension("analysis")
    qtbot.mouseClick(ext.controls.code, Qt.MouseButton.LeftButton)
    dlg = ext.code_dialog
    qtbot.waitUntil(dlg.isVisible, timeout=10000)
    qtbot.keyClicks(dlg.search, "kidney")
    items = [dlg.list.item(i).text() for i in range(dlg.list.count())]
    assert items and items[0].startswith("Kidney")
    dlg.side.setCurrentIndex(1)  # left
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    lab = w.session.labels[1]
    assert lab.terminology["type"] == {"value": "64033007", "scheme": "SCT", "meaning": "Kidney"}
    assert lab.terminology["modifier"]["meaning"] == "Left" and lab.name == "left kidney"
    assert w.labels_panel.table.item(0, COL_CODE).text() == "64033007"
    assert w.session.history.undo_text() == "set label code"
    # HU in an ROI on a CT
    qtbot.keyClick(cv, Qt.Key.Key_R)
    drag(qtbot, cv, image_point(cv, 40, 40), image_point(cv, 80, 80))
    assert ext.measure.label(w.session.measurements[0])[0].startswith("mean") and " HU" in ext.measure.label(w.session.measurements[0])[0]
    # the DICOM SEG export carries the codes
    out = tmp_path / "seg.dcm"
    task = w.files.export(str(out))
    qtbot.waitUntil(lambda: task.finished, timeout=60000)
    seg = pydicom.dcmread(out).SegmentSequence[0]
    typ = seg.SegmentedPropertyTypeCodeSequence[0]
    assert (typ.CodeValue, typ.CodeMeaning) == ("64033007", "Kidney")
    assert typ.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Left"


def test_rtstruct_export_from_the_menu_and_import(qtbot, make_window, tmp_path):
    w = make_window(scan=stacked_ct(tmp_path / "ct.nii.gz"))
    assert not w.actions_by_name["export_rtstruct"].isEnabled()  # not a DICOM source
    w.open_path(ct_small())
    qtbot.waitUntil(lambda: w.session.volume is not None and w.session.volume.source.kind == "dicom"
                    and not w.files.loading, timeout=30000)
    assert w.actions_by_name["export_rtstruct"].isEnabled()
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_D)
    drag(qtbot, cv, image_point(cv, 30, 40), image_point(cv, 90, 70))
    w.session.add_label("second")
    drag(qtbot, cv, image_point(cv, 40, 100), image_point(cv, 80, 100))
    painted = w.session.labelmap.array.copy()
    w.actions_by_name["export_rtstruct"].trigger()
    ext = w.extension("analysis")
    qtbot.waitUntil(lambda: ext.rtstruct_dialog.isVisible(), timeout=10000)
    out = tmp_path / "structures.dcm"
    choose(qtbot, ext.rtstruct_dialog, out)
    qtbot.waitUntil(lambda: out.exists() and not w.files.runner.busy(), timeout=60000)
    ds = pydicom.dcmread(out)
    assert ds.Modality == "RTSTRUCT"
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["label 1", "second"]
    # read back by the core on the same scan: the label map it was made from
    back = import_labels(out, w.session.volume)
    np.testing.assert_array_equal(back.array, painted)
    # and through the window: Import labels reads an RTSTRUCT
    w.session.labelmap.array[:] = 0
    w.files.import_labels(str(out))
    qtbot.waitUntil(lambda: np.array_equal(w.session.labelmap.array, painted), timeout=30000)


def test_brush_in_mm_ball_and_value_range(qtbot, make_window, tmp_path):
    w = make_window(scan=stacked_ct(tmp_path / "ct.nii.gz"))
    view = w.viewer.active
    cv, vol = view.canvas, w.session.volume
    qtbot.keyClick(cv, Qt.Key.Key_D)
    assert w.brush_spin.suffix() == " mm" and w.tools.brush_size == 10.0
    qtbot.keyClick(cv, Qt.Key.Key_BracketLeft)
    assert w.tools.brush_size == 8.0 and w.brush_spin.value() == 8.0 and "8 mm" in w.status.tool.text()
    # a click paints the disc of 4 mm radius the core's brush gives at that point
    at = image_point(cv, 60.5, 50.5)
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=at)
    x, y = cv.to_image(at)
    want = brush_2d(vol, "axial", view.index, [(y - 0.5, x - 0.5)], 4.0)
    expected = np.zeros(vol.shape, bool)
    want.view(expected)[want.mask] = True
    np.testing.assert_array_equal(w.session.labelmap.array == 1, expected)
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    # 3D ball: a click paints through the neighbouring slices (a ball in world mm)
    opts = w.extension("analysis").options
    qtbot.mouseClick(opts.ball, Qt.MouseButton.LeftButton)
    assert w.tools.ball
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=at)
    ball = brush_balls(vol, [view.geometry().to_world(y - 0.5, x - 0.5)], 4.0)
    expected[:] = False
    ball.view(expected)[ball.mask] = True
    np.testing.assert_array_equal(w.session.labelmap.array == 1, expected)
    assert len(np.unique(np.nonzero(expected)[0])) == 3  # 4 mm ball on 2.5 mm slices
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.mouseClick(opts.ball, Qt.MouseButton.LeftButton)
    # value range: only voxels inside lo..hi are painted by a drag
    plane = view.geometry().take(vol.array)
    lo, hi = np.percentile(plane, [50, 80])
    qtbot.mouseClick(opts.range_on, Qt.MouseButton.LeftButton)
    opts.lo.setValue(lo)
    opts.hi.setValue(hi)
    assert w.tools.value_range == (round(lo), round(hi))
    drag(qtbot, cv, image_point(cv, 20, 60), image_point(cv, 110, 60))
    values = vol.array[w.session.labelmap.array == 1]
    assert values.size > 50 and values.min() >= round(lo) and values.max() <= round(hi)
    # a range nothing under the stroke lies in: nothing painted, and the status bar says why
    before = w.session.labelmap.array.copy()
    opts.lo.setValue(plane.max() + 10)
    opts.hi.setValue(plane.max() + 20)
    drag(qtbot, cv, image_point(cv, 20, 80), image_point(cv, 110, 80))
    np.testing.assert_array_equal(w.session.labelmap.array, before)
    assert "nothing painted" in w.status.currentMessage()


def test_brush_preview_shows_only_what_the_value_range_lets_it_paint(qtbot, make_window, tmp_path):
    """While dragging with a value range on, the stroke preview covers exactly the voxels the
    release paints: the in-range part of the stroke, not the whole disc trail."""
    from PySide6.QtGui import QImage

    w = make_window(scan=stacked_ct(tmp_path / "ct.nii.gz"))
    view = w.viewer.active
    cv, vol = view.canvas, w.session.volume
    qtbot.keyClick(cv, Qt.Key.Key_D)
    opts = w.extension("analysis").options
    plane = view.geometry().take(vol.array)
    lo, hi = np.percentile(plane, [50, 80])
    qtbot.mouseClick(opts.range_on, Qt.MouseButton.LeftButton)
    opts.lo.setValue(lo)
    opts.hi.setValue(hi)
    a, b = image_point(cv, 20, 60), image_point(cv, 110, 60)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(cv, a + (b - a) * (n / 5))
    img = cv._stroke_img.convertToFormat(QImage.Format.Format_ARGB32)
    argb = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    shown = argb[:, :img.width(), 3] > 0
    trail = cv._stroke.copy()
    assert shown.sum() > 50 and shown.sum() < trail.sum()  # some of the trail is out of range
    np.testing.assert_array_equal(shown, view.in_value_range(trail))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)
    painted = view.geometry().take(w.session.labelmap.array == 1)
    np.testing.assert_array_equal(painted, shown)
