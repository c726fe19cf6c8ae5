"""GUI benchmark: frame time while scrolling a 512×512 CT with a label overlay, the longest
event-loop stall while encoding, propagating, exporting and saving run in the background, and
click → mask in the real window.

    python bench/gui.py [--frames 200] [--no-model] [--clicks 12] [--xvfb] [--no-propagate]

``--xvfb`` runs the window on a virtual X server (xcb platform, as a user's display would
be; the default is Qt's offscreen platform).

Frames: the real `SliceView` of a 1400×900 offscreen `MainWindow`; each step sets the next
slice and repaints synchronously (window LUT, overlay gather, QImage, paint), timed per frame.
"cold" frames meet each slice for the first time; "warm" ones come back to slices whose
windowed pixels are cached (the label overlay is rebuilt every frame in both).
Stalls: a 5 ms QTimer records its own ticks while the work runs on worker threads; the longest
gap minus 5 ms is the longest time the GUI could not react. Goals: ≤ 16 ms median per frame,
≤ 50 ms stall.
Clicks: the point tool (P) and a real left click on the canvas of the slice on screen, its
embedding cached; timed from the mouse event until the proposal is in the document and the
canvas repainted, (a) while the neighbouring slices are being pre-encoded in the background
(the usual state right after scrolling), (b) with nothing in the background, and (c) as (a)
but with pre-emption switched off (the behaviour before it: background encoding shares the
cores with the click), then (a) and (b) with the second look of unsure clicks switched on
(Settings ▸ Look again at unsure clicks). Goal: ≤ 100 ms median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the model-free test engine and isolated folders
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def ct_512(tmp: Path):
    """A real 512×512 CT: ../shared/data's 20-slice series, else pydicom-data's slice stacked."""
    import medplib_core

    shared = Path(os.environ.get("MEDPLIB_SHARED_DATA", ROOT.parent / "shared" / "data")) / "volumes" / "ct_series_j2k"
    if shared.is_dir():
        return medplib_core.load(shared), str(shared)
    from app.sample import sample_path

    vol = medplib_core.load(sample_path())
    if vol.shape[1:] != (512, 512):
        raise SystemExit("needs a 512×512 CT: install pydicom-data or provide ../shared/data")
    vol.array = np.repeat(vol.array, 40, axis=0)
    vol.spacing = (vol.spacing[0], vol.spacing[1], 2.5)
    return vol, sample_path() + " ×40"


def fake_labels(vol) -> np.ndarray:
    a = vol.array
    lab = np.zeros(vol.shape, np.uint16)
    lab[(a > 20) & (a < 80)] = 1
    lab[a > 300] = 2
    return lab


class StallMeter:
    """Longest gap between ticks of a fast QTimer while something runs."""

    def __init__(self, interval_ms: int = 5):
        from PySide6.QtCore import QTimer

        self.interval = interval_ms
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.last = None
        self.worst = 0.0

    def _tick(self):
        now = time.perf_counter()
        if self.last is not None:
            self.worst = max(self.worst, (now - self.last) * 1000 - self.interval)
        self.last = now

    def run(self, start, done, timeout: float = 300.0) -> tuple[float, float]:
        """Call ``start()``, spin the loop until ``done()``; returns (stall ms, elapsed s)."""
        from app.automation import wait

        self.last, self.worst = None, 0.0
        self.timer.start()
        wait(50)
        t0 = time.perf_counter()
        start()
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            wait(5)
        elapsed = time.perf_counter() - t0
        wait(50)
        self.timer.stop()
        return max(self.worst, 0.0), elapsed


def quiet(win) -> None:
    """Stop the automatic pre-encoding of neighbouring slices and wait until it is idle."""
    from app.automation import wait

    wait(200)
    win.engine.stop_prefetch()


def bench_frames(win, frames: int) -> list[tuple[str, float, float, float]]:
    view = win.viewer.active
    n = view.n_slices()
    cv = view.canvas
    rows = []
    recent = list(range(max(0, n - 64), n))  # few enough to stay in the slice cache
    for label, order in (("cold", list(range(n))), ("warm", recent * (frames // len(recent) + 1))):
        if label == "cold":
            view.renderer.clear()
        times = []
        for idx in order[:frames]:
            t = time.perf_counter()
            view.set_index(idx if idx != view.index else (idx + 1) % n)
            cv.repaint()
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        rows.append((f"scroll 512² + overlay ({label}, {len(times)} frames)", statistics.median(times),
                     times[int(0.95 * (len(times) - 1))], max(times)))
    return rows


def _click_once(win, view, x: float, y: float) -> tuple[float, float]:
    """One real click with the point tool; (ms until the proposal is drawn, engine ms), NaN for
    a click where the model found nothing (the window says "No mask"; its box is closed)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication, QMessageBox

    from app.automation import image_point, wait_signal

    win.segment.discard()
    QApplication.processEvents()
    cv = view.canvas
    errors: list = []

    def on_error(*msg) -> None:
        errors.append(msg)

    win.engine.error.connect(on_error)
    t = time.perf_counter()
    QTest.mouseClick(cv, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, image_point(cv, x, y))
    # woken by the proposal or the error itself: polling the event loop would take CPU from the model
    answered = wait_signal((win.doc.proposal_changed, win.engine.error),
                           lambda: win.engine.pending is None and (win.session.proposal is not None or errors), 120)
    win.engine.error.disconnect(on_error)
    if not answered or win.session.proposal is None:  # e.g. "No mask": the model found nothing there
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QMessageBox):
                w.close()
        return float("nan"), float("nan")  # counted in the row's name, not timed
    QApplication.processEvents()  # the repaint the window scheduled for the answer (its area only)
    ms = (time.perf_counter() - t) * 1000
    prov = win.session.proposal.record.provenance if win.session.proposal is not None else {}
    return ms, float(prov.get("latency_ms", float("nan")))


