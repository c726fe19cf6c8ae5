"""'Propagate in 3D' from the GUI: it runs in the background with progress and Cancel in the
status bar (no modal dialog) while the user keeps scrolling; prompts are refused with a message
meanwhile; the result is a 3D proposal shown in every view, accepted and undone; cancel (the
status-bar button or Esc) changes nothing. Uses the model-free engine; propagation quality is
tested with the engines."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.automation import image_point  # noqa: E402
from studio_support import ThresholdEngine, stacked_ct, wheel  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]
CTRL = Qt.KeyboardModifier.ControlModifier


def drag_box(qtbot, cv, x0, y0, x1, y1):
    qtbot.keyClick(cv, Qt.Key.Key_B)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, x0, y0))
    qtbot.mouseMove(cv, image_point(cv, x1, y1))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, x1, y1))


@pytest.fixture
def win(qtbot, make_window, tmp_path):
    w = make_window(engine=lambda: ThresholdEngine(delay=0.02), scan=stacked_ct(tmp_path / "ct.nii.gz", n=12))
    drag_box(qtbot, w.viewer.active.canvas, 40.5, 35.5, 80.5, 70.5)
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)
    return w


def test_nothing_to_propagate_says_why(qtbot, win):
    w = win
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_Escape)
    assert not w.actions_by_name["discard"].isEnabled()  # nothing left to discard
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_P, CTRL)
    assert not w.propagation.running and w.session.proposal is None


def test_propagate_in_the_background_accept_undo(qtbot, win):
    w = win
    w.engine.engine.delay = 0.25  # a few seconds for 12 slices: time to look around
    view = w.viewer.active
    seed_index = view.index
    qtbot.keyClick(view.canvas, Qt.Key.Key_P, CTRL)
    assert w.propagation.running and QApplication.activeModalWidget() is None  # no modal dialog
    bar = w.status
    assert bar.task_running and "Propagating" in bar.task_label.text() and bar.task_cancel.isVisible()
    assert not w.actions_by_name["propagate"].isEnabled()
    qtbot.waitUntil(lambda: bar.task_bar.maximum() > 0 and bar.task_bar.value() >= 1, timeout=20000)
    # the user keeps looking around: wheel to another slice, window with a right-drag
    wheel(view.canvas, QPoint(view.canvas.width() // 2, view.canvas.height() // 2), steps=-3)
    assert view.index == seed_index + 3 and w.propagation.running
    # a new prompt would wait behind the propagation: refused with a message
    drag_box(qtbot, view.canvas, 20.5, 20.5, 50.5, 50.5)
    assert w.engine.pending is None and "propagation is running" in bar.currentMessage()
    qtbot.waitUntil(lambda: not w.propagation.running, timeout=60000)
    assert not bar.task_running and w.actions_by_name["propagate"].isEnabled()
    p = w.session.proposal
    assert p is not None and p.is_3d and p.record.kind == "propagate"
    per_slice = p.record.mask.any(axis=(1, 2))
    assert per_slice[seed_index] and per_slice.sum() >= 3
    assert view.canvas.proposal_image is not None or not per_slice[view.index]  # shown where we are
    qtbot.keyClick(view.canvas, Qt.Key.Key_Return)  # a 3D accept is written on a worker
    qtbot.waitUntil(lambda: not w.segment.accepting and w.session.proposal is None, timeout=20000)
    assert np.array_equal(w.session.labelmap.array == 1, p.record.mask)
    assert w.session.counts[1] == int(p.record.mask.sum())
    qtbot.keyClick(view.canvas, Qt.Key.Key_Z, CTRL)
    assert not w.session.labelmap.array.any()


@pytest.mark.parametrize("how", ["button", "escape"])
def test_cancel_propagation_changes_nothing(qtbot, win, how):
    w = win
    w.engine.engine.delay = 0.3
    before = w.session.proposal
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_P, CTRL)
    assert w.propagation.running and w.actions_by_name["discard"].isEnabled()
    if how == "button":
        qtbot.mouseClick(w.status.task_cancel, Qt.MouseButton.LeftButton)
    else:
        qtbot.keyClick(cv, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not w.propagation.running, timeout=60000)
    assert w.session.proposal is before and not before.is_3d  # Esc cancelled, it kept the proposal
    assert not w.session.labelmap.array.any() and not w.status.task_running
    assert "cancelled" in w.status.currentMessage()
