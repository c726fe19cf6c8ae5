"""GUI editing flows with a model-free engine: prompts, proposal, accept, undo/redo, brush,
labels panel, lock and merge policies, export. Everything is driven through real widgets."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from app.automation import image_point  # noqa: E402
from app.labels_panel import COL_LOCK, COL_NAME, COL_VISIBLE  # noqa: E402
from studio_support import stacked_ct, wheel  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


@pytest.fixture
def win(make_window, tmp_path):
    return make_window(scan=stacked_ct(tmp_path / "ct.nii.gz"))


def drag(qtbot, canvas, a, b, button=Qt.MouseButton.LeftButton):
    qtbot.mousePress(canvas, button, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(canvas, a + (b - a) * (n / 5))
    qtbot.mouseRelease(canvas, button, pos=b)


def box(qtbot, w, x0, y0, x1, y1):
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_B)
    drag(qtbot, cv, image_point(cv, x0, y0), image_point(cv, x1, y1))
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)


def test_box_accept_undo_redo(qtbot, win):
    w = win
    view = w.viewer.active
    cv = view.canvas
    qtbot.keyClick(cv, Qt.Key.Key_Down)
    assert view.index == view.n_slices() // 2 + 1
    box(qtbot, w, 30, 30, 90, 90)
    rec = w.session.proposal.record
    assert rec.orientation == "axial" and rec.index == view.index and rec.mask.any()
    assert cv.proposal_image is not None and not cv.proposal_outline.isEmpty()
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    assert w.session.proposal is None
    n = int(rec.mask.sum())
    assert w.session.counts == {1: n}
    assert w.labels_panel.table.item(0, 5).text() == f"{n:,}"
    assert cv.label_image is not None
    assert len(w.session.labels[1].provenance) == 1  # provenance of the accepted prompt
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.session.counts == {} and not w.session.labelmap.array.any()
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert w.session.counts == {1: n}


def test_escape_discards_and_correction_refines(qtbot, win):
    w = win
    cv = w.viewer.active.canvas
    box(qtbot, w, 30, 30, 90, 90)
    first = w.session.proposal.record.mask.copy()
    qtbot.keyClick(cv, Qt.Key.Key_N)
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 60.5, 60.5))
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.session.proposal.record.kind == "refine", timeout=10000)
    refined = w.session.proposal.record
    assert refined.prompt["point_labels"] == [0] and refined.prompt["box"]
    assert refined.mask.sum() < (first | refined.mask).sum()
    qtbot.keyClick(cv, Qt.Key.Key_Escape)
    assert w.session.proposal is None and not w.session.labelmap.array.any()
    assert [r.status for r in w.session.prompts] == ["proposed", "discarded"]


def test_brush_eraser_and_sizes(qtbot, win):
    w = win
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_D)
    assert w.tools.tool == "brush"
    qtbot.keyClick(cv, Qt.Key.Key_BracketRight)
    assert w.tools.brush_size > 10 and w.brush_spin.value() == w.tools.brush_size
    drag(qtbot, cv, image_point(cv, 20, 20), image_point(cv, 100, 20))
    painted = w.session.counts[1]
    assert painted > 80 * 10
    qtbot.keyClick(cv, Qt.Key.Key_E)
    drag(qtbot, cv, image_point(cv, 20, 20), image_point(cv, 60, 20))
    assert 0 < w.session.counts[1] < painted
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.session.counts[1] == painted


def test_locked_label_is_not_overwritten(qtbot, win):
    w = win
    cv = w.viewer.active.canvas
    box(qtbot, w, 30, 30, 90, 90)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    first = w.session.labelmap.array == 1
    # lock label 1 by clicking its lock cell, then add label 2 with the panel's + button
    table = w.labels_panel.table
    rect = table.visualRect(table.model().index(0, COL_LOCK))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert w.session.labels[1].locked
    qtbot.mouseClick(w.labels_panel.add_btn, Qt.MouseButton.LeftButton)
    assert w.session.active_value == 2
    box(qtbot, w, 20, 20, 110, 110)
    assert (w.session.proposal.record.mask & w.viewer.active.geometry().take(first)).any()
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    assert np.array_equal(w.session.labelmap.array == 1, first)  # untouched
    assert w.session.counts.get(2, 0) > 0
    # painting into the locked label is refused with a dialog, not an exception
    w.session.set_active(1)
    box(qtbot, w, 20, 20, 110, 110)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    assert w.session.proposal is not None  # still waiting: the label is locked


def test_labels_panel_rename_hide_delete_undo(qtbot, win):
    w = win
    cv = w.viewer.active.canvas
    box(qtbot, w, 30, 30, 90, 90)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    table = w.labels_panel.table
    table.item(0, COL_NAME).setText("lesion")  # what the inline editor commits
    assert w.session.labels[1].name == "lesion"
    rect = table.visualRect(table.model().index(0, COL_VISIBLE))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert not w.session.labels[1].visible and cv.label_image is None
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    n = w.session.counts[1]
    qtbot.mouseClick(w.labels_panel.del_btn, Qt.MouseButton.LeftButton)
    assert 1 not in w.session.labels and not w.session.labelmap.array.any()
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.session.labels[1].name == "lesion" and w.session.counts[1] == n
    # recolour through the colour dialog (double-click on the swatch opens it)
    swatch = table.visualRect(table.model().index(0, 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=swatch)
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=swatch)
    dlg = w.labels_panel.colour_dialog
    dlg.setCurrentColor(QColor(10, 200, 30))
    dlg.accept()
    assert w.session.labels[1].color == (10, 200, 30)
    assert table.item(0, 0).icon().pixmap(8, 8).toImage().pixelColor(4, 4) == QColor(10, 200, 30)
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the recolour
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the rename
    assert w.session.labels[1].name == "label 1" and w.session.labels[1].color != (10, 200, 30)


def test_window_scroll_layout_readout(qtbot, win):
    w = win
    view = w.viewer.active
    cv = view.canvas
    c0, w0 = w.session.window
    drag(qtbot, cv, image_point(cv, 60, 60), image_point(cv, 90, 80), Qt.MouseButton.RightButton)
    c1, w1 = w.session.window
    assert w1 > w0 and c1 > c0
    qtbot.keyClick(cv, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)  # first preset
    assert w.session.window == (50.0, 400.0)
    start = view.index
    qtbot.keyClick(cv, Qt.Key.Key_PageDown)
    assert view.index == min(start + 10, view.n_slices() - 1)
    qtbot.keyClick(cv, Qt.Key.Key_Home)
    assert view.index == 0 and view.slider.value() == 0
    qtbot.mouseMove(cv, image_point(cv, 10.5, 20.5))
    text = w.status.cursor.text()
    assert "voxel (" in text and "mm (LPS)" in text
    assert cv.letters == ("A", "P", "R", "L")
    qtbot.keyClick(cv, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)
    assert w.viewer.layout_mode == "grid"
    assert [v.orientation for v in w.viewer.views] == ["axial", "coronal", "sagittal"]
    cor = w.viewer.views[1]
    assert cor.canvas.isVisible() and cor.geometry().shape[0] == w.session.volume.shape[0]
    # navigate tool: a click in the axial view moves the coronal and sagittal views there
    ax, sag = w.viewer.views[0], w.viewer.views[2]
    qtbot.keyClick(ax.canvas, Qt.Key.Key_V)
    qtbot.mouseClick(ax.canvas, Qt.MouseButton.LeftButton, pos=image_point(ax.canvas, 40.5, 70.5))
    i, j, k = ax.geometry().to_voxel(70, 40)
    assert cor.index == cor.geometry().slice_index_of(i, j, k) and sag.index == i
    # zoom with Ctrl+wheel, pan with a middle-drag
    wheel(ax.canvas, image_point(ax.canvas, 64, 64), 2, Qt.KeyboardModifier.ControlModifier)
    assert ax.canvas.zoom > 1.2
    pan0 = ax.canvas.pan.x()
    drag(qtbot, ax.canvas, image_point(ax.canvas, 64, 64), image_point(ax.canvas, 80, 64), Qt.MouseButton.MiddleButton)
    assert ax.canvas.pan.x() > pan0 + 10
    # a coronal pixel is 2.5 mm tall and ~0.66 mm wide: the canvas keeps that aspect
    r = cor.canvas.image_rect()
    assert abs(r.height() / r.width() - (12 * 2.5) / (128 * w.session.volume.spacing[0])) < 0.02


def test_export_nifti_writes_labels_and_affine(qtbot, win, tmp_path):
    nib = pytest.importorskip("nibabel")
    w = win
    cv = w.viewer.active.canvas
    box(qtbot, w, 30, 30, 90, 90)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    out = tmp_path / "out.nii.gz"
    done = []
    w.files.export(str(out), on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=20000)
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, w.session.volume.affine_ras, atol=1e-4)
    data = np.asarray(img.dataobj).transpose(2, 1, 0)
    assert np.array_equal(data, w.session.labelmap.array)


def test_overlap_policy_overwrite_and_merge(qtbot, win):
    w = win
    cv = w.viewer.active.canvas
    box(qtbot, w, 30, 30, 90, 90)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    first = w.session.labelmap.array == 1
    qtbot.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # label 2, overwrite
    table = w.labels_panel.table
    assert table.item(1, 4).text().startswith("Overwrite")
    box(qtbot, w, 20, 20, 110, 110)
    overlap = w.viewer.active.geometry().take(first) & w.session.proposal.record.mask
    assert overlap.any()
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    assert w.session.counts.get(1, 0) == int(first.sum()) - int(overlap.sum())  # overwritten
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    # click the Overlap cell of label 2: a chooser opens; Down picks "Merge"
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualRect(table.model().index(1, 4)).center())
    combo = table.indexWidget(table.model().index(1, 4))
    assert combo is not None and combo.currentText() == "Overwrite"
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert w.session.labels[2].policy.value == "merge" and table.item(1, 4).text().startswith("Merge")
    box(qtbot, w, 20, 20, 110, 110)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    assert np.array_equal(w.session.labelmap.array == 1, first)  # merge: label 1 kept
    assert w.session.counts[2] > 0
