"""File dialogs a radiologist meets first: Open scan lists a scanner's DICOM folder (files
without an extension), opens a folder with "Open", and offers the whole series when one of its
files is picked; Export suggests a name that collides with no file (a scan folder often holds
the reference labels) and remembers the folder last exported to. Real dialogs, real keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QLineEdit  # noqa: E402

from studio_support import stacked_ct  # noqa: E402
from test_gui_projects import choose  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]
CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.fixture
def scanner_folder(tmp_path) -> Path:
    """pydicom's real 5-slice CT series, copied as a scanner writes it: no file extensions."""
    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"
    folder = tmp_path / "SE000002"
    folder.mkdir()
    for n, f in enumerate(sorted(src.iterdir())):
        shutil.copy(f, folder / f"IM{n:05d}")
    assert not any(p.suffix for p in folder.iterdir())
    return folder


def listed(dlg) -> list[str]:
    """The names the dialog's file list shows in its current folder."""
    proxy = dlg.proxyModel()
    model = proxy.sourceModel()
    root = proxy.mapFromSource(model.index(dlg.directory().absolutePath()))
    return sorted(proxy.index(r, 0, root).data() for r in range(proxy.rowCount(root)))


def test_open_scan_dialog_lists_and_opens_dicom_without_extension(qtbot, make_window, scanner_folder, tmp_path):
    (scanner_folder.parent / "notes.txt").write_text("not a scan")
    w = make_window(size=(1100, 760))
    w.settings.set("last_dir", str(scanner_folder.parent))
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_O, CTRL)
    dlg = w.file_dialog
    qtbot.waitUntil(dlg.isVisible)
    dlg.setDirectory(str(scanner_folder))
    qtbot.waitUntil(lambda: len(listed(dlg)) == 5, timeout=10000)  # the extension-less DICOM files
    dlg.setDirectory(str(scanner_folder.parent))
    qtbot.waitUntil(lambda: "SE000002" in listed(dlg), timeout=10000)
    assert "notes.txt" not in listed(dlg)
    choose(qtbot, dlg, scanner_folder)  # "Open" on the folder opens it (it holds DICOM files)
    qtbot.waitUntil(lambda: w.session.volume is not None and not w.files.loading, timeout=30000)
    assert w.session.volume.shape[0] == 5 and not dlg.isVisible()

    # one file of the series picked: the whole series is offered
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_O, CTRL)
    choose(qtbot, w.file_dialog, scanner_folder / "IM00002")
    qtbot.waitUntil(lambda: w.series_box is not None and w.series_box.isVisible(), timeout=20000)
    assert "one of 5 images" in w.series_box.text()
    qtbot.mouseClick(w.series_box.single_button, Qt.MouseButton.LeftButton)  # only this image
    qtbot.waitUntil(lambda: w.session.volume.shape[0] == 1 and not w.files.loading, timeout=30000)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_O, CTRL)
    choose(qtbot, w.file_dialog, scanner_folder / "IM00003")
    qtbot.waitUntil(lambda: w.series_box is not None and w.series_box.isVisible(), timeout=20000)
    qtbot.mouseClick(w.series_box.whole_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.session.volume.shape[0] == 5 and not w.files.loading, timeout=30000)
    assert Path(w.session.path) == scanner_folder


def test_export_name_collides_with_nothing_and_folder_is_remembered(qtbot, make_window, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    scan = stacked_ct(case / "ct_small_abdomen.nii.gz")
    reference = case / "ct_small_abdomen_labels.nii.gz"
    reference.write_bytes(b"the reference labels")  # what the scan's folder already holds
    w = make_window(scan=scan, size=(1100, 760))
    w.session.add_label("x")
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_E, CTRL)  # Export NIfTI
    dlg = w.file_dialog
    qtbot.waitUntil(dlg.isVisible)
    name = dlg.findChild(QLineEdit, "fileNameEdit").text()
    assert name == "ct_small_abdomen_labels-2.nii.gz" and Path(dlg.directory().absolutePath()) == case
    out = tmp_path / "exports"
    out.mkdir()
    with qtbot.waitSignal(w.files.message, timeout=20000):
        choose(qtbot, dlg, out / name)
    qtbot.waitUntil(lambda: (out / name).is_file(), timeout=20000)
    assert reference.read_bytes() == b"the reference labels"  # untouched
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_E, CTRL)  # again: the folder exported to
    dlg = w.file_dialog
    qtbot.waitUntil(dlg.isVisible)
    assert Path(dlg.directory().absolutePath()) == out
    assert dlg.findChild(QLineEdit, "fileNameEdit").text() == "ct_small_abdomen_labels.nii.gz"  # free there
    dlg.reject()
