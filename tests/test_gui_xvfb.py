"""The app in a real X window (Xvfb): start it, screenshot the X screen, check it is not blank."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.xvfb, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_real_window_screenshot_is_not_blank(tmp_path):
    from PIL import Image

    from screenshot import take

    shot = take(tmp_path, engine=False, timeout=150)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] >= 800 and img.shape[1] >= 1200  # the X screen
    grey = img.mean(axis=2)
    assert grey.std() > 30  # not one flat colour
    # the scan (black background, bright skull) and the light panels are all there
    assert (grey < 20).mean() > 0.1 and (grey > 200).mean() > 0.1
    colours = np.unique(img.reshape(-1, 3)[:: 7], axis=0)
    assert len(colours) > 100
    window = np.asarray(Image.open(tmp_path / "window.png").convert("RGB"))
    assert window.shape[0] > 600 and window.std() > 30
