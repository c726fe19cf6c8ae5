"""The MedPLIB chat panel in the real window, with a tiny demo checkpoint (every greedy answer
is "The liver <SEG>." with a mask): a box becomes a <region>, the answer streams, the grounded
mask is a proposal that Enter accepts with the question and answer as provenance, Stop leaves
the conversation consistent, conversations are per slice, and the chat survives save/reopen.
Without weights the panel explains where to put them and segmentation keeps working."""

from __future__ import annotations

import re

import time

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt, QUrl  # noqa: E402

from app.automation import image_point  # noqa: E402
from app.chat import install_chat_panel  # noqa: E402
from app.dialogs import ABOUT  # noqa: E402
from app.medplib_setup import NOTICE_KEY, about_section  # noqa: E402
from studio_support import stacked_ct  # noqa: E402
from medplib_core.medplib.selection import ENV  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


@pytest.fixture(scope="session")
def demo_paths(tmp_path_factory):
    from test_medplib_support import _root, tiny_set

    return tiny_set(_root(tmp_path_factory), "demo")


@pytest.fixture
def make_win(qtbot, make_window, tmp_path, monkeypatch):
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    scan = stacked_ct(tmp_path / "ct.nii.gz")

    def make(paths=None, open_scan=True):
        settings = {} if paths is None else {
            f"medplib/{key}": str(val) for key, val in (("checkpoint", paths.checkpoint), ("clip", paths.clip),
                                                        ("sam", paths.sam), ("device", "cpu"))}
        # the model in this process, so the test can slow its answers down (the separate engine
        # process, the default, is tested in test_gui_engine_process.py)
        settings["engine/medplib_process"] = False
        w = make_window(size=(1300, 860), settings=settings, scan=scan if open_scan else None)
        panel = install_chat_panel(w)  # installed with the window: this returns it
        qtbot.waitUntil(lambda: not open_scan or panel.key is not None, timeout=20000)
        return w, panel

    return make


def drag_box(qtbot, w, x0, y0, x1, y1):
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_B)
    a, b = image_point(cv, x0, y0), image_point(cv, x1, y1)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(cv, a + (b - a) * (n / 5))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)


def ask(qtbot, panel, text):
    qtbot.mouseClick(panel.input, Qt.MouseButton.LeftButton)  # the pointer goes to the box
    qtbot.keyClicks(panel.input, text)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)


def has_box_near(text: str, x: int, y: int, prefix: str = "box ") -> bool:
    """True when ``text`` names a box whose first corner is voxel (i, j) = (x, y) within a pixel
    (screen rounding); on these axial slices i runs with the column, j with the row."""
    for m in re.finditer(re.escape(prefix) + r"i (\d+)–\d+, j (\d+)–", text):
        if abs(int(m.group(1)) - x) <= 1 and abs(int(m.group(2)) - y) <= 1:
            return True
    return False


def wait_answer(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.busy, timeout=120000)
    return panel.chat.book.get(panel.key).messages[-1]


