"""The window after a kill -9 of its MedPLIB engine process, in a real X window (Xvfb):
scripts/engine_lost_screenshot.py paints a label, kills the process mid-answer and grabs the
screen; the panel's red "engine connection lost" line and the painted label must be on it."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import numpy as np
import pytest

from test_gui_chat_xvfb import ROOT, demo_paths  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.xvfb, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_engine_lost_screenshot(tmp_path, demo_paths):
    from PIL import Image

    path = ROOT / "scripts" / "engine_lost_screenshot.py"
    spec = importlib.util.spec_from_file_location("medplib_engine_lost_shot", path)
    sys.modules[spec.name] = mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shot = mod.take(tmp_path / "lost.png", tiny=demo_paths.checkpoint.parent, timeout=500)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] >= 800 and img.shape[1] >= 1200 and img.std() > 30
    right, left = img[:, img.shape[1] * 2 // 3:], img[:, : img.shape[1] * 2 // 3]

    def count(part, rgb, tol=40):
        return int((np.abs(part - np.array(rgb)).sum(axis=2) < tol).sum())

    assert count(right[: img.shape[0] // 3], (0xb0, 0x00, 0x20)) >= 300  # the red state line
    reds = (left[..., 0] - left[..., 1] > 60) & (left[..., 0] - left[..., 2] > 20)
    assert reds.sum() >= 2000  # the painted label is still drawn over the scan
