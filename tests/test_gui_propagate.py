"""'Propagate in 3D' from the GUI: progress, a 3D proposal shown in every view, accept/undo,
and cancel (nothing changes). Uses the model-free engine; propagation quality is tested with
the engines."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QPushButton  # noqa: E402

from app.automation import image_point  # noqa: E402
from studio_support import ThresholdEngine, stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


def _has_propagation() -> bool:
    try:
        import medplib_core.engines.propagation  # noqa: F401
    except ImportError:
        return False
    return True


needs_propagation = pytest.mark.skipif(not _has_propagation(), reason="medplib_core.engines.propagation is not available")


@pytest.fixture
def win(qtbot, make_window, tmp_path):
    w = make_window(engine=lambda: ThresholdEngine(delay=0.02), scan=stacked_ct(tmp_path / "ct.nii.gz", n=12))
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_B)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 40.5, 35.5))
    qtbot.mouseMove(cv, image_point(cv, 80.5, 70.5))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 80.5, 70.5))
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)
    return w


def test_nothing_to_propagate_says_why(qtbot, win):
    w = win
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_Escape)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    assert not w.propagation.running and w.session.proposal is None


@needs_propagation
def test_propagate_accept_undo(qtbot, win):
    w = win
    view = w.viewer.active
    seed_index = view.index
    qtbot.keyClick(view.canvas, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    assert w.propagation.running
    qtbot.waitUntil(lambda: not w.propagation.running, timeout=60000)
    p = w.session.proposal
    assert p is not None and p.is_3d and p.record.kind == "propagate"
    per_slice = p.record.mask.any(axis=(1, 2))
    assert per_slice[seed_index] and per_slice.sum() >= 3
    # the 3D proposal shows on other slices and in the other orientations too
    view.set_index(seed_index + 1)
    assert view.canvas.proposal_image is not None or not per_slice[seed_index + 1]
    qtbot.keyClick(view.canvas, Qt.Key.Key_Return)  # a 3D accept is written on a worker
    qtbot.waitUntil(lambda: not w.segment.accepting and w.session.proposal is None, timeout=20000)
    assert np.array_equal(w.session.labelmap.array == 1, p.record.mask)
    assert w.session.counts[1] == int(p.record.mask.sum())
    qtbot.keyClick(view.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not w.session.labelmap.array.any()


@needs_propagation
def test_cancel_propagation_changes_nothing(qtbot, win):
    w = win
    w.engine.engine.delay = 0.3
    before = w.session.proposal
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    w.propagation.dialog.findChild(QPushButton).click()
    qtbot.waitUntil(lambda: not w.propagation.running, timeout=60000)
    assert w.session.proposal is before and not before.is_3d
    assert not w.session.labelmap.array.any()
