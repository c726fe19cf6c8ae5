"""A click costs the GUI thread little while the model decodes (issue 18, the click in the window):
its marker repaints only its own corner of the canvas, the answer only where the proposal and the
texts are (and what is on screen is then what a full repaint draws), the answer does not hash
the slice a second time, and views the layout hides skip their refreshes until they are shown."""

from __future__ import annotations

import functools
import threading

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QEvent, QObject, QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from app.automation import image_point, wait_signal  # noqa: E402
from app.canvas import PROMPT_POS  # noqa: E402
from studio_support import ThresholdEngine, stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui]


class PaintLog(QObject):
    """The rectangles of the paint events a widget receives."""

    def __init__(self, widget):
        super().__init__(widget)
        self.rects = []
        widget.installEventFilter(self)

    def eventFilter(self, obj, ev):  # noqa: N802 (Qt API)
        if ev.type() == QEvent.Type.Paint:
            self.rects.append(ev.rect())
        return False


class SlowEngine(ThresholdEngine):
    """The test engine, answering only when the test lets it (a model still decoding)."""

    def __init__(self):
        super().__init__()
        self.go = threading.Event()
        self.checks = 0

    def encode(self, image):
        session = super().encode(image)
        predict = session.predict

        @functools.wraps(predict)
        def held(prompt):
            self.go.wait(30)
            return predict(prompt)

        session.predict = held
        return session

    def is_cached(self, image):
        self.checks += 1
        return super().is_cached(image)


def test_a_click_repaints_its_marker_only_and_the_answer_its_area(qtbot, make_window, tmp_path):
    eng = SlowEngine()
    w = make_window(engine=lambda: eng, scan=stacked_ct(tmp_path / "ct.nii.gz", n=8))
    view = w.viewer.active
    cv = view.canvas
    assert not w.engine.current_encoded  # this engine does not pre-encode: the click encodes
    qtbot.keyClick(cv, Qt.Key.Key_P)
    assert w.tools.tool.value == "point_pos"
    log = PaintLog(cv)
    qtbot.wait(100)  # the tool change's repaint is done
    log.rects.clear()
    checks = eng.checks
    at = image_point(cv, 60, 52)
    QTest.mouseClick(cv, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
    qtbot.waitUntil(lambda: bool(log.rects), timeout=5000)  # the marker, while the model still works
    assert w.engine.pending is not None and w.session.proposal is None
    first = log.rects[0]
    assert first.contains(at) and first.width() <= 40 and first.height() <= 40, first
    assert all(r.width() <= 40 for r in log.rects), log.rects  # nothing else repainted the canvas
    shot = cv.grab().toImage()
    assert shot.pixelColor(at + QPoint(-3, -3)).green() > 150  # the green marker is on screen
    assert shot.pixelColor(at + QPoint(-3, -3)) == PROMPT_POS

    eng.go.set()
    seen = []  # is_cached calls when the proposal arrived (the status poll may check later)
    assert wait_signal((w.doc.proposal_changed,),
                       lambda: w.session.proposal is not None and not seen.append(eng.checks), 10)
    area = cv.proposal_region().boundingRect()  # the hatch, its outline and the texts
    qtbot.waitUntil(lambda: any(r.intersects(area) and r.width() > 40 for r in log.rects), timeout=5000)
    assert w.engine.current_encoded is True and "encoded" in w.status.engine.text()
    assert seen[0] == checks  # the slice the answer came from is known encoded: not hashed again

    # a discarded proposal's marker goes with it: the pending marker was cleared in its own area
    qtbot.keyClick(cv, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: w.session.proposal is None, timeout=5000)
    assert cv.pending_prompt is None


def test_hidden_views_catch_up_when_the_layout_shows_them(qtbot, make_window, tmp_path):
    eng = ThresholdEngine()
    w = make_window(engine=lambda: eng, scan=stacked_ct(tmp_path / "ct.nii.gz", n=8))
    axial, coronal, sagittal = w.viewer.views
    assert w.viewer.layout_mode == "single" and coronal.isHidden()
    before = list(coronal.canvas.corner_text)
    cv = axial.canvas
    qtbot.keyClick(cv, Qt.Key.Key_P)
    QTest.mouseClick(cv, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, image_point(cv, 60, 52))
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)
    assert "Enter: accept" in cv.corner_text[1]
    assert coronal.canvas.corner_text == before  # hidden: its refresh waits

    w.actions_by_name["layout_grid"].trigger()
    qtbot.waitUntil(lambda: not coronal.isHidden(), timeout=5000)
    for v in (coronal, sagittal):
        assert "Enter: accept" in v.canvas.corner_text[1], v.orientation
        assert v.canvas.scan_image is not None
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: w.session.proposal is None, timeout=5000)
    assert all("Enter: accept" not in v.canvas.corner_text[1] for v in w.viewer.views)


def _on_screen(w, cv):
    """The canvas's pixels as the window system has them (the backing store: stale pixels of a
    repaint that missed an area stay there, unlike `QWidget.grab`, which paints afresh)."""
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    top = cv.mapTo(w, QPoint(0, 0))
    shot = w.screen().grabWindow(w.winId(), top.x(), top.y(), cv.width(), cv.height()).toImage()
    assert shot.width() == cv.width() and shot.height() == cv.height()
    return shot


def _stale(shown, full) -> int:
    """Pixels of ``shown`` that differ from ``full`` by more than rounding. A clipped repaint
    rounds the smoothly scaled scan by a level here and there and may start the outline's dashes
    elsewhere (a few dozen pixels); what a repaint missed (a text, a hatch) is hundreds."""
    import numpy as np

    def arr(img):
        img = img.convertToFormat(img.Format.Format_RGB32)
        return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : 4 * img.width()]

    a, b = arr(shown).astype(int), arr(full).astype(int)
    return int((np.abs(a - b).reshape(a.shape[0], -1, 4)[..., :3].max(axis=2) > 8).sum())


def test_the_answer_repaints_only_its_area_and_the_screen_is_right(qtbot, make_window, tmp_path):
    """A proposal's arrival, a second one and its discard each repaint the canvas only where
    the proposal was or is and where the texts are; the screen then shows exactly what a full
    repaint of the canvas draws (no stale hatch, outline, marker or corner text)."""
    w = make_window(scan=stacked_ct(tmp_path / "ct.nii.gz", n=8))
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_P)
    qtbot.wait(100)
    log = PaintLog(cv)
    for x, y in ((60, 52), (40, 70)):  # the second click is on the first proposal: a refinement
        log.rects.clear()
        QTest.mouseClick(cv, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, image_point(cv, x, y))
        qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)
        shown = _on_screen(w, cv)
        assert cv.proposal_image is not None and "Enter: accept" in cv.corner_text[1]
        assert not any(r.width() == cv.width() and r.height() == cv.height() for r in log.rects), log.rects
        cv.repaint()
        assert _stale(shown, _on_screen(w, cv)) <= 100, f"stale pixels after the proposal at {(x, y)}"
    log.rects.clear()
    qtbot.keyClick(cv, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: w.session.proposal is None, timeout=5000)
    shown = _on_screen(w, cv)
    assert cv.proposal_image is None and "Enter: accept" not in cv.corner_text[1]
    assert log.rects and not any(r.width() == cv.width() and r.height() == cv.height() for r in log.rects)
    cv.repaint()
    assert _stale(shown, _on_screen(w, cv)) <= 100, "stale pixels after the discard"
