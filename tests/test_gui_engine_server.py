"""Settings ▸ Engine… in the real window against a real `medplib-studio serve`: the URL and token
are checked (version handshake, token), saved, and both engines move to the server — a box
drawn in the window is segmented there (the same mask the server gives any client), and the
chat answers from the server's MedPLIB."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from app.chat import install_chat_panel  # noqa: E402
from app.medplib_setup import NOTICE_KEY  # noqa: E402
from medplib_core.engines.base import Prompt  # noqa: E402
from medplib_core.engines.remote import RemoteEngine  # noqa: E402
from medplib_core.server.location import LOCATION_KEY, URL_KEY  # noqa: E402
from studio_support import stacked_ct  # noqa: E402
from test_gui_chat import ask, drag_box, wait_answer  # noqa: E402
from test_server_support import demo_paths, engine_server, remote  # noqa: E402,F401

pytestmark = [pytest.mark.gui, pytest.mark.timeout(600)]


def test_engine_on_a_server_from_the_settings(qtbot, make_window, engine_server, tmp_path, monkeypatch):
    monkeypatch.delenv("MEDPLIB_SERVER_TOKEN", raising=False)
    monkeypatch.delenv("MEDPLIB_SERVER_URL", raising=False)
    w = make_window(engine=None, size=(1300, 860), settings={NOTICE_KEY: True},  # the default engines
                    scan=stacked_ct(tmp_path / "ct.nii.gz"))
    assert not isinstance(w.engine.engine, RemoteEngine)  # LiteMedSAM in this process to begin with
    panel = install_chat_panel(w)
    assert panel.ctl.state == "unconfigured"  # no local weights: the chat needs a server

    dlg = panel.open_engine_setup()
    dlg.remote.setChecked(True)
    qtbot.keyClicks(dlg.url, engine_server.url)
    assert not dlg.check.isEnabled() and "token" in dlg.status.text()  # no token yet
    qtbot.keyClicks(dlg.token, "wrong-token")
    qtbot.mouseClick(dlg.check, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "⚠" in dlg.status.text() and "token is wrong" in dlg.status.text(), timeout=30000)
    dlg.token.clear()
    qtbot.keyClicks(dlg.token, engine_server.token)
    qtbot.mouseClick(dlg.check, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.status.text().startswith("✔"), timeout=30000)
    assert "engine API 1" in dlg.status.text() and "LiteMedSAM" in dlg.status.text()
    dlg.accept()
    assert w.settings.get(LOCATION_KEY) == "server" and w.settings.get(URL_KEY) == engine_server.url

    qtbot.waitUntil(lambda: w.engine.ready, timeout=60000)  # LiteMedSAM moved to the server
    assert isinstance(w.engine.engine, RemoteEngine) and engine_server.url in w.engine.engine.info.device
    view = w.viewer.active
    drag_box(qtbot, w, 30, 30, 90, 90)
    got = w.session.proposal.record
    assert got.mask.any()
    pixels = view.renderer.pixels(view.orientation, view.index)
    expected = remote(engine_server).encode(pixels).predict(Prompt(box=tuple(got.prompt["box"])))
    assert np.array_equal(got.mask, expected.mask)

    assert panel.ctl.state == "idle"  # the chat is available now, from the server
    ask(qtbot, panel, "Could you segment the liver?")
    answer = wait_answer(qtbot, panel)
    assert answer.state == "done" and "liver" in answer.text and panel.ctl.process is None
    assert isinstance(panel.ctl.engine, RemoteEngine)
