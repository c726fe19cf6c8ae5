"""The study browser in a real X window (Xvfb) against a real Orthanc: real key and mouse
events add the server, search and list a study's series; the screenshot is not blank."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.xvfb, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_study_browser_on_a_real_display(tmp_path):
    from PIL import Image

    from orthanc_server import find_dicomweb_plugin, find_orthanc

    if find_orthanc() is None or find_dicomweb_plugin() is None:
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (orthanc, orthanc-dicomweb)")
    spec = importlib.util.spec_from_file_location("medplib_pacs_screenshot", ROOT / "scripts" / "pacs_screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    screen, dialog = mod.take(tmp_path / "pacs.png", timeout=240)
    img = np.asarray(Image.open(screen).convert("RGB"))
    assert img.shape[0] >= 900 and img.shape[1] >= 1500 and img.std() > 30
    box = np.asarray(Image.open(dialog).convert("RGB"))
    assert box.shape[0] > 400 and box.shape[1] > 800
    # the hook itself fails unless the search found studies and the study's series were listed
    grey = box.mean(axis=2)
    assert grey.std() > 20 and len(np.unique(box.reshape(-1, 3)[::5], axis=0)) > 30
