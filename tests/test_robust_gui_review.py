"""The review window on a manifest with hostile case ids and paths: Save edits (a real brush
stroke and button click) writes inside the run folder, Export accepted copies nothing from
outside it (issue 19 item 10, app/review/controller.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PIL import Image  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from test_gui_review import make_win, stroke, wait_case  # noqa: E402,F401

from medplib_core.annotation import LabelSet  # noqa: E402
from medplib_core.batch import Manifest  # noqa: E402
from medplib_core.batch.review import ReviewQueue  # noqa: E402
from medplib_core.export import write_png_labels  # noqa: E402
from medplib_core.io import load  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(300)]


def _run(root: Path) -> Path:
    """A run folder written by hand: one case whose id climbs out, one whose review points at
    a file outside the run."""
    rng = np.random.default_rng(2)
    img = rng.normal(60, 8, (120, 160)).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(root / "scan.png")
    vol = load(root / "scan.png")
    labels = LabelSet()
    labels.add("lesion")
    arr = np.zeros(vol.shape, np.uint16)
    arr[0, 40:70, 50:90] = 1
    run = root / "run"
    write_png_labels(run / "labels" / "x.png", arr, vol, labels)
    (root / "secret.txt").write_text("not for export")
    m = Manifest(run)
    m.append({"kind": "result", "case": "../../escape", "status": "ok", "input": str(root / "scan.png"),
              "output": "labels/x.png"})
    m.append({"kind": "result", "case": "leak", "status": "ok", "input": str(root / "scan.png"),
              "output": "labels/x.png"})
    m.append({"kind": "review", "case": "leak", "decision": "accepted", "labels": str(root / "secret.txt")})
    return run


def test_save_edits_and_export_stay_inside_the_run(qtbot, make_win, tmp_path) -> None:  # noqa: F811
    work = tmp_path / "work"  # (settings and autosaves live beside it, in tmp_path)
    work.mkdir()
    run = _run(work)
    before = {p for p in work.rglob("*") if p.is_file()}
    w, ui = make_win()
    c, panel = ui.controller, ui.panel
    assert c.open_run(run)
    wait_case(qtbot, ui, "../../escape")
    assert w.session.labelmap.array.any()  # the proposal is shown
    stroke(qtbot, w, 10, 10, 40, 10)
    assert c.has_unsaved_edits()
    qtbot.mouseClick(panel.save_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ReviewQueue(run).item("../../escape").decision == "edited", timeout=20000)
    edited = run / "labels" / "edited" / "_.._escape.png"
    assert edited.is_file() and ReviewQueue(run).item("../../escape").labels == edited
    new = {p for p in work.rglob("*") if p.is_file()} - before
    assert all(run.resolve() in p.resolve().parents for p in new), sorted(map(str, new))
    done = []
    c.export_accepted(tmp_path / "accepted", on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=20000)
    assert [p.name for p in done[0]] == ["_.._escape.png"]
    assert not any("not for export" in p.read_text(errors="replace")
                   for p in (tmp_path / "accepted").iterdir())
