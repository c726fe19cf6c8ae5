"""The PACS in the GUI against a real Orthanc: add a server, search, open a series, draw,
send the labels back as a DICOM SEG; errors shown in the dialog with server and reason."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QDialogButtonBox  # noqa: E402

from app.automation import drag, image_point  # noqa: E402
from medplib_core import load  # noqa: E402
from medplib_core.pacs.client import PacsClient  # noqa: E402
from medplib_core.pacs.credentials import Credentials, forget  # noqa: E402

from orthanc_server import PASSWORD, USER, free_port  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]


@pytest.fixture
def win(make_window, pacs):
    forget(pacs.dicomweb)  # the GUI must get the credentials from what the user types
    return make_window(size=(1100, 760), autosave_ms=60000)


def add_server(qtbot, browser, url: str, password: str, name: str = "Test PACS"):
    qtbot.mouseClick(browser.add_button, Qt.MouseButton.LeftButton)
    dlg = browser.server_dialog
    qtbot.waitUntil(dlg.isVisible, timeout=5000)
    qtbot.keyClicks(dlg.name, name)
    qtbot.keyClicks(dlg.url, url)
    dlg.auth.setCurrentIndex(dlg.auth.findData("basic"))
    qtbot.keyClicks(dlg.username, USER)
    qtbot.keyClicks(dlg.secret, password)
    return dlg


def search(qtbot, browser, field, text: str):
    field.clear()
    qtbot.keyClicks(field, text)
    qtbot.mouseClick(browser.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: browser._task is None and not browser.busy.isVisible(), timeout=30000)


def test_open_a_series_from_the_pacs_draw_and_send_the_seg_back(qtbot, win, pacs, pacs_series, tmp_path):
    s = pacs_series["ct_small"]
    browser = win.extension("pacs").show_browser()
    assert "No PACS server yet" in browser.status.text()
    dlg = add_server(qtbot, browser, pacs.dicomweb + "/", PASSWORD)
    qtbot.mouseClick(dlg.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.status.text().startswith("Connected"), timeout=30000)
    qtbot.mouseClick(dlg.buttons.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton)
    assert browser.current_server().service == pacs.dicomweb
    assert "Kept for this session only" in browser.status.text() or "keyring" in browser.status.text()

    search(qtbot, browser, browser.patient_id, "1CT1")
    assert browser.study_table.rowCount() == 1
    assert browser.study_table.item(0, 0).text() == "CompressedSamples CT1"
    qtbot.waitUntil(lambda: browser.series_table.rowCount() == 1, timeout=30000)
    assert [browser.series_table.item(0, c).text() for c in (0, 3)] == ["CT", "1"]
    rect = browser.series_table.visualItemRect(browser.series_table.item(0, 2))
    qtbot.mouseClick(browser.series_table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert browser.open_button.isEnabled()
    # a double click (QTest's needs the press of the first click before it, as a real one has)
    qtbot.mouseDClick(browser.series_table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: win.session.volume is not None and not win.files.loading, timeout=60000)
    assert not browser.isVisible()
    assert win.session.path == s["url"]
    local = load(s["folder"])
    assert np.array_equal(win.session.volume.array, local.array) and win.session.volume.origin == local.origin
    assert win.settings.recent_files()[0] == s["url"]

    cv = win.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_B)
    drag(cv, image_point(cv, 30, 30), image_point(cv, 90, 95))
    qtbot.waitUntil(lambda: win.session.proposal is not None and win.engine.pending is None, timeout=10000)
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: any(win.session.counts.values()), timeout=10000)

    assert win.actions_by_name["pacs_send"].isEnabled()
    win.actions_by_name["pacs_send"].trigger()
    send = win.extension("pacs").send_dialog
    assert "where the scan came from" in send.target.currentText()
    assert send.format.currentData() == "seg"
    qtbot.mouseClick(send.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: send.result is not None or "#b00020" in send.status.styleSheet(), timeout=60000)
    assert send.result is not None, send.status.text()
    assert send.status.text().startswith(f"Stored in {pacs.dicomweb}")
    rows = PacsClient(pacs.dicomweb, Credentials("basic", USER, PASSWORD)).search_series(s["study"])
    seg = next(r for r in rows if r.series_uid == send.result.series_uid)
    assert seg.modality == "SEG"
    ds = next(PacsClient(pacs.dicomweb, Credentials("basic", USER, PASSWORD)).iter_series(s["study"], seg.series_uid))
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == s["series"]

    win.actions_by_name["pacs_send"].trigger()  # the same labels as an RT Structure Set
    send = win.extension("pacs").send_dialog
    send.format.setCurrentIndex(send.format.findData("rtstruct"))
    qtbot.mouseClick(send.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: send.result is not None or "#b00020" in send.status.styleSheet(), timeout=60000)
    assert send.result is not None and send.result.sop_class == "1.2.840.10008.5.1.4.1.1.481.3", send.status.text()
    assert "RT Structure Set series" in send.status.text()

    # a project keeps the series URL (no cache path, no secret) and reopens from the PACS
    project = tmp_path / "ct.medplib"
    assert win.files.save_project(str(project))
    qtbot.waitUntil(lambda: win.files.project_path == str(project), timeout=20000)
    saved = (project / "project.json").read_text()
    assert s["url"] in saved and PASSWORD not in saved and "pacs-cache" not in saved
    labelled = win.session.labelmap.array.copy()
    win.files.open_project(str(project))
    qtbot.waitUntil(lambda: not win.files.loading and win.session.path == s["url"], timeout=60000)
    assert np.array_equal(win.session.labelmap.array, labelled)


def test_wrong_password_and_server_down_are_said_in_the_browser(qtbot, win, pacs, pacs_series):
    browser = win.extension("pacs").show_browser()
    dlg = add_server(qtbot, browser, pacs.dicomweb, "wrong-password")
    qtbot.mouseClick(dlg.buttons.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton)
    search(qtbot, browser, browser.patient_name, "Doe")
    text = browser.status.text()
    assert text.startswith(pacs.dicomweb) and "refused the credentials (HTTP 401" in text
    assert "wrong-password" not in text and "Traceback" not in text
    assert browser.study_table.rowCount() == 0

    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    add_server(qtbot, browser, dead, PASSWORD, name="Down")
    qtbot.mouseClick(browser.server_dialog.buttons.button(QDialogButtonBox.StandardButton.Save),
                     Qt.MouseButton.LeftButton)
    assert browser.current_server().service == dead
    search(qtbot, browser, browser.patient_name, "Doe")
    assert browser.status.text().startswith(dead) and "cannot connect" in browser.status.text()

    browser.date_from.setText("2024-13-01")
    qtbot.mouseClick(browser.search_button, Qt.MouseButton.LeftButton)
    assert "not a valid date" in browser.status.text()
