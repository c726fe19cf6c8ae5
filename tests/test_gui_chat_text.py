"""What the chat dock writes: regions in the voxel indices the status bar's readout uses (on a
sagittal slice, where screen columns and rows are not i and j), and streamed answers with
multi-byte characters that never show a broken "�" (a real tiny MedPLIB model streams a forced
answer through the real tokenizer, byte-fallback pieces included)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from app.automation import image_point  # noqa: E402
from app.chat import ChatController, install_chat_panel  # noqa: E402
from medplib_core.medplib.selection import ENV  # noqa: E402
from studio_support import medplib_settings, stacked_ct  # noqa: E402
from test_gui_chat import demo_paths  # noqa: E402,F401  (the session fixture)

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]
ANSWER = "Le foie — é ünd 肝臓 <SEG>."


@pytest.fixture
def window(qtbot, make_window, demo_paths, tmp_path, monkeypatch):  # noqa: F811
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    settings = medplib_settings(demo_paths)
    return make_window(size=(1300, 860), settings=settings, scan=stacked_ct(tmp_path / "ct.nii.gz", n=24),
                       extensions=())


def test_regions_are_in_the_readouts_voxel_indices(qtbot, window):
    w = window
    panel = install_chat_panel(w)
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_3, Qt.KeyboardModifier.AltModifier)  # sagittal
    view = w.viewer.active
    assert view.orientation == "sagittal"
    qtbot.keyClick(cv, Qt.Key.Key_B)
    a, b = image_point(cv, 20.5, 4.5), image_point(cv, 60.5, 14.5)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(cv, b)
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)
    qtbot.waitUntil(lambda: panel.key == ("sagittal", view.index) and panel.region_combo.currentText().startswith("box"))
    text = panel.region_combo.currentText()
    ranges = {n: (int(lo), int(hi or lo)) for n, lo, hi in re.findall(r"([ijk]) (\d+)(?:–(\d+))?", text)}
    for corner in ((20.5, 4.5), (60.5, 14.5)):  # the readout at the box corners
        qtbot.mouseMove(cv, image_point(cv, *corner))
        i, j, k = (int(v) for v in re.search(r"voxel \((\d+), (\d+), (\d+)\)", w.status.cursor.text()).groups())
        for name, v in zip("ijk", (i, j, k)):
            lo, hi = ranges[name]
            assert v in (lo, hi), (text, w.status.cursor.text())
    assert ranges["i"][0] == ranges["i"][1] == view.index  # the slice's own index


def test_streamed_answer_never_shows_broken_characters(qtbot, window):
    from medplib_core.medplib.chat import ChatSettings
    from medplib_core.medplib.generation import GenerationSettings

    w = window
    ctl = ChatController(w.settings, chat_settings=ChatSettings(generation=GenerationSettings(forced_answer=ANSWER)))
    panel = install_chat_panel(w, ctl)
    qtbot.waitUntil(lambda: panel.key is not None)
    seen: list[str] = []
    ctl.token.connect(lambda q, text: seen.append(panel.transcript.toPlainText()))
    qtbot.mouseClick(panel.input, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(panel.input, "Segment the liver")
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not panel.busy, timeout=120000)
    answer = panel.chat.conversation(panel.key).messages[-1]
    assert answer.state == "done" and "肝臓" in answer.text and "é" in answer.text
    assert len(seen) >= 5  # streamed piece by piece
    assert not [s for s in seen if "\ufffd" in s], [s for s in seen if "\ufffd" in s][:2]
    assert "\ufffd" not in panel.transcript.toPlainText()
