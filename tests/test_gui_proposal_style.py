"""A pending proposal never looks like an accepted label: it is drawn hatched with a black and
white dashed outline (labels are solid fills), and no label colour — default or picked — is
near the proposal's white. Checked on the pixels the real canvas paints."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from app.automation import image_point  # noqa: E402
from medplib_core.annotation.labels import PALETTE, PROPOSAL_COLOR, PROPOSAL_MIN_DISTANCE  # noqa: E402
from studio_support import draw_box  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


def flat_volume(path):
    """A uniform grey volume (value 100 on 0..200) with a darker band, so every painted colour
    is the overlay's own."""
    data = np.full((96, 96, 8), 100, dtype=np.int16)  # (i, j, k)
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def box(qtbot, w, x0, y0, x1, y1):
    draw_box(qtbot, w.viewer.active.canvas, x0, y0, x1, y1)
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)


def pixels(cv, x0, y0, x1, y1) -> np.ndarray:
    """The painted RGB of the canvas over image rectangle (x0, y0)–(x1, y1) (screen pixels)."""
    img = cv.grab().toImage()
    a, b = image_point(cv, x0, y0), image_point(cv, x1, y1)
    return np.array([[QColor(img.pixel(x, y)).getRgb()[:3] for x in range(a.x(), b.x())]
                     for y in range(a.y(), b.y())], dtype=int)


def test_palette_keeps_away_from_the_proposal():
    for c in PALETTE:
        assert np.linalg.norm(np.subtract(c, PROPOSAL_COLOR)) >= PROPOSAL_MIN_DISTANCE, c


def test_proposal_is_hatched_and_dashed_unlike_label_3(qtbot, make_window, tmp_path):
    w = make_window(scan=flat_volume(tmp_path / "flat.nii.gz"), size=(1100, 800))
    w.session.set_window(100, 200)
    cv = w.viewer.active.canvas
    for _ in range(3):
        qtbot.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    lab3 = w.session.labels[3]
    assert w.session.active_value == 3 and lab3.color == PALETTE[2]  # the yellow one
    box(qtbot, w, 8, 8, 40, 40)
    qtbot.keyClick(cv, Qt.Key.Key_Return)  # accepted into label 3
    box(qtbot, w, 52, 52, 88, 88)  # pending
    qtbot.mouseMove(cv, image_point(cv, 46, 46))  # the cursor away from both
    qtbot.wait(50)
    label = pixels(cv, 14, 14, 34, 34).reshape(-1, 3)
    proposal = pixels(cv, 58, 58, 82, 82).reshape(-1, 3)
    scan_grey = pixels(cv, 44, 2, 50, 6).reshape(-1, 3)
    assert np.ptp(label, axis=0).max() <= 2  # a label is a solid fill
    white = (proposal >= 240).all(axis=1)
    assert 0.15 < white.mean() < 0.7  # hatched: stripes of white over the scan
    rest = proposal[~white]
    assert np.abs(rest - scan_grey.mean(axis=0)).max() <= 12  # ... and the scan between them
    assert np.linalg.norm(label.mean(axis=0) - proposal.mean(axis=0)) > 60  # it does not look like label 3
    edge = pixels(cv, 51, 60, 54, 80).reshape(-1, 3)  # across the proposal's left border
    assert (edge <= 40).all(axis=1).any() and (edge >= 230).all(axis=1).any()  # black and white dashes

    # a colour picked for a label is kept away from the proposal's white
    w.labels_panel.recolour_label()
    dlg = w.labels_panel.colour_dialog
    dlg.setCurrentColor(QColor(255, 255, 252))
    dlg.accept()
    assert np.linalg.norm(np.subtract(w.session.labels[3].color, PROPOSAL_COLOR)) >= PROPOSAL_MIN_DISTANCE - 1
