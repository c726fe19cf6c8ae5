"""Crash recovery: an app process with an accepted edit is killed (SIGKILL) after its autosave;
the next start offers the work back, and restoring it brings the edit back exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio_support import stacked_ct

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(180)]

EDIT = """
import json, os
assert wait_until(lambda: window.session.volume is not None, 60), "scan did not load"
cv = window.viewer.active.canvas
QTest.keyClick(cv, Qt.Key.Key_D)                       # brush tool
drag(cv, image_point(cv, 20, 30), image_point(cv, 90, 40))
assert window.session.counts, "the brush stroke changed nothing"
assert wait_until(lambda: not window.autosaver.pending, 30), "no autosave"
with open(os.environ["MARKER"] + ".tmp", "w") as fh:
    json.dump({"counts": window.session.counts, "pid": os.getpid()}, fh)
os.replace(os.environ["MARKER"] + ".tmp", os.environ["MARKER"])
wait(600000)                                           # keep running until killed
"""

RESTORE = """
import json, os
assert wait_until(lambda: getattr(window, "restore_box", None) is not None, 30), "no restore offer"
box = window.restore_box
QTest.mouseClick(box.restore_button, Qt.MouseButton.LeftButton)
assert wait_until(lambda: window.session.volume is not None and window.session.counts, 60), "nothing restored"
assert wait_until(lambda: not window.autosaver.pending, 30)
with open(os.environ["MARKER"], "w") as fh:
    json.dump({"counts": window.session.counts, "path": window.session.path,
               "orphans": len(window.autosaver.orphans()),
               "undo": window.session.history.can_undo}, fh)
window.close_discarding()
"""


def _start(tmp: Path, hook: str, marker: Path, *args: str) -> subprocess.Popen:
    script = tmp / f"hook_{marker.stem}.py"
    script.write_text(hook)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDPLIB_STUDIO_HOOK=str(script),
               MEDPLIB_STUDIO_DATA=str(tmp / "data"), MEDPLIB_STUDIO_SETTINGS=str(tmp / "settings.ini"),
               MARKER=str(marker))
    return subprocess.Popen([sys.executable, "-m", "app.main", *args, "--no-engine"], env=env,
                            cwd=str(Path(__file__).resolve().parents[1]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"app exited early ({proc.returncode}):\n{proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"timed out waiting for {path.name}:\n{proc.communicate()[0]}")


def run_until_killed(tmp: Path, hook: str, marker: Path, *args: str) -> tuple[dict, subprocess.Popen]:
    """Run the app with ``hook`` until it writes ``marker``, then SIGKILL it (a crash)."""
    proc = _start(tmp, hook, marker, *args)
    try:
        return _wait_file(marker, proc, 90), proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_killed_app_restores_autosaved_edit(tmp_path):
    scan = stacked_ct(tmp_path / "ct.nii.gz")
    edited, first = run_until_killed(tmp_path, EDIT, tmp_path / "edited.json", str(scan))
    assert first.returncode == -signal.SIGKILL
    sessions = list((tmp_path / "data" / "recovery").glob("session-*"))
    assert len(sessions) == 1 and (sessions[0] / "snapshot.medplib" / "project.json").is_file()

    second = _start(tmp_path, RESTORE, tmp_path / "restored.json")
    restored = _wait_file(tmp_path / "restored.json", second, 90)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    assert restored["counts"] == edited["counts"]
    assert Path(restored["path"]).resolve() == scan.resolve()
    assert restored["orphans"] == 0  # the restored session was taken over, not offered again
    assert not sessions[0].exists()
