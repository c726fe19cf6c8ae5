"""Screenshot of the window after its MedPLIB engine process was killed (Xvfb unless a display is given).

    python scripts/engine_lost_screenshot.py [--out /tmp/engine_lost.png] [--tiny DIR] [--display :1]

Runs the app on the sample CT with the chat panel; MedPLIB (a tiny demo checkpoint written here
unless ``--tiny`` names one) runs in its separate local engine process, the default. The script
paints a label with the brush, asks a question whose answer is long, and sends SIGKILL to the
engine process while the answer streams; once the panel says "engine connection lost" it grabs
the X screen. Prints the PNG path; exit code 0 on success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

HOOK = r'''
import os
import signal
from PySide6.QtGui import QGuiApplication
from app.chat import install_chat_panel
from app.medplib_setup import NOTICE_KEY
from medplib_core.engines.remote_chat import RemoteChatSettings, RemoteGeneration

panel = install_chat_panel(window)
assert wait_until(lambda: window.session.volume is not None and panel.key is not None, 120), "no scan"
window.resize(1500, 940)
window.move(0, 0)
window.resizeDocks([window.labels_dock, window.docks["chat_dock"]], [200, 700], Qt.Orientation.Vertical)
wait(300)
cv = window.viewer.active.canvas
h, w = cv.shape
QTest.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # a label, painted with the brush
QTest.keyClick(cv, Qt.Key.Key_D)
for y in (0.42, 0.46, 0.50):
    drag(cv, image_point(cv, w * 0.36, h * y), image_point(cv, w * 0.62, h * y))
painted = int(window.session.labelmap.array.astype(bool).sum())
assert painted > 0, "the brush painted nothing"
window.settings.set(NOTICE_KEY, True)
panel.ctl.cache.settings = RemoteChatSettings(generation=RemoteGeneration(forced_answer="The liver is " * 2000))
seen = []

def on_token(q, text):
    seen.append(text)
    if len(seen) == 12:
        os.kill(panel.ctl.process.pid, signal.SIGKILL)  # what a crash or the OOM killer does

panel.ctl.token.connect(on_token)
QTest.mouseClick(panel.input, Qt.MouseButton.LeftButton)  # keys over the image go to the image
QTest.keyClicks(panel.input, "Describe this slice.")
QTest.keyClick(panel.input, Qt.Key.Key_Return)
assert wait_until(lambda: panel.ctl.state == "connection lost", 400), f"state {panel.ctl.state}"
assert int(window.session.labelmap.array.astype(bool).sum()) == painted, "an edit was lost"
QTest.mouseMove(cv, image_point(cv, w * 0.3, h * 0.8))
wait(800)
shot = QGuiApplication.primaryScreen().grabWindow(0)
shot.save(os.environ["SHOT_OUT"])
print("SHOT", os.environ["SHOT_OUT"], shot.width(), shot.height(), len(seen), painted, flush=True)
window.close_discarding()  # the painted label is unsaved work: close() would ask
'''


def take(out: Path, tiny: Path | None = None, display: str | None = None, timeout: float = 900) -> Path:
    """Run the app on an X display, kill its engine process mid-answer, save the screen to ``out``."""
    from screenshot import run_hooked_app, shot_session  # scripts/screenshot.py

    out.parent.mkdir(parents=True, exist_ok=True)
    with shot_session(display, "1500x940x24", "medplib-lost-shot-") as (tmp, display):
        if tiny is None:
            from medplib_core.medplib.tiny import make_tiny

            tiny = make_tiny(tmp / "tiny", demo=True).checkpoint.parent
        run_hooked_app(HOOK, ["--sample"], {
            "SHOT_OUT": str(out.resolve()),
            "MEDPLIB_CHECKPOINT": str(tiny / "tiny-medplib"), "MEDPLIB_CLIP": str(tiny / "tiny-clip"),
            "MEDPLIB_SAM": str(tiny / "tiny-sam-med2d.pth"), "MEDPLIB_DEVICE": "cpu"}, tmp, display, timeout)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/engine_lost.png", help="PNG to write")
    p.add_argument("--tiny", help="folder made by `medplib-studio medplib make-tiny OUT --demo`")
    p.add_argument("--display", help="use this X display instead of starting Xvfb")
    a = p.parse_args(argv)
    print(take(Path(a.out), Path(a.tiny) if a.tiny else None, a.display))
    return 0


if __name__ == "__main__":
    sys.exit(main())
