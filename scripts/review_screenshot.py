"""Screenshot of the real window with the Review dock open on a case and its proposed label.

    python scripts/review_screenshot.py [--out /tmp/review_screenshot.png] [--run RUN_DIR] [--case ID]

Without ``--run`` it first runs the sample batch (two synthetic images, a small CT and a corrupt
file; LiteMedSAM box prompts) in a temporary folder and accepts one case, so the list shows
decisions. The app runs on a virtual X server (Xvfb, unless ``--display`` names one) with the
xcb platform; the X screen is grabbed and saved as ``--out`` (the window alone beside it, with
``_window`` added to the name). Prints the PNG paths; exit code 0 on success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))  # the sample batch

HOOK = r'''
import os
from PySide6.QtGui import QGuiApplication
from app.review import install_review
ui = install_review(window)  # installed with the window: this returns it
window.resize(1400, 860)
window.move(0, 0)
assert ui.open_run(os.environ["SHOT_RUN"]), "the run did not open"
c = ui.controller
idle = lambda: c.state == "idle" and (c.shown or bool(c.load_error))
assert wait_until(idle, 60), "the first case did not load"
if os.environ.get("SHOT_DECIDE") == "1":
    c.accept()
    assert wait_until(idle, 60)
case = os.environ.get("SHOT_CASE") or ""
if case:
    c.go_to(case)
    assert wait_until(lambda: c.current == case and idle(), 60), "the case did not load"
window.resizeDocks([ui.dock], [460], Qt.Orientation.Horizontal)
window.viewer.active.canvas.fit()
wait(800)
shot = QGuiApplication.primaryScreen().grabWindow(0)
shot.save(os.environ["SHOT_OUT"])
window.grab().save(os.environ["SHOT_WINDOW"])
print("SHOT", os.environ["SHOT_OUT"], shot.width(), shot.height(), flush=True)
window.close_discarding()
'''


def sample_run(folder: Path) -> Path:
    """Run the sample batch (real LiteMedSAM) and return its run folder."""
    from sample_run import write_sample_spec
    from medplib_core.batch import load_spec, run_batch

    spec = write_sample_spec(folder, "run")
    summary = run_batch(spec, workers=1)
    if summary["ok"] == 0:
        raise RuntimeError(f"the sample batch produced nothing: {summary}")
    return load_spec(spec).output


def take(out: Path, run: Path | None = None, case: str = "ct", display: str | None = None,
         timeout: float = 600) -> Path:
    """Start the app on an X display with the review dock on ``case`` and save the screen."""
    from screenshot import run_hooked_app, shot_session  # the window screenshot script's helpers

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with shot_session(display, prefix="medplib-review-shot-") as (tmp, display):
        decide = run is None
        run = sample_run(tmp / "sample") if run is None else Path(run)
        run_hooked_app(HOOK, ["--no-engine"], {
            "SHOT_RUN": str(run), "SHOT_CASE": case, "SHOT_DECIDE": "1" if decide else "0",
            "SHOT_OUT": str(out), "SHOT_WINDOW": str(out.with_name(out.stem + "_window.png"))},
            tmp, display, timeout)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/review_screenshot.png", help="PNG of the X screen")
    p.add_argument("--run", help="a batch run folder (default: run the sample batch first)")
    p.add_argument("--case", default="ct", help="the case to show (default: ct)")
    p.add_argument("--display", help="use this X display instead of starting Xvfb")
    a = p.parse_args(argv)
    path = take(Path(a.out), Path(a.run) if a.run else None, a.case, a.display)
    print(path)
    print(path.with_name(path.stem + "_window.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
