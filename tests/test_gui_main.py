"""`app.main`: command-line options, and ``--sample`` opening a real CT in the window."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.main import add_arguments, argv_from, parse_args

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]

HOOK = """
import json, os
assert wait_until(lambda: window.doc.volume is not None, 60), "no scan"
vol = window.doc.volume
print("OPENED", vol.modality, vol.units, vol.shape, window.windowTitle(), flush=True)
print("ENGINE", window.status.engine.text(), flush=True)
window.close()
"""


def test_options_round_trip():
    ns = parse_args(["scan.dcm", "--series", "1.2.3", "--no-engine"])
    assert argv_from(ns) == ["scan.dcm", "--series", "1.2.3", "--no-engine"]
    sub = add_arguments(argparse.ArgumentParser())  # what `medplib-studio gui` can reuse
    assert argv_from(sub.parse_args(["--sample"])) == ["--sample"]


def test_sample_opens_a_real_ct(tmp_path):
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDPLIB_STUDIO_HOOK=str(hook),
               MEDPLIB_STUDIO_DATA=str(tmp_path / "data"), MEDPLIB_STUDIO_SETTINGS=str(tmp_path / "s.ini"))
    out = subprocess.run([sys.executable, "-m", "app.main", "--sample", "--no-engine"], env=env,
                         cwd=str(Path(__file__).resolve().parents[1]), capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OPENED CT HU" in out.stdout
    assert "model not loaded" in out.stdout
