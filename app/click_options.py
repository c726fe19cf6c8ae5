"""Settings ▸ Look again at unsure clicks: the second look of single-click segmentation.

When LiteMedSAM is unsure of the mask a click gave (its IoU estimate is low), the engine
decodes more candidate boxes and keeps the best: single-click Dice 0.767 -> 0.782 on the
development set, click -> mask median 65 -> 76 ms and 90th percentile 77 -> 177 ms
(bench/segmentation.py, 2-core Zen 4). On by default; switching it off is remembered. It
applies to LiteMedSAM on this computer (an engine server decides for itself).
"""

from __future__ import annotations

from medplib_core.engines.litemedsam import Settings as LiteMedSAMSettings

KEY = "click_second_look"
TEXT = "Look again at unsure clicks"
TIP_ON = ("When the model is unsure of a click's mask, try more boxes around the click "
          "and keep the best (about a tenth of a second more on those clicks)")
TIP_OFF = "Only LiteMedSAM on this computer looks again at unsure clicks"


def engine_options(engine):
    """The engine's settings object when it has the option, else None."""
    opts = getattr(engine, "settings", None)
    return opts if hasattr(opts, KEY) else None


def install_click_options(window) -> None:
    """Add the checkable entry to the Settings menu and keep the engine in step with it."""
    window.menu("settings").addSeparator()  # an option, below the set-up dialogs
    act = window.add_action(KEY, TEXT, lambda: None, menu="settings")
    act.setCheckable(True)
    act.setChecked(window.settings.get(KEY, LiteMedSAMSettings.click_second_look, bool))  # engine default

    def apply(*_):
        eng = window.engine.engine
        opts = engine_options(eng)
        act.setEnabled(eng is None or opts is not None)
        act.setToolTip(TIP_ON if act.isEnabled() else TIP_OFF)
        if opts is not None:
            setattr(opts, KEY, act.isChecked())  # read by the worker at the next click

    def toggled(on: bool) -> None:
        window.settings.set(KEY, bool(on))
        apply()

    act.toggled.connect(toggled)
    window.engine.status_changed.connect(apply)
    apply()