def test_chat_region_grounding_stop_and_project(qtbot, make_win, demo_paths, tmp_path, monkeypatch):
    w, panel = make_win(demo_paths)
    assert panel.ctl.state == "idle" and "tiny-medplib" in panel.state_label.text()
    view, cv = w.viewer.active, w.viewer.active.canvas
    key = (view.orientation, view.index)
    drag_box(qtbot, w, 45, 40, 74, 64)
    box_prop = w.session.proposal
    assert has_box_near(panel.region_combo.currentText(), 45, 40)

    tokens, states = [], []
    panel.ctl.token.connect(lambda q, text: tokens.append(text))
    panel.ctl.state_changed.connect(lambda st, _: states.append(st))
    ask(qtbot, panel, "What is in <region>?")
    assert w.session.proposal is box_prop  # Enter in the question box sends; it does not accept
    ask_box = panel.notice_box
    [ok] = [b for b in ask_box.buttons() if b.text() == "I understand"]
    ok.click()
    assert w.settings.get(NOTICE_KEY, False, bool)
    answer = wait_answer(qtbot, panel)
    assert answer.state == "done" and "liver" in answer.text
    assert len(tokens) >= 3 and "".join(tokens).strip().startswith("The liver")  # streamed
    assert states[:3] == ["loading", "ready", "busy"] and states[-1] == "ready"  # loaded off-thread
    text = panel.transcript.toPlainText()
    assert has_box_near(text, 45, 40, "[region 1: box ") and "The liver" in text and "mask #" in text
    rec = w.session.proposal.record
    assert rec.kind == "grounding" and rec.id in answer.prompt_ids and rec.mask.any()
    assert rec.provenance["question"] == "What is in <region>?" and "liver" in rec.provenance["answer"]
    assert rec.prompt["box"][:2] == pytest.approx([45.0, 40.0], abs=1.0) and (rec.orientation, rec.index) == key

    qtbot.keyClick(cv, Qt.Key.Key_Return)  # accept the grounded mask into a label
    assert w.session.proposal is None and rec.status == "accepted"
    lab = w.session.labels[rec.label_value]
    prov = lab.provenance[-1]
    assert prov["kind"] == "grounding" and prov["question"] == "What is in <region>?"
    assert "liver" in prov["answer"] and prov["engine"] == "MedPLIB"
    assert "accepted" in panel.transcript.toPlainText()

    # correct the accepted mask with the eraser: the corrected label is now the newest region
    qtbot.keyClick(cv, Qt.Key.Key_E)
    a, b = image_point(cv, 10, 20), image_point(cv, 100, 20)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(cv, b)
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)
    corrected = int(w.session.counts[rec.label_value])
    assert 0 < corrected < int(rec.mask.sum())
    assert panel.region_combo.currentText().startswith(f"label '{lab.name}' mask {corrected:,} px")

    # Stop mid-answer: the conversation stays as it was before the question
    from medplib_core.medplib.chat import ChatSession

    real_ask = ChatSession.ask

    def slow_ask(self, text, regions=None, on_token=None, cancel=None, **kw):
        def tok(t):
            on_token(t)
            end = time.monotonic() + 20
            while not cancel() and time.monotonic() < end:
                time.sleep(0.005)
        return real_ask(self, text, regions, on_token=tok if on_token else None, cancel=cancel, **kw)

    monkeypatch.setattr(ChatSession, "ask", slow_ask)
    n_tok = panel.tokens_received
    qtbot.mouseClick(panel.use_region, Qt.MouseButton.LeftButton)  # attach it: inserts <region>
    assert panel.input.toPlainText() == "<region> " and len(panel.attached) == 1
    ask(qtbot, panel, "please describe")
    assert panel.notice_box is None  # shown once only
    qtbot.waitUntil(lambda: panel.tokens_received > n_tok, timeout=30000)
    assert panel.stop_button.isEnabled()
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    stopped = wait_answer(qtbot, panel)
    assert stopped.state == "stopped" and stopped.text.startswith("The")
    assert "stopped" in panel.transcript.toPlainText()
    question = w.session.chat.book.get(key).messages[-2]
    assert question.regions[0].kind == "mask" and question.regions[0].source == "label"
    ref_rec = next(r for r in w.session.prompts if r.id == question.regions[0].prompt_id)
    assert ref_rec.kind == "chat-region" and int(ref_rec.mask.sum()) == corrected
    monkeypatch.setattr(ChatSession, "ask", real_ask)
    ask(qtbot, panel, "Segment the liver")
    follow = wait_answer(qtbot, panel)
    assert follow.state == "done" and follow.info["replayed_turns"] == 0  # session reused as is
    assert len(w.session.chat.book.get(key).turns()) == 2

    # per-slice conversations
    qtbot.keyClick(cv, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: panel.key == (key[0], key[1] + 1))
    assert "No questions about" in panel.transcript.toPlainText()
    qtbot.keyClick(cv, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: panel.key == key)
    assert has_box_near(panel.transcript.toPlainText(), 45, 40, "[region 1: box ")

    # saved with the project and restored, slice included
    folder = str(tmp_path / "case.medplib")
    with qtbot.waitSignal(w.files.saved, timeout=20000):
        w.files.save_project(folder)
    w2, panel2 = make_win(demo_paths, open_scan=False)
    w2.files.open_project(folder)
    qtbot.waitUntil(lambda: w2.session.volume is not None and bool(w2.session.chat.book.non_empty()), timeout=30000)
    [conv] = w2.session.chat.book.non_empty()
    assert conv.key == key and [m.state for m in conv.messages if m.role == "assistant"] == \
        ["done", "stopped", "done"]
    panel2.go_to(key)
    text2 = panel2.transcript.toPlainText()
    assert has_box_near(text2, 45, 40, "[region 1: box ") and "The liver" in text2 and "stopped" in text2
    last_id = conv.messages[-1].prompt_ids[0]
    assert w2.session.proposal is None and "not accepted — click to show" in text2
    panel2.transcript.anchorClicked.emit(QUrl(f"mask:{last_id}"))  # the mask link shows it again
    assert w2.session.proposal.record.id == last_id and "proposal — Enter accepts" in panel2.transcript.toPlainText()
    ids = {r.id: r for r in w2.session.prompts}
    assert all(ids[i].mask is not None for m in conv.messages for i in m.prompt_ids)
    assert ids[conv.messages[2].regions[0].prompt_id].mask.any()  # the label snapshot region
    ask(qtbot, panel2, "What else?")
    again = wait_answer(qtbot, panel2)
    assert again.state == "done" and again.info["replayed_turns"] == 2  # rebuilt from the saved turns


def test_without_weights_the_panel_explains(qtbot, make_win, demo_paths, monkeypatch):
    w, panel = make_win(None)
    assert panel.ctl.state == "unconfigured"
    assert panel.state_label.text() == "MedPLIB is not set up."  # one short line and a button
    assert len(panel.transcript.toPlainText().strip().splitlines()) == 1
    assert panel.setup_button.isVisible() and not panel.send_button.isEnabled()
    drag_box(qtbot, w, 30, 30, 90, 90)  # segmentation keeps working without MedPLIB
    assert w.session.proposal.record.kind == "box"

    ask(qtbot, panel, "What can you see?")  # opens the setup dialog instead
    dlg = panel.setup_dialog
    assert dlg is not None and dlg.isVisible() and "⚠" in dlg.status.text()
    assert "sam-med2d_b.pth" in dlg.help.text() and "MEDPLIB_CHECKPOINT" in dlg.help.text()  # the help is here
    dlg.edits["checkpoint"].setText(str(demo_paths.checkpoint))
    assert "✔" in dlg.status.text()
    dlg.accept()
    assert w.settings.get("medplib/checkpoint") == str(demo_paths.checkpoint)
    assert panel.ctl.state == "idle" and panel.send_button.isEnabled()

    shown = []
    monkeypatch.setattr("app.medplib_setup.QMessageBox.about", lambda *a: shown.append(a[2]))
    w.actions_by_name["about"].trigger()  # Help > About carries the licence and intended use
    assert shown and shown[0] == ABOUT + about_section(w.settings)
    assert "research" in shown[0] and "clinical decision" in shown[0] and "tiny-medplib" in shown[0]
