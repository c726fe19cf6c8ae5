"""The 3D pane's OpenGL probe on a real X display (Xvfb, Mesa llvmpipe) followed by the import
of torchvision a LiteMedSAM load does: both carry LLVM, and in that order the process used to
die with a segmentation fault (the window vanished while LiteMedSAM loaded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

pytestmark = [pytest.mark.gui, pytest.mark.xvfb, pytest.mark.timeout(300)]

PROBE = r'''
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.surface_view import gl_unavailable_reason
print("GL", gl_unavailable_reason(), flush=True)
import torchvision.models  # reaches torch._dynamo and Triton's native library
print("TORCHVISION OK", flush=True)
'''


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_gl_probe_then_torchvision_does_not_crash():
    pytest.importorskip("torchvision")
    from screenshot import start_xvfb

    xvfb, display = start_xvfb()
    try:
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=str(ROOT),
                              capture_output=True, text=True, timeout=240)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "GL None" in proc.stdout and "TORCHVISION OK" in proc.stdout
