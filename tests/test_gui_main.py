"""The entry points: ``medplib-studio`` (app.launcher) opens the window or runs a headless core
subcommand; app.main's options; ``gui --sample`` opening a real CT; the core never needs Qt."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.main import add_arguments, argv_from, parse_args

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]

HOOK = """
import json, os
assert wait_until(lambda: window.session.volume is not None, 60), "no scan"
vol = window.session.volume
print("OPENED", vol.modality, vol.units, vol.shape, window.windowTitle(), flush=True)
print("ENGINE", window.status.engine.text(), flush=True)
window.close()
"""


def test_options_round_trip():
    ns = parse_args(["scan.dcm", "--series", "1.2.3", "--no-engine"])
    assert argv_from(ns) == ["scan.dcm", "--series", "1.2.3", "--no-engine"]
    sub = add_arguments(argparse.ArgumentParser())  # what `medplib-studio gui` can reuse
    assert argv_from(sub.parse_args(["--sample"])) == ["--sample"]


def _launch(tmp_path, *args: str) -> str:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDPLIB_STUDIO_HOOK=str(hook),
               MEDPLIB_STUDIO_DATA=str(tmp_path / "data"), MEDPLIB_STUDIO_SETTINGS=str(tmp_path / "s.ini"))
    out = subprocess.run([sys.executable, "-m", "app.launcher", *args, "--no-engine"], env=env,
                         cwd=str(REPO), capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "model not loaded" in out.stdout
    return out.stdout


def test_sample_opens_a_real_multi_slice_volume(tmp_path):
    from app.sample import sample_path

    stdout = _launch(tmp_path, "--sample")  # no "gui": options alone open the window
    line = next(x for x in stdout.splitlines() if x.startswith("OPENED"))
    shape = tuple(int(n) for n in line.split("(")[1].split(")")[0].split(","))
    assert len(shape) == 3 and min(shape) >= 10, line  # MPR, 2×2 and propagation can be tried
    assert Path(sample_path()).name in line and "../shared" not in sample_path()


def test_a_path_alone_opens_the_window(tmp_path, pydicom_ct_path):
    stdout = _launch(tmp_path, str(pydicom_ct_path))  # `medplib-studio scan.dcm`, as other viewers
    assert "OPENED CT HU (1, 128, 128) CT_small.dcm" in stdout


def test_core_subcommands_run_headless_through_both_entry_points(pydicom_ct_path):
    # every core module imports without Qt or the app; the launcher runs `info` without Qt
    code = ("import importlib, pkgutil, sys, medplib_core\n"
            "for m in pkgutil.walk_packages(medplib_core.__path__, 'medplib_core.'):\n"
            "    importlib.import_module(m.name)\n"
            "assert not [n for n in sys.modules if n.startswith(('PySide6', 'app'))], 'the core imported the GUI'\n"
            "from app.launcher import main\n"
            f"rc = main(['info', {str(pydicom_ct_path)!r}, '--json'])\n"
            "assert 'PySide6' not in sys.modules, 'a core subcommand imported Qt'\n"
            "sys.exit(rc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"modality": "CT"' in out.stdout
    core = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "info", str(pydicom_ct_path)],
                          cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert core.returncode == 0 and "CT" in core.stdout, core.stderr
    bare = subprocess.run([sys.executable, "-m", "medplib_core.cli.main"], cwd=str(REPO),
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 2 and "segment" in bare.stdout and "gui" not in bare.stdout
