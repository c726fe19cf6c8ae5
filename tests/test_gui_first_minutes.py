"""The first minutes with the app: an empty canvas says what to do, the sample is a real
multi-slice volume, the preset box shows the window in use, and at 1024×700 the 2×2 layout has
equal cells whose corner texts keep clear of the orientation letters (real window and events)."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, Qt  # noqa: E402

from app.resources import window_presets  # noqa: E402
from app.sample import sample_path  # noqa: E402
from studio_support import draw_box, drop_path  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]
CTRL, ALT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.AltModifier


def propose(qtbot, w, cv) -> None:
    h, wd = cv.shape
    draw_box(qtbot, cv, wd * 0.35, h * 0.35, wd * 0.6, h * 0.6)
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=20000)


def hint(canvas) -> str:
    return next((t for _, t, _, a in canvas.text_layout() if a & 0x10000), "")


def overlaps(canvas) -> list[tuple[str, str]]:
    items = [(t, r) for _, t, r, _ in canvas.text_layout()]
    return [(a[0], b[0]) for a, b in itertools.combinations(items, 2) if a[1].intersects(b[1])]


def test_empty_canvas_sample_and_preset_box(qtbot, make_window):
    w = make_window(size=(1200, 800))
    cv = w.viewer.active.canvas
    assert "Open a scan" in hint(cv) and "Ctrl+O" in hint(cv)
    sample = sample_path()
    drop_path(w, sample)
    qtbot.waitUntil(lambda: w.session.volume is not None and not w.files.loading, timeout=60000)
    vol = w.session.volume
    assert min(vol.shape) >= 10  # a volume: MPR, 2×2 and propagation can be tried
    cv = w.viewer.active.canvas
    assert hint(cv).startswith("B: draw a box")  # the tool's first step
    qtbot.keyClick(cv, Qt.Key.Key_D)
    assert hint(cv).startswith("D: paint")
    propose(qtbot, w, cv)
    assert hint(cv) == ""  # something is drawn: no more hint

    # the preset box shows the window in use
    name, c, width = window_presets()[1]
    qtbot.keyClick(cv, Qt.Key.Key_2, CTRL)
    assert w.session.window == (c, width) and w.preset_combo.currentText() == name
    qtbot.mousePress(cv, Qt.MouseButton.RightButton, pos=QPoint(100, 100))
    qtbot.mouseMove(cv, QPoint(140, 120))
    qtbot.mouseRelease(cv, Qt.MouseButton.RightButton, pos=QPoint(140, 120))
    lc, lw = w.session.window
    assert w.preset_combo.currentIndex() == 0 and w.preset_combo.currentText() == f"L {lc:.0f} / W {lw:.0f}"
    qtbot.keyClick(cv, Qt.Key.Key_0, CTRL)
    assert w.preset_combo.currentText() == "Automatic"


def test_grid_at_1024x700_has_equal_cells_and_clear_texts(qtbot, make_window):
    w = make_window(size=(1024, 700), scan=sample_path())
    cv = w.viewer.active.canvas
    propose(qtbot, w, cv)
    qtbot.keyClick(cv, Qt.Key.Key_4, ALT)
    qtbot.wait(50)
    views = w.viewer.views
    fourth = w.viewer.fourth  # the 3D pane (or the scan info where there is none)
    assert fourth.isVisible()
    widths = [v.width() for v in views] + [fourth.width()]
    heights = [v.height() for v in views] + [fourth.height()]
    assert max(widths) - min(widths) <= 1 and max(heights) - min(heights) <= 1, (widths, heights)
    for v in views:
        assert v.canvas.letters[0] and v.canvas.corner_text[0], v.orientation
        assert overlaps(v.canvas) == [], (v.orientation, v.canvas.width(), overlaps(v.canvas))
    assert "Enter: accept" in views[0].canvas.corner_text[1]  # the proposal line is laid out too
