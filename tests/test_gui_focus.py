"""The chat follows the view the user works in, and canvas keys work wherever the keyboard
focus is when the pointer is on the image (real window, tiny demo MedPLIB checkpoint whose
greedy answer is "The liver <SEG>.").

The radiologist's sequence: a volume, 2×2 and back to the single layout, Alt+1 (axial), a box:
the conversation and the region are the axial slice's, "What is in <region>?" is answered about
it. After a grounded answer the focus is still in the question box: Enter over the image
accepts the mask into a label named "liver" (created), E over the image picks the eraser (no "e"
typed), and typing with the pointer off the image still goes into the box."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtWidgets import QToolBar  # noqa: E402

from app.automation import image_point  # noqa: E402
from medplib_core.medplib.selection import ENV  # noqa: E402
from studio_support import medplib_settings, stacked_ct  # noqa: E402
from test_gui_chat import demo_paths  # noqa: E402,F401  (the session fixture)

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]
ALT = Qt.KeyboardModifier.AltModifier


@pytest.fixture
def chat_window(qtbot, make_window, demo_paths, tmp_path, monkeypatch):  # noqa: F811
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    settings = medplib_settings(demo_paths)
    w = make_window(size=(1300, 860), settings=settings, scan=stacked_ct(tmp_path / "ct.nii.gz", n=24))
    panel = w.extension("chat")
    qtbot.waitUntil(lambda: panel.key is not None)
    return w, panel


def drag_box(qtbot, cv, x0, y0, x1, y1):
    a, b = image_point(cv, x0, y0), image_point(cv, x1, y1)
    qtbot.mousePress(cv, Qt.MouseButton.LeftButton, pos=a)
    for n in range(1, 6):
        qtbot.mouseMove(cv, a + (b - a) * (n / 5))
    qtbot.mouseRelease(cv, Qt.MouseButton.LeftButton, pos=b)


def ask(qtbot, panel, text):
    qtbot.mouseClick(panel.input, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(panel.input, text)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not panel.busy, timeout=120000)
    return panel.chat.conversation(panel.key).messages[-1]


def test_chat_follows_the_view_worked_in(qtbot, chat_window):
    w, panel = chat_window
    cv = w.viewer.active.canvas
    qtbot.keyClick(cv, Qt.Key.Key_4, ALT)  # 2×2
    coronal = w.viewer.views[1]
    qtbot.mouseClick(coronal.canvas, Qt.MouseButton.LeftButton, pos=image_point(coronal.canvas, 5, 5))
    qtbot.waitUntil(lambda: panel.key == ("coronal", coronal.index))
    assert "Coronal" in panel.about_label.text()
    qtbot.keyClick(coronal.canvas, Qt.Key.Key_4, ALT)  # back to the single layout
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_1, ALT)  # axial
    view = w.viewer.active
    assert view.orientation == "axial"
    qtbot.waitUntil(lambda: panel.key == ("axial", view.index))
    assert f"Axial {view.index + 1} / 24" in panel.about_label.text()
    qtbot.keyClick(view.canvas, Qt.Key.Key_B)
    drag_box(qtbot, view.canvas, 40, 40, 80, 70)
    qtbot.waitUntil(lambda: w.session.proposal is not None and w.engine.pending is None, timeout=10000)
    assert panel.region_combo.currentText().startswith("box ") and panel.use_region.isEnabled()
    answer = ask(qtbot, panel, "What is in <region>?")
    assert answer.state == "done" and "liver" in answer.text
    question = panel.chat.conversation(("axial", view.index)).messages[-2]
    assert question.regions and question.regions[0].kind == "box"
    assert not any(m.role == "note" for m in panel.chat.conversation(("axial", view.index)).messages)
    assert w.session.proposal.record.orientation == "axial"

    # a slice synced in 2×2 (navigate click) is the one the single layout shows
    qtbot.keyClick(view.canvas, Qt.Key.Key_4, ALT)
    axial, sagittal = w.viewer.views[0], w.viewer.views[2]
    qtbot.keyClick(axial.canvas, Qt.Key.Key_V)  # navigate
    qtbot.mouseClick(axial.canvas, Qt.MouseButton.LeftButton, pos=image_point(axial.canvas, 30.5, 60.5))
    synced = sagittal.index
    assert synced == 30 and w.viewer.active is axial  # the click does not move the focus away
    qtbot.keyClick(axial.canvas, Qt.Key.Key_4, ALT)
    qtbot.keyClick(w.viewer.active.canvas, Qt.Key.Key_3, ALT)  # sagittal in the single view
    assert w.viewer.active.orientation == "sagittal" and w.viewer.active.index == synced
    qtbot.waitUntil(lambda: panel.key == ("sagittal", synced))


def test_canvas_keys_work_over_the_image(qtbot, chat_window):
    w, panel = chat_window
    view = w.viewer.active
    cv = view.canvas
    answer = ask(qtbot, panel, "Segment the liver")
    assert answer.state == "done" and w.session.proposal is not None
    assert panel.input.hasFocus() and "Enter: accept" in cv.corner_text[1]
    qtbot.mouseMove(cv, image_point(cv, 60, 60))  # the pointer on the image, focus in the box
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    assert w.session.proposal is None, "Enter over the image did not accept"
    [lab] = list(w.session.labels)
    assert lab.name == "liver" and w.session.counts[lab.value] > 0  # the label the question named
    assert cv.hasFocus()

    qtbot.mouseClick(panel.input, Qt.MouseButton.LeftButton)  # focus back in the box
    qtbot.mouseMove(cv, image_point(cv, 62, 58))
    qtbot.keyClick(panel.input, Qt.Key.Key_E)
    assert w.tools.tool == "eraser" and panel.input.toPlainText() == "" and cv.hasFocus()
    qtbot.mouseClick(panel.input, Qt.MouseButton.LeftButton)
    qtbot.mouseMove(cv, image_point(cv, 64, 56))
    before = view.index
    qtbot.keyClick(panel.input, Qt.Key.Key_Down)  # the slice keys too
    assert view.index == before + 1 and panel.input.toPlainText() == ""

    qtbot.mouseMove(panel.input, QPoint(10, 10))  # pointer off the image: typing is typing
    panel.input.setFocus()
    qtbot.keyClicks(panel.input, "be")
    assert panel.input.toPlainText() == "be" and w.tools.tool == "eraser"
    panel.input.clear()

    # the toolbar ✓ puts a grounded mask into its named label too, whichever label is active
    w.session.add_label("kidney")
    answer = ask(qtbot, panel, "Segment the liver")
    assert w.session.proposal is not None
    toolbar = next(t for t in w.findChildren(QToolBar) if t.objectName() == "tools_toolbar")
    button = toolbar.widgetForAction(w.actions_by_name["accept"])
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert w.session.proposal is None and [x.name for x in w.session.labels] == ["liver", "kidney"]
    assert w.session.active_value == lab.value