def bench_clicks(win, vol, n: int) -> list[tuple[str, float, float, float, int]]:
    """Click → mask in the window: with pre-encoding running, idle, and without pre-emption;
    then the first two with the second look of unsure clicks (`single_click`) switched on."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from app.automation import wait_until

    eng = win.engine.engine
    view = win.viewer.active
    win.activateWindow()
    QTest.keyClick(view.canvas, Qt.Key.Key_P)  # the point tool, as a user picks it
    if win.tools.tool.value != "point_pos":  # no keyboard focus on this display: the same, directly
        win.tools.set_tool("point_pos")
    rng = np.random.default_rng(0)
    h, w = vol.shape[1:]
    points = [(float(rng.uniform(0.3, 0.7) * w), float(rng.uniform(0.3, 0.7) * h)) for _ in range(n)]
    conditions = (("pre-encoding neighbours", True, True, False), ("idle", False, True, False),
                  ("pre-encoding, pre-emption off", True, False, False),
                  ("pre-encoding neighbours, second look when unsure", True, True, True),
                  ("idle, second look when unsure", False, True, True))
    gate_enter, second_look = eng.gate.on_enter, eng.settings.click_second_look
    times = {c[0]: [] for c in conditions}
    inner = {c[0]: [] for c in conditions}
    during = {c[0]: 0 for c in conditions}
    for i, (x, y) in enumerate(points):
        for label, background, preempt, second in conditions:  # interleaved: the machine's load hits all alike
            eng.settings.click_second_look = second
            eng.gate.on_enter = gate_enter if preempt else None
            if eng._pre is not None:
                eng._pre._gate = eng.gate if preempt else None
            step = 1 if (i + len(times[label])) % 2 == 0 else -1
            view.set_index((view.index + step) % view.n_slices())  # the controller pre-encodes it first
            px = view.renderer.pixels("axial", view.index)
            wait_until(lambda: eng.is_cached(px), 300)
            if background:
                wait_until(lambda: eng.preencoding, 5)
            else:
                win.engine.stop_prefetch()
            during[label] += int(eng.preencoding)
            ms, engine_ms = _click_once(win, view, x, y)
            times[label].append(ms)
            inner[label].append(engine_ms)
    win.engine.stop_prefetch()
    eng.settings.click_second_look = second_look
    eng.gate.on_enter = gate_enter
    if eng._pre is not None:
        eng._pre._gate = eng.gate
    rows = []
    for label, *_ in conditions:
        t_all, e_all = np.asarray(times[label]), np.asarray(inner[label])
        ok = np.isfinite(t_all)
        name = f"click → mask in the window, {label}"
        if not ok.all():
            name += f" ({int((~ok).sum())} of {len(t_all)}: no mask there, not timed)"
        if ok.any():
            rows.append((name, float(np.median(t_all[ok])), float(np.percentile(t_all[ok], 90)),
                         float(np.nanmedian(e_all[ok])), during[label]))
        else:
            rows.append((name, float("nan"), float("nan"), float("nan"), during[label]))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--slices", type=int, default=0, help="repeat the scan's slices up to this many (e.g. 300)")
    p.add_argument("--no-model", action="store_true", help="skip the LiteMedSAM encoding/propagation rows")
    p.add_argument("--clicks", type=int, default=12, help="clicks per condition (0: skip the click rows)")
    p.add_argument("--xvfb", action="store_true", help="run the window under Xvfb (xcb platform)")
    p.add_argument("--no-propagate", action="store_true", help="skip the 3D propagation rows (minutes)")
    a = p.parse_args(argv)
    if a.xvfb and not os.environ.get("MEDPLIB_BENCH_XVFB"):
        import subprocess

        env = dict(os.environ, QT_QPA_PLATFORM="xcb", MEDPLIB_BENCH_XVFB="1")
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1440x900x24", sys.executable, __file__] + list(argv or sys.argv[1:])
        return subprocess.call(cmd, env=env)
    from PySide6.QtWidgets import QApplication

    from app.automation import wait_until
    from app.main_window import MainWindow
    from studio_support import ThresholdEngine, isolate

    tmp = Path(tempfile.mkdtemp(prefix="medplib-bench-"))
    isolate(tmp)
    app = QApplication.instance() or QApplication([])
    factory = ThresholdEngine if a.no_model else None
    win = MainWindow(engine_factory=factory, autosave_ms=10**7)
    win.resize(1400, 900)
    win.show()
    vol, src = ct_512(tmp)
    if a.slices and a.slices > vol.shape[0]:
        reps = -(-a.slices // vol.shape[0])
        vol.array = np.ascontiguousarray(np.tile(vol.array, (reps, 1, 1))[: a.slices])
        src += f" tiled to {a.slices} slices"
    _ = vol.value_range  # computed (and cached) by the loader thread in the app
    win.session.open(vol, src, label_array=fake_labels(vol))
    app.processEvents()
    print(f"scan: {src}  shape {vol.shape}  labels on {int((win.session.labelmap.array > 0).any(axis=(1, 2)).sum())} slices")

    wait_until(lambda: win.engine.ready or win.engine.state == "error", 300)
    quiet(win)
    frame_rows = bench_frames(win, a.frames)
    quiet(win)
    meter = StallMeter()
    stall_rows = []
    t_idle = time.perf_counter()
    stall, el = meter.run(lambda: None, lambda: time.perf_counter() - t_idle > 3.0)
    stall_rows.append(("idle, nothing in the background (OS noise baseline)", stall, el))
    view = win.viewer.active
    if win.engine.ready and not a.no_model:
        eng = win.engine.engine
        slices = [view.renderer.pixels("axial", k) for k in range(4)]
        eng.cache.clear()
        stall, el = meter.run(lambda: eng.preencode(slices), lambda: not eng.preencoding)
        stall_rows.append(("background pre-encoding, 4 slices (LiteMedSAM)", stall, el))
    click_rows = bench_clicks(win, vol, a.clicks) if win.engine.ready and not a.no_model and a.clicks else []
    stall, el = meter.run(lambda: win.segment.on_box(view, 150, 150, 330, 330),
                          lambda: win.session.proposal is not None and win.engine.pending is None)
    stall_rows.append(("box → mask (engine thread) and proposal drawn", stall, el))
    from medplib_core.engines.base import Capability

    if not a.no_propagate and win.session.proposal is not None and win.engine.engine.supports(Capability.PROPAGATE):
        stall, el = meter.run(win.propagate, lambda: not win.propagation.running, timeout=900)
        stall_rows.append((f"propagate in 3D ({vol.shape[0]} slices)", stall, el))
        if win.session.proposal is not None and win.session.proposal.is_3d:
            stall, el = meter.run(win.segment.accept, lambda: not win.segment.accepting)
            stall_rows.append(("accept the 3D proposal (voxel write on a worker)", stall, el))
    win.segment.discard()
    done = []
    stall, el = meter.run(lambda: win.files.export(str(tmp / "labels.nii.gz"), on_done=done.append), lambda: bool(done))
    stall_rows.append(("export NIfTI labels 512²×%d" % vol.shape[0], stall, el))
    saved = []
    win.files.saved.connect(saved.append)
    stall, el = meter.run(lambda: win.files.save_project(str(tmp / "p.medplib")), lambda: bool(saved))
    stall_rows.append(("save project (copy + compress on a worker)", stall, el))
    win.session.mark_changed()
    revs = []
    win.autosaver.saved.connect(revs.append)
    stall, el = meter.run(win.autosaver.save_now, lambda: bool(revs))
    stall_rows.append(("autosave snapshot", stall, el))

    print()
    print(f"| {'frame time':56s} | median ms | p95 ms | max ms |")
    print(f"|{'-' * 58}|-----------|--------|--------|")
    for name, med, p95, mx in frame_rows:
        print(f"| {name:56s} | {med:9.2f} | {p95:6.2f} | {mx:6.2f} |")
    print()
    print(f"| {'background work':56s} | longest stall ms | took s |")
    print(f"|{'-' * 58}|------------------|--------|")
    for name, stall, el in stall_rows:
        print(f"| {name:56s} | {stall:16.1f} | {el:6.2f} |")
    if click_rows:
        inf = win.engine.engine.info
        print()
        print(f"| {'clicks (' + inf.device + ')':56s} | median ms | p90 ms | engine ms | clicks with pre-encoding running |")
        print(f"|{'-' * 58}|-----------|--------|-----------|------|")
        for name, med, p90, inner, during in click_rows:
            print(f"| {name:56s} | {med:9.1f} | {p90:6.1f} | {inner:9.1f} | {during} |")
    print()
    print("goals: median frame <= 16 ms; longest stall <= 50 ms; click -> mask <= 100 ms")
    try:
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    except OSError:
        pass
    win.close_discarding()
    return 0


if __name__ == "__main__":
    sys.exit(main())
