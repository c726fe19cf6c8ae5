"""Switching MedPLIB checkpoints in Settings mid-conversation: the next question is answered by
the new weights (two tiny demo checkpoints), never left waiting on the old model."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from medplib_core.medplib.selection import ENV  # noqa: E402
from studio_support import stacked_ct  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    from medplib_core.medplib.tiny import make_tiny

    root = tmp_path_factory.mktemp("two-tiny")
    return make_tiny(root / "a", seed=0, demo=True), make_tiny(root / "b", seed=3, demo=True)


def ask(qtbot, panel, text):
    panel.input.setFocus()
    qtbot.keyClicks(panel.input, text)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)


def test_switch_checkpoint_mid_conversation(qtbot, make_window, two_checkpoints, tmp_path, monkeypatch):
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    a, b = two_checkpoints
    settings = {f"medplib/{k}": str(v) for k, v in (("checkpoint", a.checkpoint), ("clip", a.clip),
                                                     ("sam", a.sam), ("device", "cpu"))}
    settings["medplib/notice_accepted"] = True
    w = make_window(size=(1300, 860), settings=settings, scan=stacked_ct(tmp_path / "ct.nii.gz"))
    panel = w.extension("chat")
    qtbot.waitUntil(lambda: panel.key is not None)
    ask(qtbot, panel, "What can you see?")
    qtbot.waitUntil(lambda: not panel.busy, timeout=120000)
    first = panel.chat.conversation(panel.key).messages[-1]
    assert first.state == "done" and str(a.checkpoint) in panel.ctl.engine.info.weights

    dlg = panel.open_setup()
    for key, path in (("checkpoint", b.checkpoint), ("clip", b.clip), ("sam", b.sam)):
        dlg.edits[key].setText(str(path))
    dlg.findChild(type(dlg).__mro__[0].__bases__[0]) if False else None
    from PySide6.QtWidgets import QDialogButtonBox
    box = dlg.findChild(QDialogButtonBox)
    qtbot.mouseClick(box.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton)
    ask(qtbot, panel, "And now?")
    qtbot.waitUntil(lambda: not panel.busy, timeout=60000)
    second = panel.chat.conversation(panel.key).messages[-1]
    assert second.state == "done", second.info
    assert str(b.checkpoint) in panel.ctl.engine.info.weights


def _save_setup(qtbot, panel, paths):
    from PySide6.QtWidgets import QDialogButtonBox

    dlg = panel.open_setup()
    for key, path in (("checkpoint", paths.checkpoint), ("clip", paths.clip), ("sam", paths.sam)):
        dlg.edits[key].setText(str(path))
    box = dlg.findChild(QDialogButtonBox)
    qtbot.mouseClick(box.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton)


@pytest.mark.parametrize("when", ["answering", "loading"])
def test_switch_while(qtbot, make_window, two_checkpoints, tmp_path, monkeypatch, when):
    import time
    from medplib_core.medplib.chat import ChatSession
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    a, b = two_checkpoints
    settings = {f"medplib/{k}": str(v) for k, v in (("checkpoint", a.checkpoint), ("clip", a.clip),
                                                     ("sam", a.sam), ("device", "cpu"))}
    settings["medplib/notice_accepted"] = True
    w = make_window(size=(1300, 860), settings=settings, scan=stacked_ct(tmp_path / "ct.nii.gz"))
    panel = w.extension("chat")
    qtbot.waitUntil(lambda: panel.key is not None)
    real_ask = ChatSession.ask

    def slow_ask(self, text, regions=None, on_token=None, cancel=None, **kw):
        def tok(t):
            on_token(t)
            time.sleep(0.3)
        return real_ask(self, text, regions, on_token=tok if on_token else None, cancel=cancel, **kw)

    monkeypatch.setattr(ChatSession, "ask", slow_ask)
    ask(qtbot, panel, "What can you see?")
    if when == "answering":
        qtbot.waitUntil(lambda: panel.tokens_received > 0, timeout=60000)
    else:
        qtbot.waitUntil(lambda: panel.ctl.state == "loading", timeout=60000)
    _save_setup(qtbot, panel, b)
    print("after save", panel.ctl.state, panel.ctl.message)
    qtbot.waitUntil(lambda: not panel.busy, timeout=120000)
    print("first", panel.chat.conversation(panel.key).messages[-1].state, panel.ctl.state)
    ask(qtbot, panel, "And now?")
    t0 = time.monotonic()
    try:
        qtbot.waitUntil(lambda: not panel.busy, timeout=60000)
    finally:
        print("second", time.monotonic() - t0, panel.ctl.state, panel.ctl.message, panel.ctl.question, panel.busy)
    second = panel.chat.conversation(panel.key).messages[-1]
    print(second.state, second.info, panel.ctl.engine.info.weights)
