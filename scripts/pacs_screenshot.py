"""Screenshot of the study browser (File ▸ Open from PACS…) searching a real Orthanc.

    python scripts/pacs_screenshot.py [--out /tmp/pacs_browser.png]

Starts Orthanc with its DICOMweb plugin on free local ports (Debian packages ``orthanc`` and
``orthanc-dicomweb``), uploads pydicom's CT and MR series and, when ``../shared/data`` is there,
the shared JPEG 2000 CT; runs the app on a virtual X server (Xvfb) and, with real key and mouse
events, adds the server, searches, selects a study and its series, and grabs the X screen
(``--out``) and the dialog alone (``_dialog`` added to the name). Everything it started is
stopped again. Prints the PNG paths; exit code 0 on success.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

HOOK = r'''
import os
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialogButtonBox
window.resize(1400, 880)
window.move(0, 0)
file_menu = window.menuBar().actions()[0].menu()
assert window.actions_by_name["pacs_open"] in file_menu.actions(), "File menu has no Open from PACS"
window.actions_by_name["pacs_open"].trigger()
b = window.extension("pacs").browser
assert wait_until(b.isVisible, 10)
b.move(140, 90)
QTest.mouseClick(b.add_button, Qt.MouseButton.LeftButton)
d = b.server_dialog
assert wait_until(d.isVisible, 10)
QTest.keyClicks(d.name, "Orthanc (test)")
QTest.keyClicks(d.url, os.environ["SHOT_URL"])
d.auth.setCurrentIndex(d.auth.findData("basic"))
QTest.keyClicks(d.username, os.environ["SHOT_USER"])
QTest.keyClicks(d.secret, os.environ["SHOT_PASSWORD"])
QTest.mouseClick(d.buttons.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton)
QTest.keyClicks(b.modality.lineEdit(), "CT")
QTest.mouseClick(b.search_button, Qt.MouseButton.LeftButton)
assert wait_until(lambda: b.study_table.rowCount() > 0 and not b.busy.isVisible(), 60), b.status.text()
row = int(os.environ.get("SHOT_ROW", "0"))
names = [b.study_table.item(r, 0).text() for r in range(b.study_table.rowCount())]
row = next((r for r, n in enumerate(names) if n.startswith(os.environ.get("SHOT_PATIENT", "~"))), row)
rect = b.study_table.visualItemRect(b.study_table.item(row, 4))
QTest.mouseClick(b.study_table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
assert wait_until(lambda: b.series_table.rowCount() > 0 and not b.busy.isVisible(), 60), b.status.text()
wait(600)
shot = QGuiApplication.primaryScreen().grabWindow(0)
shot.save(os.environ["SHOT_OUT"])
b.grab().save(os.environ["SHOT_DIALOG"])
print("SHOT", os.environ["SHOT_OUT"], shot.width(), shot.height(), b.study_table.rowCount(),
      b.series_table.rowCount(), flush=True)
window.close_discarding()
'''


def take(out: Path, display: str | None = None, timeout: float = 300) -> tuple[Path, Path]:
    from pydicom.data import get_testdata_file

    from orthanc_server import PASSWORD, USER, OrthancServer, find_dicomweb_plugin, find_orthanc, upload_series
    from screenshot import run_hooked_app, shot_session

    binary, plugin = find_orthanc(), find_dicomweb_plugin()
    if binary is None or plugin is None:
        raise SystemExit("Orthanc and its DICOMweb plugin are needed (apt-get install orthanc orthanc-dicomweb)")
    out.parent.mkdir(parents=True, exist_ok=True)
    dialog = out.with_name(out.stem + "_dialog" + out.suffix)
    with tempfile.TemporaryDirectory(prefix="medplib-pacs-shot-") as tmp:
        tmp = Path(tmp)
        (tmp / "orthanc").mkdir()
        tests = Path(get_testdata_file("CT_small.dcm")).parent
        with OrthancServer(tmp / "orthanc", binary, plugin) as server:
            upload_series(server, "ct5", (tests / "dicomdirtests/98892001/CT5N").iterdir(), tmp / "s1")
            upload_series(server, "ct_gap", (tests / "dicomdirtests/77654033/CT2").iterdir(), tmp / "s2")
            upload_series(server, "ct_small", [tests / "CT_small.dcm"], tmp / "s3")
            upload_series(server, "mr_small", [tests / "MR_small.dcm"], tmp / "s4")
            shared = ROOT.parent / "shared" / "data" / "volumes" / "ct_series_j2k"
            patient = "Doe"
            if shared.is_dir():
                upload_series(server, "ct_j2k", shared.iterdir(), tmp / "s5", PatientName="Shared^CT",
                              PatientID="SHARED-CT", AccessionNumber="ACC-J2K-1", StudyDescription="CT abdomen")
                patient = "Shared"
            with shot_session(display, size="1600x1000x24") as (scratch, disp):
                run_hooked_app(HOOK, ["--no-engine"], {
                    "SHOT_OUT": str(out.resolve()), "SHOT_DIALOG": str(dialog.resolve()), "SHOT_URL": server.dicomweb,
                    "SHOT_USER": USER, "SHOT_PASSWORD": PASSWORD, "SHOT_PATIENT": patient,
                    "MEDPLIB_PACS_CACHE": str(scratch / "pacs-cache")}, scratch, disp, timeout)
    return out, dialog


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/pacs_browser.png", help="the screen PNG (the dialog alone beside it)")
    p.add_argument("--display", help="use this X display instead of starting Xvfb")
    a = p.parse_args(argv)
    for path in take(Path(a.out), a.display):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
