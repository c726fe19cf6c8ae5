"""Screenshot of the real MedPLIB Studio window on an X display (Xvfb when none is given).

    python scripts/screenshot.py --out docs/screenshots [--scan PATH] [--segment] [--no-engine]

Starts a virtual X server (unless ``--display`` names one), runs the app there with the xcb
platform, optionally draws boxes with the real LiteMedSAM engine (each accepted into its own label, the
last one left as a proposal), then grabs the X screen (``QScreen.grabWindow(0)``: what the X server shows)
and the window itself. Prints the PNG paths. Exit code 0 on success.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HOOK = r'''
import os
from PySide6.QtGui import QGuiApplication
out = os.environ["SHOT_DIR"]
assert wait_until(lambda: window.session.volume is not None, 120), "the scan did not load"
window.resize(1400, 860)
window.move(0, 0)
wait(300)
cv = window.viewer.active.canvas
if os.environ.get("SHOT_SEGMENT") == "1":
    assert wait_until(lambda: window.engine.ready or window.engine.state == "error", 300), "engine"
    if window.engine.ready:
        h, w = cv.shape
        boxes = [[float(v) for v in b.split(",")] for b in os.environ["SHOT_BOXES"].split(";")]
        names = os.environ["SHOT_NAMES"].split(";")
        QTest.keyClick(cv, Qt.Key.Key_B)
        for n, (x0, y0, x1, y1) in enumerate(boxes):
            if n:
                QTest.keyClick(cv, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)   # next label
            drag(cv, image_point(cv, w * x0, h * y0), image_point(cv, w * x1, h * y1))
            assert wait_until(lambda: window.session.proposal is not None and window.engine.pending is None, 120)
            if n < len(boxes) - 1:          # the last one stays a proposal, to show both looks
                QTest.keyClick(cv, Qt.Key.Key_Return)
            if n < len(names) and names[n]:
                window.session.update_label(window.session.active_value, name=names[n])
        QTest.mouseMove(cv, image_point(cv, w * 0.5, h * 0.5))
wait(800)
shot = QGuiApplication.primaryScreen().grabWindow(0)
shot.save(os.path.join(out, "screen.png"))
window.grab().save(os.path.join(out, "window.png"))
print("SHOT", os.path.join(out, "screen.png"), shot.width(), shot.height(), flush=True)
window.close_discarding()
'''


def start_xvfb(size: str = "1440x900x24") -> tuple[subprocess.Popen, str]:
    """Start Xvfb on a free display (it picks one and reports it through -displayfd)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        raise FileNotFoundError("Xvfb is not installed (apt-get install xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    data = b""
    end = time.monotonic() + 20
    while not data.endswith(b"\n") and time.monotonic() < end:
        chunk = os.read(r, 16)
        if not chunk:
            break
        data += chunk
    os.close(r)
    if not data.strip():
        proc.kill()
        raise RuntimeError("Xvfb did not report a display")
    return proc, f":{int(data.strip())}"


@contextlib.contextmanager
def shot_session(display: str | None = None, size: str = "1440x900x24", prefix: str = "medplib-shot-"):
    """A scratch folder and an X display (a fresh Xvfb unless ``display`` is given), both cleaned up."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    xvfb = None
    try:
        if display is None:
            xvfb, display = start_xvfb(size)
        yield tmp, display
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


def run_hooked_app(hook: str, app_args: list[str], extra_env: dict[str, str], tmp: Path, display: str,
                   timeout: float) -> subprocess.CompletedProcess:
    """Run ``python -m app.main APP_ARGS`` on ``display`` with ``hook`` as its automation script.

    Settings and data go to ``tmp`` so a shot never sees (or changes) the user's own. The hook
    prints a line with "SHOT" when it has saved its picture; anything else is an error.
    """
    hook_path = tmp / "hook.py"
    hook_path.write_text(hook)
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", MEDPLIB_STUDIO_HOOK=str(hook_path),
               MEDPLIB_STUDIO_DATA=str(tmp / "data"), MEDPLIB_STUDIO_SETTINGS=str(tmp / "settings.ini"),
               **extra_env)
    proc = subprocess.run([sys.executable, "-m", "app.main", *app_args], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or "SHOT" not in proc.stdout:
        raise RuntimeError(f"the app failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


# boxes as fractions of the slice (x0, y0, x1, y1); defaults fit the middle axial slice of the sample
# (the Colin 27 T1 brain MRI): the brain inside the skull, where LiteMedSAM finds mostly white matter, then the
# region around the frontal horns (it takes the brighter tissue, not the dark horns; the model's limit on T1 brain)
DEFAULT_BOXES = "0.14,0.11,0.86,0.87;0.39,0.34,0.58,0.48"
DEFAULT_NAMES = "white matter;region 2"


def take(out: Path, scan: str | None = None, segment: bool = False, engine: bool = True,
         display: str | None = None, timeout: float = 600, boxes: str = DEFAULT_BOXES,
         names: str = DEFAULT_NAMES) -> Path:
    """Run the app on an X display and return the screenshot path."""
    out.mkdir(parents=True, exist_ok=True)
    args = [scan] if scan else ["--sample"]
    if not engine:
        args.append("--no-engine")
    with shot_session(display) as (tmp, display):
        run_hooked_app(HOOK, args, {"SHOT_DIR": str(out.resolve()), "SHOT_SEGMENT": "1" if segment else "0",
                                    "SHOT_BOXES": boxes, "SHOT_NAMES": names}, tmp, display, timeout)
    return out / "screen.png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/screenshots", help="folder for screen.png and window.png")
    p.add_argument("--scan", help="scan to open (default: the sample, see app/sample.py)")
    p.add_argument("--segment", action="store_true", help="draw boxes with LiteMedSAM before the shot")
    p.add_argument("--no-engine", action="store_true", help="do not load the model")
    p.add_argument("--display", help="use this X display instead of starting Xvfb")
    p.add_argument("--boxes", default=DEFAULT_BOXES, help="x0,y0,x1,y1;... as fractions of the slice")
    p.add_argument("--names", default=DEFAULT_NAMES, help="label names for the boxes, ';'-separated")
    a = p.parse_args(argv)
    path = take(Path(a.out), a.scan, a.segment, not a.no_engine, a.display, boxes=a.boxes, names=a.names)
    print(path)
    print(path.with_name("window.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
