"""The chat panel in a real X window (Xvfb): scripts/chat_screenshot.py asks a region question
with the tiny demo checkpoint and grabs the screen; the transcript's region reference (blue)
and mask link (yellow) must be on it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.xvfb, pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_paths(tmp_path_factory):
    from test_medplib_support import _root, tiny_set

    return tiny_set(_root(tmp_path_factory), "demo")


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_chat_screenshot(tmp_path, demo_paths):
    from PIL import Image

    spec = importlib.util.spec_from_file_location("medplib_chat_screenshot", ROOT / "scripts" / "chat_screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    shot = mod.take(tmp_path / "chat.png", tiny=demo_paths.checkpoint.parent, timeout=240)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] >= 800 and img.shape[1] >= 1200 and img.std() > 30
    right = img[:, img.shape[1] // 2:]

    def has(rgb, n=200):
        return int((np.abs(right - np.array(rgb)).sum(axis=2) < 30).sum()) >= n

    assert has((0x1f, 0x5f, 0xbf))  # the region reference chip
    assert has((0xff, 0xd8, 0x3a))  # the grounded mask link
