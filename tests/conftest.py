"""Shared fixtures: where the real test data lives, and skips with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# GUI tests draw offscreen unless a caller chose a platform (the Xvfb tests set their own).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def shared_data_dir() -> Path | None:
    env = os.environ.get("MEDPLIB_SHARED_DATA")
    cand = Path(env) if env else REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $MEDPLIB_SHARED_DATA); skips the test when it is missing."""
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present (set MEDPLIB_SHARED_DATA to its location)")
    return d


@pytest.fixture(scope="session")
def pydicom_ct_path() -> str:
    """pydicom's real CT slice (CT_small.dcm, 128x128, HU)."""
    from pydicom.data import get_testdata_file

    return get_testdata_file("CT_small.dcm")


# ----- a real PACS (Orthanc + its DICOMweb plugin), one per test session -----------------------
@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A running Orthanc on 127.0.0.1 (basic authentication); skips when it is not installed."""
    from orthanc_server import OrthancServer, find_dicomweb_plugin, find_orthanc

    binary, plugin = find_orthanc(), find_dicomweb_plugin()
    if binary is None:
        pytest.skip("the Orthanc PACS is not installed (Debian package 'orthanc'; scripts/setup.sh installs it)")
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian package 'orthanc-dicomweb')")
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"), binary, plugin)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pacs_series(orthanc, tmp_path_factory) -> dict:
    """Real series uploaded to the test Orthanc, each with its local copy: pydicom's CT series
    (5 slices), a CT series with a gap, CT_small and MR_small, and (when ../shared/data is
    there) the shared JPEG 2000 CT with its empty UIDs filled in. name -> description."""
    from pydicom.data import get_testdata_file

    from orthanc_server import upload_series

    root = tmp_path_factory.mktemp("pacs-series")
    tests = Path(get_testdata_file("CT_small.dcm")).parent
    out = {
        "ct5": upload_series(orthanc, "ct5", (tests / "dicomdirtests/98892001/CT5N").iterdir(), root / "ct5"),
        "ct_gap": upload_series(orthanc, "ct_gap", (tests / "dicomdirtests/77654033/CT2").iterdir(), root / "ct_gap"),
        "ct_small": upload_series(orthanc, "ct_small", [tests / "CT_small.dcm"], root / "ct_small"),
        "mr_small": upload_series(orthanc, "mr_small", [tests / "MR_small.dcm"], root / "mr_small"),
    }
    shared = shared_data_dir()
    ct = shared / "volumes" / "ct_series_j2k" if shared else None
    if ct is not None and ct.is_dir():
        out["ct_j2k"] = upload_series(orthanc, "ct_j2k", ct.iterdir(), root / "ct_j2k", PatientName="Shared^CT",
                                      PatientID="SHARED-CT", AccessionNumber="ACC-J2K-1")
    return out


@pytest.fixture
def pacs(orthanc, tmp_path, monkeypatch):
    """This test's own PACS cache, and the test server's credentials for this process."""
    from medplib_core.pacs.credentials import Credentials, forget, remember

    from orthanc_server import PASSWORD, USER

    monkeypatch.setenv("MEDPLIB_PACS_CACHE", str(tmp_path / "pacs-cache"))
    for var in ("MEDPLIB_DICOMWEB_TOKEN", "MEDPLIB_DICOMWEB_USER", "MEDPLIB_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    remember(orthanc.dicomweb, Credentials("basic", USER, PASSWORD))
    yield orthanc
    forget(orthanc.dicomweb)


@pytest.fixture
def make_window(qtbot, tmp_path):
    """``make(engine=ThresholdEngine, scan=None, size=(1200, 800), settings=None, wait_engine=True,
    **kw)``: a real, shown `MainWindow` with settings and data isolated under ``tmp_path``.

    ``engine`` is the engine factory (None: the default, LiteMedSAM); ``settings`` are values set
    before the window is built (extensions read them then); ``scan`` is dropped onto the window
    and waited for. Every window made is closed after the test."""
    from app.main_window import MainWindow
    from app.settings import Settings
    from studio_support import ThresholdEngine, drop_path, isolate

    isolate(tmp_path)
    made = []

    def make(engine=ThresholdEngine, scan=None, size=(1200, 800), settings=None, wait_engine=True, **kw):
        prefs = Settings()
        for key, value in (settings or {}).items():
            prefs.set(key, value)
        w = MainWindow(engine_factory=engine, settings=prefs, autosave_ms=kw.pop("autosave_ms", 300), **kw)
        qtbot.addWidget(w)
        made.append(w)
        w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        if wait_engine:
            qtbot.waitUntil(lambda: w.engine.ready, timeout=240000)
        if scan is not None:
            drop_path(w, scan)
            qtbot.waitUntil(lambda: w.session.volume is not None and not w.files.loading, timeout=30000)
        return w

    yield make
    for w in made:  # a window left with unsaved work closes dropping it (its question is the tests')
        w.close_discarding()
