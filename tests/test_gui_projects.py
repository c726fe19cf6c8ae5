"""A project is one thing: opened as a folder (or through its project.json) with File ▸ Open
project…, saved back with Ctrl+S and Save As onto its own folder, listed in Open recent as the
folder; the title names the project and forgets it when another scan opens; a crash session
restored from the autosave still belongs to its project (Ctrl+S saves there). Every step
through the real dialogs and keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QLineEdit  # noqa: E402

from app.automation import image_point  # noqa: E402
from studio_support import drop_path, stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]
CTRL, SHIFT, ALT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier, Qt.KeyboardModifier.AltModifier


def choose(qtbot, dlg, path) -> None:
    """Type ``path`` into a file dialog's name field and press Enter, as a user does."""
    qtbot.waitUntil(dlg.isVisible)
    dlg.activateWindow()  # keys go to the dialog, not to the window's shortcuts
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dlg)
    edit = dlg.findChild(QLineEdit, "fileNameEdit")
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClicks(edit, str(path))
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def paint(qtbot, w, x0, y0, x1, y1) -> None:
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_D)
    a, b = image_point(cv, x0, y0), image_point(cv, x1, y1)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(cv, b)
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)


def saved(qtbot, w, action) -> None:
    with qtbot.waitSignal(w.files.saved, timeout=20000):
        action()


def test_open_project_as_folder_save_back_and_recent(qtbot, make_window, tmp_path):
    scan = stacked_ct(tmp_path / "ct.nii.gz")
    w = make_window(scan=scan, size=(1200, 800))
    cv = w.viewer.active.canvas
    paint(qtbot, w, 20, 30, 60, 40)
    assert w.windowTitle().startswith("ct.nii.gz *")
    folder = tmp_path / "case.medplib"
    qtbot.keyClick(cv, Qt.Key.Key_S, CTRL)  # no project yet: Save asks where
    saved(qtbot, w, lambda: choose(qtbot, w.file_dialog, tmp_path / "case"))
    assert (folder / "project.json").is_file() and w.files.project_path == str(folder)
    assert w.windowTitle().startswith("case.medplib —")

    # another scan: the title forgets the project
    drop_path(w, stacked_ct(tmp_path / "other.nii.gz", n=8))
    qtbot.waitUntil(lambda: w.session.volume.shape[0] == 8 and not w.files.loading, timeout=20000)
    assert w.files.project_path is None and w.windowTitle() == "other.nii.gz — MedPLIB Studio"

    # File ▸ Open project…, picking the project.json inside the folder: the folder is opened
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_O, CTRL | ALT)
    choose(qtbot, w.file_dialog, folder / "project.json")
    qtbot.waitUntil(lambda: w.session.volume.shape[0] == 12 and not w.files.loading, timeout=20000)
    assert w.files.project_path == str(folder) and w.windowTitle().startswith("case.medplib —")
    assert w.settings.recent_files()[0] == str(folder.resolve())
    before = int(w.session.counts[1])
    paint(qtbot, w, 20, 60, 60, 70)
    assert w.windowTitle().startswith("case.medplib *")
    saved(qtbot, w, lambda: qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_S, CTRL))  # saved back
    assert "*" not in w.windowTitle() and not (folder / "project.json" / "project.json").exists()
    doc = json.loads((folder / "project.json").read_text())
    assert doc["meta"]["project_folder"] == str(folder)

    # Save As onto the project's own folder saves it there (the dialog does not enter it)
    paint(qtbot, w, 20, 80, 60, 90)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_S, CTRL | SHIFT)
    saved(qtbot, w, lambda: choose(qtbot, w.file_dialog, folder))
    assert w.files.project_path == str(folder) and not w.files.dirty
    after = int(w.session.counts[1])

    # the folder opens through the dialog too (Open on a project folder chooses it), from the list
    drop_path(w, scan)
    qtbot.waitUntil(lambda: w.files.project_path is None and not w.files.loading, timeout=20000)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_O, CTRL | ALT)
    choose(qtbot, w.file_dialog, folder)
    qtbot.waitUntil(lambda: w.files.project_path == str(folder) and not w.files.loading, timeout=20000)
    assert int(w.session.counts[1]) == after > before
    recent = [a.text() for a in w.recent_menu.actions()]
    assert recent[0] == str(folder.resolve()) and not any(t.endswith("project.json") for t in recent)


