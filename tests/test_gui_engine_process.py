"""MedPLIB in a separate local engine process — the window's default — with the tiny demo
checkpoint: the chat answers through it; a kill -9 of that process in the middle of an answer
makes the panel say "engine connection lost", keeps every edit, restarts the process, and the
next question is answered (its conversation rebuilt from the transcript)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from app.chat import install_chat_panel  # noqa: E402
from app.medplib_setup import NOTICE_KEY  # noqa: E402
from medplib_core.engines.remote import RemoteEngine  # noqa: E402
from medplib_core.engines.remote_chat import RemoteChatSettings, RemoteGeneration  # noqa: E402
from medplib_core.medplib.selection import ENV  # noqa: E402
from studio_support import stacked_ct  # noqa: E402
from test_gui_chat import ask, demo_paths, drag_box, wait_answer  # noqa: E402,F401

pytestmark = [pytest.mark.gui, pytest.mark.timeout(600)]


def test_engine_process_killed_mid_answer(qtbot, make_window, demo_paths, tmp_path, monkeypatch):
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    settings = {f"medplib/{k}": str(v) for k, v in (("checkpoint", demo_paths.checkpoint),
                                                   ("clip", demo_paths.clip), ("sam", demo_paths.sam),
                                                   ("device", "cpu"))}
    settings[NOTICE_KEY] = True
    w = make_window(size=(1300, 860), settings=settings, scan=stacked_ct(tmp_path / "ct.nii.gz"))
    panel = install_chat_panel(w)
    qtbot.waitUntil(lambda: panel.key is not None, timeout=20000)
    cv = w.viewer.active.canvas

    drag_box(qtbot, w, 30, 30, 90, 90)  # an edit to keep: a box proposal accepted into a label
    qtbot.keyClick(cv, Qt.Key.Key_Return)
    edited = w.session.labelmap.array.copy()
    assert edited.any()

    key = panel.key
    ask(qtbot, panel, "Could you segment the liver?")
    first = wait_answer(qtbot, panel)
    assert first.state == "done" and "liver" in first.text
    proc = panel.ctl.process
    assert proc is not None and proc.alive and isinstance(panel.ctl.engine, RemoteEngine)
    assert "separate engine process" in panel.state_label.text()
    pid = proc.pid

    # on the next slice, a long answer; the engine process is killed while it streams
    qtbot.keyClick(cv, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: panel.key == (key[0], key[1] + 1))
    panel.ctl.cache.settings = RemoteChatSettings(generation=RemoteGeneration(forced_answer="liver " * 3000))
    seen: list[str] = []

    def on_token(q, text):
        seen.append(text)
        if len(seen) == 5:
            os.kill(pid, signal.SIGKILL)  # a crash or the OOM killer

    states: list[tuple[str, str, str]] = []
    panel.ctl.state_changed.connect(lambda st, msg: states.append((st, msg, panel.state_label.text())))
    panel.ctl.token.connect(on_token)
    ask(qtbot, panel, "Describe it.")
    broken = wait_answer(qtbot, panel)
    assert broken.state == "failed" and "engine connection lost" in broken.info["error"]
    qtbot.waitUntil(lambda: any(st == "connection lost" for st, *_ in states), timeout=30000)
    lost = next(label for st, _, label in states if st == "connection lost")
    assert "Engine connection lost" in lost and "edits are kept" in lost  # what the panel said
    assert np.array_equal(w.session.labelmap.array, edited)  # every edit is kept
    panel.ctl.token.disconnect(on_token)

    qtbot.waitUntil(lambda: panel.ctl.state == "ready", timeout=300000)  # restarted
    assert proc.alive and proc.pid != pid and "reconnected" in panel.state_label.text()
    panel.ctl.cache.settings = None
    qtbot.keyClick(cv, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: panel.key == key)
    ask(qtbot, panel, "And the kidney?")
    again = wait_answer(qtbot, panel)
    assert again.state == "done" and "liver" in again.text  # the conversation rebuilt by the client
    assert len(w.session.chat.conversation(panel.key).turns()) == 2
    assert np.array_equal(w.session.labelmap.array, edited) and w.session.undo()

