"""Files in the GUI: series chooser, cancelled loading, errors as dialogs, projects, import,
DICOM SEG and PNG export, 2D colour images, settings and recent files between runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton  # noqa: E402

import app.files  # noqa: E402
from app.automation import image_point  # noqa: E402
from studio_support import drop_path, stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


def data_file(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    return path


@pytest.fixture
def make_win(make_window):
    return lambda: make_window(size=(1100, 760))


def open_scan(qtbot, w, path):
    drop_path(w, path)
    qtbot.waitUntil(lambda: w.session.volume is not None and not w.files.loading, timeout=20000)


def box_accept(qtbot, w, x0, y0, x1, y1):
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_B)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, x0, y0))
    qtbot.mouseMove(cv, image_point(cv, x1, y1))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, x1, y1))
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)
    qtbot.keyClick(cv, Qt.Key.Key_Return)


def message_boxes() -> list[QMessageBox]:
    return [b for b in QApplication.topLevelWidgets() if isinstance(b, QMessageBox) and b.isVisible()]


def test_series_chooser(qtbot, make_win, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    shutil.copy(data_file("CT_small.dcm"), folder / "a.dcm")
    shutil.copy(data_file("MR_small.dcm"), folder / "b.dcm")
    w = make_win()
    drop_path(w, folder)
    qtbot.waitUntil(lambda: getattr(w.files, "series_dialog", None) is not None, timeout=20000)
    dlg = w.files.series_dialog
    assert dlg.table.rowCount() == 2
    mods = [dlg.table.item(r, 0).text() for r in range(2)]
    dlg.table.selectRow(mods.index("MR"))
    dlg.accept()
    qtbot.waitUntil(lambda: w.session.volume is not None, timeout=20000)
    assert w.session.volume.modality == "MR"
    assert w.settings.recent_files()[0] == str(folder.resolve())
    assert w.files.series_dialog.chosen() is not None


def test_cancel_loading_keeps_the_window_usable(qtbot, make_win, tmp_path, monkeypatch):
    real = app.files.medplib_core.load

    def slow_load(path, series=None, progress=None, cancel=None):
        def tick(done, total):
            import time

            time.sleep(0.05)
            progress(done, total)
        return real(path, series=series, progress=tick, cancel=cancel)

    scan = stacked_ct(tmp_path / "ct.nii.gz", n=40)
    monkeypatch.setattr(app.files.medplib_core, "load", slow_load)
    w = make_win()
    drop_path(w, scan)
    assert w.files.loading and w.files._progress is not None
    w.files._progress.findChild(QPushButton).click()  # the progress dialog's Cancel button
    qtbot.waitUntil(lambda: not w.files.loading, timeout=20000)
    assert w.session.volume is None
    monkeypatch.setattr(app.files.medplib_core, "load", real)
    open_scan(qtbot, w, scan)
    assert w.session.volume.shape[0] == 40


def test_bad_file_shows_reason_not_traceback(qtbot, make_win, tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM" * 10)
    w = make_win()
    drop_path(w, bad)
    qtbot.waitUntil(lambda: bool(message_boxes()), timeout=20000)
    box = message_boxes()[0]
    assert "broken.dcm" in box.text() and "Traceback" not in box.text() + box.informativeText()
    box.close()
    assert w.session.volume is None


def test_project_save_and_open(qtbot, make_win, tmp_path):
    w = make_win()
    open_scan(qtbot, w, stacked_ct(tmp_path / "ct.nii.gz"))
    box_accept(qtbot, w, 30, 30, 90, 90)
    w.session.update_label(1, name="tumour")
    w.session.set_window(40, 80)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)  # 2×2
    w.viewer.views[1].set_index(70)
    saved = []
    w.files.saved.connect(saved.append)
    w.files.save_project(str(tmp_path / "case.medplib"))
    qtbot.waitUntil(lambda: bool(saved), timeout=20000)
    assert not w.files.dirty and "*" not in w.windowTitle()
    labels = w.session.labelmap.array.copy()

    w2 = make_win()
    drop_path(w2, tmp_path / "case.medplib")
    qtbot.waitUntil(lambda: w2.session.volume is not None and not w2.files.loading, timeout=20000)
    assert np.array_equal(w2.session.labelmap.array, labels)
    assert w2.session.labels[1].name == "tumour" and w2.session.window == (40.0, 80.0)
    rec = w2.session.prompts[0]
    assert rec.status == "accepted" and rec.prompt["box"] and rec.mask.any()
    assert w2.session.labels[1].provenance[0]["prompt_id"] == rec.id
    assert w2.viewer.layout_mode == "grid" and w2.viewer.views[1].index == 70  # where it was left


def test_import_labels_and_dicom_seg_export(qtbot, make_win, tmp_path):
    w = make_win()
    open_scan(qtbot, w, data_file("CT_small.dcm"))
    assert w.actions_by_name["export_seg"].isEnabled()
    box_accept(qtbot, w, 30, 30, 90, 90)
    done = []
    w.files.export(str(tmp_path / "seg.dcm"), on_done=done.append)
    w.files.export(str(tmp_path / "lab.nii.gz"), on_done=done.append)
    qtbot.waitUntil(lambda: len(done) == 2, timeout=60000)
    arr = w.session.labelmap.array.copy()
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not w.session.labelmap.array.any()
    w.files.import_labels(str(tmp_path / "seg.dcm"))
    qtbot.waitUntil(lambda: w.session.labelmap.array.any(), timeout=30000)
    assert np.array_equal(w.session.labelmap.array, arr)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not w.session.labelmap.array.any()


def test_colour_image_shows_as_one_slice(qtbot, make_win, tmp_path):
    w = make_win()
    open_scan(qtbot, w, data_file("SC_rgb.dcm"))
    vol = w.session.volume
    assert vol.is_colour and vol.is_2d
    view = w.viewer.active
    assert view.n_slices() == 1 and not view.slider.isVisible()
    assert not w.actions_by_name["layout_grid"].isEnabled() and w.actions_by_name["export_png"].isEnabled()
    img = view.canvas.scan_image
    assert img.width() == vol.shape[2] and img.pixelColor(0, 0).red() == int(vol.array[0, 0, 0, 0])
    box_accept(qtbot, w, 5, 5, 40, 40)
    done = []
    w.files.export(str(tmp_path / "mask.png"), on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=20000)
    assert (tmp_path / "mask.png").exists() or list(tmp_path.glob("mask*.png"))


def test_settings_and_recent_files_persist(qtbot, make_win, tmp_path):
    w = make_win()
    scan = stacked_ct(tmp_path / "ct.nii.gz")
    open_scan(qtbot, w, scan)
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_L)
    for _ in range(3):
        qtbot.keyClick(cv, Qt.Key.Key_BracketRight)
    size = w.tools.brush_size
    w.labels_panel.opacity.setValue(70)
    w.close()
    w2 = make_win()
    assert w2.tools.tool == "lasso" and w2.tools.brush_size == size
    assert w2.labels_panel.opacity.value() == 70
    assert w2.settings.recent_files()[0] == str(scan.resolve())
    assert [a.text() for a in w2.recent_menu.actions()][0] == str(scan.resolve())
    w2.show_shortcuts()
    assert w2.shortcuts_dialog.table.rowCount() > 30
    w2.shortcuts_dialog.close()


def test_opening_another_scan_asks_about_unsaved_changes(qtbot, make_win, tmp_path):
    w = make_win()
    open_scan(qtbot, w, stacked_ct(tmp_path / "a.nii.gz"))
    box_accept(qtbot, w, 30, 30, 90, 90)
    assert w.files.dirty and w.windowTitle().startswith("a.nii.gz *")
    drop_path(w, data_file("CT_small.dcm"))
    box = w.unsaved_box
    assert box.isVisible() and w.session.volume.shape[0] == 12  # nothing replaced yet
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Discard), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.session.volume.shape[0] == 1 and not w.files.loading, timeout=20000)
    assert not w.files.dirty and w.session.counts == {}


def test_quitting_with_unsaved_work_asks(qtbot, make_win, tmp_path):
    w = make_win()
    open_scan(qtbot, w, stacked_ct(tmp_path / "ct.nii.gz"))
    box_accept(qtbot, w, 30, 30, 90, 90)
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)  # Quit
    box = w.unsaved_box
    assert box is not None and box.isVisible() and w.isVisible() and "quit" in box.informativeText()
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert w.isVisible() and w.session.counts  # Cancel: still there, work intact
    qtbot.keyClick(cv, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.mouseClick(w.unsaved_box.discard_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=10000)
    w2 = make_win()  # discarded: nothing is offered back
    QApplication.processEvents()
    assert getattr(w2, "restore_box", None) is None and w2.autosaver.orphans() == []
