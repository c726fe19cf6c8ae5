"""Screenshots of the real window for what a radiologist meets in the first hour (issue 13), on
an X display (Xvfb unless one is given), driven with real events:

    python scripts/first_hour_screenshots.py --out out/first-hour [--only start,grid,proposal,chat,propagate]

* ``start``: the window before a scan (what to do), then the sample volume (the tool's hint,
  the preset box, MedPLIB's one-line setup);
* ``grid``: the 2×2 layout at 1024×700 with a proposal (equal cells, texts clear of the letters);
* ``proposal``: a pending proposal beside an accepted label 3 (yellow), zoomed in;
* ``chat``: 2×2 and back, Alt+1, a box, "What is in <region>?" with the tiny demo MedPLIB (the
  dock says which slice; the region in voxel indices);
* ``propagate``: 3D propagation with LiteMedSAM running in the background, the view scrolled
  elsewhere, progress and cancel in the status bar.

Every scenario runs the app on the ``--sample`` volume. Prints the PNG paths; exit code 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

COMMON = r'''
import os
from PySide6.QtGui import QGuiApplication
out, scenario = os.environ["SHOT_DIR"], os.environ["SHOT_SCENARIO"]

def shot(name):
    wait(700)
    img = QGuiApplication.primaryScreen().grabWindow(0)
    path = os.path.join(out, name + ".png")
    img.save(path)
    print("SHOT", path, img.width(), img.height(), flush=True)

def box(cv, fx0, fy0, fx1, fy1):
    h, w = cv.shape
    QTest.keyClick(cv, Qt.Key.Key_B)
    drag(cv, image_point(cv, w * fx0, h * fy0), image_point(cv, w * fx1, h * fy1))
    assert wait_until(lambda: window.session.proposal is not None and window.engine.pending is None, 300), "no proposal"

def open_sample():
    from app.sample import sample_path
    window.open_path(sample_path())
    assert wait_until(lambda: window.session.volume is not None and not window.files.loading, 120), "no sample"
    return window.viewer.active.canvas

window.move(0, 0)
assert wait_until(lambda: window.engine.ready or window.engine.state == "error", 300), "engine"
'''

SCENARIOS = {
    "start": r'''
window.resize(1280, 800)
shot("11-start-empty")
open_sample()
QTest.mouseMove(window.viewer.active.canvas, QPoint(5, 5))
shot("11-start-sample")
''',
    "grid": r'''
window.resize(1024, 700)
cv = open_sample()
box(cv, 0.30, 0.30, 0.70, 0.62)
QTest.keyClick(cv, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)
QTest.mouseMove(window.viewer.views[2].canvas, QPoint(5, 5))
shot("11-grid-1024x700")
''',
    "proposal": r'''
window.resize(1280, 800)
cv = open_sample()
for _ in range(3):
    QTest.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
box(cv, 0.22, 0.30, 0.48, 0.62)
QTest.keyClick(cv, Qt.Key.Key_Return)          # accepted into label 3 (yellow)
box(cv, 0.52, 0.30, 0.78, 0.62)                # pending
cv.zoom_by(1.6)
QTest.mouseMove(cv, QPoint(5, 5))
shot("08-proposal-vs-label3")
''',
    "chat": r'''
window.resize(1400, 880)
from medplib_core.medplib.chat import ChatSettings
panel = window.extension("chat")
panel.ctl.cache.settings = ChatSettings(threshold=0.55)  # the tiny model's random head: see chat_screenshot.py
window.settings.set("medplib/notice_accepted", True)  # the notice is chat_screenshot.py's picture
open_sample()
assert wait_until(lambda: panel.key is not None, 30), "no conversation"
window.resizeDocks([window.labels_dock, window.docks["chat_dock"]], [180, 660], Qt.Orientation.Vertical)
cv = window.viewer.active.canvas
QTest.keyClick(cv, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)   # 2×2
sag = window.viewer.views[2].canvas
QTest.mouseClick(sag, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(20, 20))
QTest.keyClick(sag, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)  # back to one view
QTest.keyClick(window.viewer.active.canvas, Qt.Key.Key_1, Qt.KeyboardModifier.AltModifier)  # axial
cv = window.viewer.active.canvas
box(cv, 0.30, 0.30, 0.62, 0.58)
QTest.mouseClick(panel.input, Qt.MouseButton.LeftButton)
QTest.keyClicks(panel.input, "What is in <region>?")
QTest.keyClick(panel.input, Qt.Key.Key_Return)
assert wait_until(lambda: not panel.busy, 300) and panel.chat.conversation(panel.key), "no answer"
QTest.mouseMove(cv, image_point(cv, cv.shape[1] * 0.31, cv.shape[0] * 0.31))
print("ABOUT", panel.about_label.text(), "KEY", panel.key, flush=True)
shot("02-chat-follows-axial")
''',
    "propagate": r'''
window.resize(1280, 800)
cv = open_sample()
box(cv, 0.30, 0.28, 0.70, 0.66)
seed = window.viewer.active.index
QTest.keyClick(cv, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
assert wait_until(lambda: window.status.task_bar.value() >= 3, 300), "no progress"
for _ in range(6):
    QTest.keyClick(cv, Qt.Key.Key_Up)                 # the user looks around meanwhile
QTest.mouseMove(cv, image_point(cv, cv.shape[1] * 0.5, cv.shape[0] * 0.5))
print("SCROLLED", seed, window.viewer.active.index, window.propagation.running, flush=True)
shot("04-propagation-in-background")
QTest.keyClick(cv, Qt.Key.Key_Escape)                 # cancel
assert wait_until(lambda: not window.propagation.running, 120)
''',
}


def take(out: Path, only: list[str], display: str | None = None, timeout: float = 900) -> list[Path]:
    from screenshot import run_hooked_app, shot_session  # scripts/screenshot.py

    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for name in only:
        hook = COMMON + SCENARIOS[name] + "\nwindow.close_discarding()\n"
        with shot_session(display, "1500x940x24", f"medplib-{name}-shot-") as (tmp, disp):
            env = {"SHOT_DIR": str(out.resolve()), "SHOT_SCENARIO": name}
            if name == "chat":
                from medplib_core.medplib.tiny import make_tiny

                p = make_tiny(tmp / "tiny", demo=True)
                env.update(MEDPLIB_CHECKPOINT=str(p.checkpoint), MEDPLIB_CLIP=str(p.clip),
                           MEDPLIB_SAM=str(p.sam), MEDPLIB_DEVICE="cpu")
            proc = run_hooked_app(hook, [], env, tmp, disp, timeout)
        for line in proc.stdout.splitlines():
            if line.startswith("SHOT "):
                made.append(Path(line.split()[1]))
            elif line.startswith(("ABOUT", "SCROLLED")):
                print(line)
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/first-hour", help="folder for the PNGs")
    p.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    p.add_argument("--display", help="use this X display instead of starting Xvfb")
    a = p.parse_args(argv)
    for path in take(Path(a.out), [s for s in a.only.split(",") if s], a.display):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