def test_save_as_another_project_asks_first(qtbot, make_window, tmp_path):
    scan = stacked_ct(tmp_path / "ct.nii.gz")
    w = make_window(scan=scan, size=(1200, 800))
    paint(qtbot, w, 20, 30, 60, 40)
    saved(qtbot, w, lambda: w.files.save_project(str(tmp_path / "first.medplib")))
    drop_path(w, scan)
    qtbot.waitUntil(lambda: w.files.project_path is None and not w.files.loading, timeout=20000)
    paint(qtbot, w, 20, 60, 30, 90)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_S, CTRL | SHIFT)
    dlg = w.file_dialog
    choose(qtbot, dlg, tmp_path / "first.medplib")
    qtbot.waitUntil(lambda: getattr(dlg, "replace_box", None) is not None and dlg.replace_box.isVisible())
    assert "another project" in dlg.replace_box.text() and w.files.project_path is None
    saved(qtbot, w, lambda: qtbot.mouseClick(dlg.replace_box.button(dlg.replace_box.StandardButton.Yes),
                                             Qt.MouseButton.LeftButton))
    assert w.files.project_path == str(tmp_path / "first.medplib")


RESTORE = """
import json, os
assert wait_until(lambda: getattr(window, "restore_box", None) is not None, 30), "no restore offer"
QTest.mouseClick(window.restore_box.restore_button, Qt.MouseButton.LeftButton)
assert wait_until(lambda: window.session.volume is not None and window.session.counts, 60), "nothing restored"
title = window.windowTitle()
saved = []
window.files.saved.connect(saved.append)
QTest.keyClick(window.viewer.active.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
assert wait_until(lambda: bool(saved), 30), "Ctrl+S did not save"
with open(os.environ["MARKER"], "w") as fh:
    json.dump({"title": title, "saved": saved, "project": window.files.project_path,
               "dialog": window.file_dialog is not None, "counts": window.session.counts}, fh)
window.close()
"""

EDIT = """
import json, os
assert wait_until(lambda: window.session.volume is not None and window.files.project_path, 60), "no project"
cv = window.viewer.active.canvas
QTest.keyClick(cv, Qt.Key.Key_D)
drag(cv, image_point(cv, 20, 50), image_point(cv, 90, 60))
assert wait_until(lambda: not window.autosaver.pending, 30), "no autosave"
with open(os.environ["MARKER"], "w") as fh:
    json.dump({"counts": window.session.counts}, fh)
wait(600000)
"""


@pytest.mark.slow
def test_restored_crash_session_saves_into_its_project(qtbot, make_window, tmp_path):
    from test_gui_recovery import _start, _wait_file, run_until_killed

    scan = stacked_ct(tmp_path / "ct.nii.gz")
    w = make_window(scan=scan, size=(1100, 760), wait_engine=False)
    paint(qtbot, w, 20, 30, 60, 40)
    folder = tmp_path / "case.medplib"
    saved(qtbot, w, lambda: w.files.save_project(str(folder)))
    w.close()

    edited, _ = run_until_killed(tmp_path, EDIT, tmp_path / "edited.json", str(folder))
    second = _start(tmp_path, RESTORE, tmp_path / "restored.json")
    restored = _wait_file(tmp_path / "restored.json", second, 90)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    assert restored["title"].startswith("case.medplib *")  # the restored work is the project's, unsaved
    assert restored["project"] == str(folder) and restored["saved"] == [str(folder)]
    assert not restored["dialog"]  # Ctrl+S saved into the project: no "save as" question
    assert restored["counts"] == edited["counts"]
    from medplib_core.project import load_project

    back = load_project(folder)
    assert int(np.count_nonzero(back.label_array)) == sum(edited["counts"].values())
