"""Screenshot of the real window with the MedPLIB chat panel (Xvfb unless a display is given).

    python scripts/chat_screenshot.py [--out /tmp/chat_screenshot.png] [--tiny DIR] [--scan PATH]
                                      [--threshold 0.1] [--display :1]

Writes a tiny demo checkpoint (every greedy answer is "The liver <SEG>." with a mask) unless
``--tiny`` names one, runs the app on the sample CT with the chat panel and LiteMedSAM, draws a
box, asks "What is in <region>?" through the real widgets (Enter in the question box, "I
understand" on the notice), waits for the streamed answer and its grounded mask proposal,
then grabs the X screen. ``--threshold`` sets the mask threshold of the chat (the tiny
model's random SAM head scores every pixel between about 0.45 and 0.63, so the reference 0.1
proposes the whole slice). Prints the PNG path; exit code 0 on success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

HOOK = r'''
import os
from PySide6.QtGui import QGuiApplication
from medplib_core.medplib.chat import ChatSettings
from app.chat import install_chat_panel

panel = install_chat_panel(window)  # installed with the window: this returns it
panel.ctl.cache.settings = ChatSettings(threshold=float(os.environ["SHOT_THRESHOLD"]))
assert wait_until(lambda: window.session.volume is not None and panel.key is not None, 120), "no scan"
window.resize(1500, 940)
window.move(0, 0)
window.resizeDocks([window.labels_dock, window.docks["chat_dock"]], [200, 700], Qt.Orientation.Vertical)
wait(300)
cv = window.viewer.active.canvas
h, w = cv.shape
assert wait_until(lambda: window.engine.ready or window.engine.state == "error", 300), "engine"
QTest.keyClick(cv, Qt.Key.Key_B)
drag(cv, image_point(cv, w * 0.52, h * 0.30), image_point(cv, w * 0.80, h * 0.56))
assert wait_until(lambda: window.engine.pending is None, 120)
QTest.mouseClick(panel.input, Qt.MouseButton.LeftButton)  # the pointer goes to the box
QTest.keyClicks(panel.input, "What is in <region>?")
QTest.keyClick(panel.input, Qt.Key.Key_Return)
assert wait_until(lambda: panel.notice_box is not None or panel.busy, 10), "no notice"
if panel.notice_box is not None:
    [ok] = [b for b in panel.notice_box.buttons() if b.text() == "I understand"]
    ok.click()
assert wait_until(lambda: panel.busy, 10) and wait_until(lambda: not panel.busy, 300), "no answer"
assert panel.tokens_received >= 3, panel.tokens_received
assert window.session.proposal is not None and window.session.proposal.record.kind == "grounding"
QTest.mouseMove(cv, image_point(cv, w * 0.3, h * 0.8))
wait(800)
shot = QGuiApplication.primaryScreen().grabWindow(0)
shot.save(os.environ["SHOT_OUT"])
print("SHOT", os.environ["SHOT_OUT"], shot.width(), shot.height(), panel.tokens_received, flush=True)
window.close_discarding()
'''


def take(out: Path, tiny: Path | None = None, scan: str | None = None, threshold: float = 0.1,
         display: str | None = None, timeout: float = 600) -> Path:
    """Run the app with the chat on an X display and save the screen to ``out``."""
    from screenshot import run_hooked_app, shot_session  # scripts/screenshot.py

    out.parent.mkdir(parents=True, exist_ok=True)
    with shot_session(display, "1500x940x24", "medplib-chat-shot-") as (tmp, display):
        if tiny is None:
            from medplib_core.medplib.tiny import make_tiny

            paths = make_tiny(tmp / "tiny", demo=True)
            tiny = paths.checkpoint.parent
        run_hooked_app(HOOK, [scan] if scan else ["--sample"], {
            "SHOT_OUT": str(out.resolve()), "SHOT_THRESHOLD": str(threshold),
            "MEDPLIB_CHECKPOINT": str(tiny / "tiny-medplib"), "MEDPLIB_CLIP": str(tiny / "tiny-clip"),
            "MEDPLIB_SAM": str(tiny / "tiny-sam-med2d.pth"), "MEDPLIB_DEVICE": "cpu"}, tmp, display, timeout)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/chat_screenshot.png", help="PNG to write")
    p.add_argument("--tiny", help="folder made by `medplib-studio medplib make-tiny OUT --demo`")
    p.add_argument("--scan", help="scan to open (default: the sample CT)")
    p.add_argument("--threshold", type=float, default=0.1, help="mask threshold of the chat")
    p.add_argument("--display", help="use this X display instead of starting Xvfb")
    a = p.parse_args(argv)
    print(take(Path(a.out), Path(a.tiny) if a.tiny else None, a.scan, a.threshold, a.display))
    return 0


if __name__ == "__main__":
    sys.exit(main())
