"""A local engine process started by the app ends when the app is killed with SIGKILL (nobody
calls stop() then); without this, a MedPLIB process would keep its memory after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.timeout(300)]

APP = r'''
from medplib_core.server.local_process import LocalEngineProcess
proc = LocalEngineProcess("litemedsam", {"device": "cpu"}, start_timeout=240)
proc.start()
print("ENGINE", proc.pid, flush=True)
import time
time.sleep(600)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has ended too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_engine_process_ends_when_the_app_is_killed():
    app = subprocess.Popen([sys.executable, "-c", APP], cwd=str(ROOT), stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    engine = None
    try:
        for line in app.stdout:
            if line.startswith("ENGINE"):
                engine = int(line.split()[1])
                break
        assert engine is not None and _alive(engine), "the engine process did not start"
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        end = time.monotonic() + 20
        while _alive(engine) and time.monotonic() < end:
            time.sleep(0.2)
        assert not _alive(engine), "the engine process outlived the app"
    finally:
        if app.poll() is None:
            app.kill()
        if engine is not None and _alive(engine):
            os.kill(engine, signal.SIGKILL)
