"""Switching MedPLIB checkpoints in Settings mid-conversation (two tiny demo checkpoints): the
next question is answered by the new weights whether the switch came while idle, while an
answer streamed or while the old model was still loading; and a question that has to wait for
the shared model (another call holds its lock) says so and stops at once with Stop."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QDialogButtonBox  # noqa: E402

from medplib_core.medplib.selection import ENV  # noqa: E402
from studio_support import medplib_settings, stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    from medplib_core.medplib.tiny import make_tiny

    root = tmp_path_factory.mktemp("two-tiny")
    return make_tiny(root / "a", seed=0, demo=True), make_tiny(root / "b", seed=3, demo=True)


@pytest.fixture
def chat(qtbot, make_window, two_checkpoints, tmp_path, monkeypatch):
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    a, _ = two_checkpoints
    settings = medplib_settings(a)
    w = make_window(size=(1300, 860), settings=settings, scan=stacked_ct(tmp_path / "ct.nii.gz"))
    panel = w.extension("chat")
    qtbot.waitUntil(lambda: panel.key is not None)
    return w, panel


def ask(qtbot, panel, text):
    qtbot.mouseClick(panel.input, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(panel.input, text)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)


def answer_of(qtbot, panel, timeout=120000):
    qtbot.waitUntil(lambda: not panel.busy, timeout=timeout)
    return panel.chat.conversation(panel.key).messages[-1]


def switch_to(qtbot, panel, paths):
    """Settings ▸ MedPLIB…: other folders, Save."""
    dlg = panel.open_setup()
    for key, path in (("checkpoint", paths.checkpoint), ("clip", paths.clip), ("sam", paths.sam)):
        dlg.edits[key].setText(str(path))
    box = dlg.findChild(QDialogButtonBox)
    qtbot.mouseClick(box.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton)


def slow_tokens(monkeypatch, delay):
    from medplib_core.medplib.chat import ChatSession

    real = ChatSession.ask

    def ask_slowly(self, text, regions=None, on_token=None, cancel=None, **kw):
        def tok(t):
            on_token(t)
            time.sleep(delay)
        return real(self, text, regions, on_token=tok if on_token else None, cancel=cancel, **kw)

    monkeypatch.setattr(ChatSession, "ask", ask_slowly)


def test_switch_while_idle_mid_conversation(qtbot, chat, two_checkpoints):
    w, panel = chat
    a, b = two_checkpoints
    ask(qtbot, panel, "What can you see?")
    assert answer_of(qtbot, panel).state == "done" and panel.ctl.engine.info.weights == str(a.checkpoint)
    switch_to(qtbot, panel, b)
    ask(qtbot, panel, "And now?")
    second = answer_of(qtbot, panel, 60000)
    assert second.state == "done" and panel.ctl.engine.info.weights == str(b.checkpoint)
    assert second.info["replayed_turns"] == 1  # the conversation was rebuilt on the new model


@pytest.mark.parametrize("when", ["answering", "loading"])
def test_switch_while_busy_takes_effect_for_the_next_question(qtbot, chat, two_checkpoints, monkeypatch, when):
    w, panel = chat
    a, b = two_checkpoints
    slow_tokens(monkeypatch, 0.2)
    ask(qtbot, panel, "What can you see?")
    if when == "answering":
        qtbot.waitUntil(lambda: panel.tokens_received > 0, timeout=60000)
    else:
        qtbot.waitUntil(lambda: panel.ctl.state == "loading", timeout=60000)
    switch_to(qtbot, panel, b)
    first = answer_of(qtbot, panel)
    assert first.state == "done"
    if when == "loading":  # the question waiting for the load is answered by the new weights
        assert panel.ctl.engine.info.weights == str(b.checkpoint)
    ask(qtbot, panel, "And now?")
    second = answer_of(qtbot, panel)
    assert second.state == "done" and panel.ctl.engine.info.weights == str(b.checkpoint)


def test_a_question_behind_the_shared_model_says_so_and_stops(qtbot, chat):
    w, panel = chat
    ask(qtbot, panel, "What can you see?")
    assert answer_of(qtbot, panel).state == "done"
    engine = panel.ctl.engine
    held, release = threading.Event(), threading.Event()

    def other_user():  # e.g. segmentation with the same MedPLIB on its own thread
        with engine.model_lock:
            held.set()
            release.wait(60)

    thread = threading.Thread(target=other_user)
    thread.start()
    try:
        held.wait(10)
        ask(qtbot, panel, "Still there?")
        qtbot.waitUntil(lambda: "waiting" in panel.ctl.message, timeout=20000)
        assert panel.state_label.text().startswith("Waiting: the model is busy with another task")
        started = time.monotonic()
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
        stopped = answer_of(qtbot, panel, 10000)
        assert stopped.state == "stopped" and time.monotonic() - started < 5
    finally:
        release.set()
        thread.join(10)
    ask(qtbot, panel, "And now?")
    assert answer_of(qtbot, panel).state == "done"
