"""One scripted annotation, run headless through `medplib_core` and through the real window
(real keys, mouse drags and clicks): two labels, a proposal accepted, a lock respected, undo and
redo, a chat turn with the tiny MedPLIB checkpoint whose grounded mask is accepted, save,
reopen and save again. Both give the same project files (times, latencies and the GUI's view
layout aside)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medplib_core
from medplib_core.annotation import PromptKind
from medplib_core.engines.base import Prompt
from medplib_core.engines.registry import create_engine
from medplib_core.medplib.selection import ENV
from medplib_core.project import load_project
from medplib_core.session import AnnotationSession, ConversationCache, RegionKind, RegionRef
from studio_support import ThresholdEngine, stacked_ct
from test_medplib_support import _root, tiny_set

pytestmark = [pytest.mark.gui, pytest.mark.timeout(400)]

SLICE = 6
LIVER_BOX, LESION_BOX, REGION_BOX = (30, 30, 90, 90), (20, 20, 110, 110), (45, 40, 74, 64)
QUESTION = "What is in <region>?"
VOLATILE = {"time", "latency_ms", "gui_latency_ms", "timing_s", "seconds",
            "prompt_positions_reused"}  # the fast decoder's shared rows: what ran before


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return tiny_set(_root(tmp_path_factory), "demo")


def headless(scan: Path, demo, folder: Path) -> Path:
    vol = medplib_core.load(scan)
    s = AnnotationSession(vol, str(scan))
    engine = ThresholdEngine()
    s.add_label()
    s.update_label(1, "rename label", name="liver")
    s.segment(engine, Prompt(box=LIVER_BOX), "axial", SLICE, PromptKind.BOX)
    s.accept()
    s.update_label(1, "lock label", locked=True)
    s.add_label()
    s.update_label(2, "rename label", name="lesion")
    s.segment(engine, Prompt(box=LESION_BOX), "axial", SLICE, PromptKind.BOX)
    s.accept()  # the locked liver keeps its voxels
    assert s.undo() and s.redo()
    s.segment(engine, Prompt(box=REGION_BOX), "axial", SLICE, PromptKind.BOX)
    medplib = create_engine({"name": "medplib", "checkpoint": str(demo.checkpoint), "clip": str(demo.clip),
                             "sam": str(demo.sam), "device": "cpu"})
    answer = s.chat.ask_now(medplib, ConversationCache(), ("axial", SLICE), QUESTION,
                            [RegionRef(RegionKind.BOX, list(REGION_BOX))])
    assert "liver" in answer.text and s.proposal.record.kind is PromptKind.GROUNDING
    s.update_label(1, "unlock label", locked=False)
    s.accept()  # the answer names the liver: its label takes the mask
    return s.save(folder)


def drag_box(qtbot, w, box):
    from PySide6.QtCore import Qt

    from app.automation import image_point

    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_B)
    x0, y0, x1, y1 = box  # pixel centres: the drag lands on these pixels whatever the zoom
    a, b = image_point(cv, x0 + 0.5, y0 + 0.5), image_point(cv, x1 + 0.5, y1 + 0.5)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(cv, a + (b - a) * (n / 5))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=20000)
    assert w.session.proposal.record.prompt["box"] == [float(v) for v in box]


def click_cell(qtbot, table, row, col):
    from PySide6.QtCore import Qt

    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualRect(table.model().index(row, col)).center())


def through_the_window(qtbot, make_window, scan: Path, demo, folder: Path) -> Path:
    from PySide6.QtCore import Qt

    from app.chat import install_chat_panel
    from app.labels_panel import COL_LOCK, COL_NAME

    settings = {f"medplib/{k}": str(v) for k, v in (("checkpoint", demo.checkpoint), ("clip", demo.clip),
                                                   ("sam", demo.sam), ("device", "cpu"))}
    w = make_window(size=(1300, 860), settings=settings, scan=scan)
    panel = install_chat_panel(w)
    view, cv = w.viewer.active, w.viewer.active.canvas
    table = w.labels_panel.table
    assert view.index == SLICE
    qtbot.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # label 1
    table.item(0, COL_NAME).setText("liver")  # what the inline editor commits
    drag_box(qtbot, w, LIVER_BOX)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    click_cell(qtbot, table, 0, COL_LOCK)
    assert w.session.labels[1].locked
    qtbot.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # label 2, active
    table.item(1, COL_NAME).setText("lesion")
    drag_box(qtbot, w, LESION_BOX)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(cv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    drag_box(qtbot, w, REGION_BOX)
    qtbot.mouseClick(panel.input, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(panel.input, QUESTION)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    [ok] = [b for b in panel.notice_box.buttons() if b.text() == "I understand"]
    ok.click()
    qtbot.waitUntil(lambda: not panel.busy and w.session.proposal is not None
                    and w.session.proposal.record.kind is PromptKind.GROUNDING, timeout=120000)
    click_cell(qtbot, table, 0, COL_LOCK)  # unlock the liver: the answer names it
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    assert w.session.proposal is None
    with qtbot.waitSignal(w.files.saved, timeout=30000):
        w.files.save_project(str(folder))
    return folder / "project.json"


def reopen_and_save(qtbot, make_window, folder: Path, again: Path) -> Path:
    w = make_window(scan=folder)  # a project folder dropped on the window opens it
    with qtbot.waitSignal(w.files.saved, timeout=30000):
        w.files.save_project(str(again))
    return again / "project.json"


def normalised(project_json: Path) -> tuple[dict, np.ndarray, dict]:
    doc = json.loads(project_json.read_text())
    for key in ("saved", "generation", "label_file", "prompt_file", "meta"):  # meta: where it was saved
        doc.pop(key)
    doc["view"] = {k: doc["view"][k] for k in ("active_label", "window")}

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    p = load_project(project_json)
    return strip(doc), p.label_array, {r.id: r.mask for r in p.prompts}


def test_the_same_annotation_headless_and_in_the_window(qtbot, make_window, demo, tmp_path, monkeypatch):
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    scan = stacked_ct(tmp_path / "ct.nii.gz")
    core = normalised(headless(scan, demo, tmp_path / "core.medplib"))
    gui = normalised(through_the_window(qtbot, make_window, scan, demo, tmp_path / "gui.medplib"))
    reopened = normalised(reopen_and_save(qtbot, make_window, tmp_path / "gui.medplib", tmp_path / "again.medplib"))
    for other in (gui, reopened):
        assert other[0] == core[0]
        np.testing.assert_array_equal(other[1], core[1])
        assert other[2].keys() == core[2].keys()
        for pid, mask in core[2].items():
            np.testing.assert_array_equal(other[2][pid], mask)
    doc, labels, _ = core
    liver, lesion = doc["labels"]
    assert liver["name"] == "liver" and not liver["locked"] and lesion["name"] == "lesion"
    assert [e["kind"] for e in liver["provenance"]] == ["box", "grounding"]  # the structure named
    assert [e["kind"] for e in lesion["provenance"]] == ["box"]
    assert [(p["kind"], p["status"]) for p in doc["prompts"]] == [
        ("box", "accepted"), ("box", "accepted"), ("box", "proposed"), ("grounding", "accepted")]
    assert doc["prompts"][3]["label_value"] == 1
    [conv] = doc["chat"]
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
