"""Helpers for tests, benchmarks and screenshot scripts: a fast model-free engine, isolated app
folders, a small real CT volume and real Qt input events (Qt is imported only where used).

`ThresholdEngine` implements the `SegmentationEngine` interface without a model (the brighter
pixels inside a box, or around a click), so GUI tests of everything except the model itself
run in milliseconds. The final GUI test uses the real LiteMedSAM engine.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from medplib_core.engines.base import Capability, EngineInfo, EngineSession, Prompt, SegmentationEngine, SegResult, provenance


class _Session(EngineSession):
    def __init__(self, engine: "ThresholdEngine", image: np.ndarray):
        self.engine = engine
        self.image = image if image.ndim == 2 else image.mean(axis=2)
        self.image_shape = self.image.shape

    def predict(self, prompt: Prompt) -> SegResult:
        started = time.perf_counter()
        h, w = self.image_shape
        mask = np.zeros((h, w), bool)
        if prompt.box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        elif prompt.polygon:
            xs, ys = zip(*prompt.polygon)
            x0, y0, x1, y1 = int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))
        elif prompt.points:
            x, y = prompt.points[0]
            x0, y0, x1, y1 = int(x) - 10, int(y) - 10, int(x) + 10, int(y) + 10
        else:
            x0 = y0 = x1 = y1 = 0
        x0, x1 = max(0, x0), min(w - 1, x1)
        y0, y1 = max(0, y0), min(h - 1, y1)
        if x1 >= x0 and y1 >= y0:
            crop = self.image[y0:y1 + 1, x0:x1 + 1]
            mask[y0:y1 + 1, x0:x1 + 1] = crop >= crop.mean()
        if prompt.mask_input is not None:
            mask |= prompt.mask_input
            for (x, y), lab in zip(prompt.points, prompt.point_labels):
                if not lab:
                    mask[max(0, int(y) - 5):int(y) + 6, max(0, int(x) - 5):int(x) + 6] = False
        return SegResult(mask, 0.9, provenance(self.engine.info, prompt, started), None)


class ThresholdEngine(SegmentationEngine):
    """A model-free engine with the real interface (tests only)."""

    capabilities = frozenset({Capability.CACHE_QUERY, Capability.PROPAGATE})

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.encoded: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("threshold", "test", "none", "0" * 64, "cpu")

    def encode(self, image: np.ndarray) -> EngineSession:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.encoded.add(image.tobytes()[:64])
        return _Session(self, image)

    def is_cached(self, image: np.ndarray) -> bool:
        with self._lock:
            return image.tobytes()[:64] in self.encoded


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions of a bool mask that do not touch the image border."""
    import cv2

    inv = 1 - mask.astype(np.uint8)
    n, lab, _, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).tolist())
    return mask.astype(bool) | np.isin(lab, [i for i in range(1, n) if i not in border])


def windowed_ct_small(centre: float = 40.0, width: float = 400.0) -> np.ndarray:
    """pydicom's real CT_small.dcm (128x128) as a displayed uint8 slice in a HU window."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return np.clip((hu - (centre - width / 2)) * 255.0 / width, 0, 255).astype(np.uint8)


def isolate(tmp: Path) -> dict[str, str]:
    """Point settings and the data/recovery folder at ``tmp`` (returns the env vars set)."""
    env = {"MEDPLIB_STUDIO_DATA": str(tmp / "data"), "MEDPLIB_STUDIO_SETTINGS": str(tmp / "settings.ini")}
    os.environ.update(env)
    return env


def drop_path(window, path: str | Path) -> None:
    """Deliver a real drag-enter + drop of ``path`` onto ``window`` (as a file manager would)."""
    from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPoint(window.width() // 2, window.height() // 2)
    with warnings.catch_warnings():  # the QPoint constructor is the only one PySide offers
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    drop = QDropEvent(pos.toPointF(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)


def stacked_ct(path: Path, n: int = 12) -> Path:
    """A small multi-slice NIfTI built from pydicom's real CT slice (shifted per slice)."""
    import nibabel as nib
    from pydicom.data import get_testdata_file

    import medplib_core

    vol = medplib_core.load(get_testdata_file("CT_small.dcm"))
    plane = vol.array[0].astype(np.int16)
    data = np.stack([np.roll(plane, s - n // 2, axis=1) for s in range(n)])  # [k, j, i]
    aff = np.diag([-vol.spacing[0], -vol.spacing[1], 2.5, 1.0])  # LPS-like axes stored as RAS
    img = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), aff)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def wheel(widget, pos, steps: int = 1, modifiers=None) -> None:
    """Send a real mouse-wheel event (``steps`` notches, positive = away from the user)."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    mods = modifiers if modifiers is not None else Qt.KeyboardModifier.NoModifier
    ev = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * steps),
                     Qt.MouseButton.NoButton, mods, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def draw_box(qtbot, canvas, x0: float, y0: float, x1: float, y1: float, steps: int = 1) -> None:
    """Pick the box tool (B) and drag a box from image point (x0, y0) to (x1, y1) on ``canvas``
    with real mouse events (press, ``steps`` moves, release)."""
    from PySide6.QtCore import Qt

    from app.automation import image_point

    qtbot.keyClick(canvas, Qt.Key.Key_B)
    a, b = image_point(canvas, x0, y0), image_point(canvas, x1, y1)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=a)
    for n in range(1, steps + 1):
        qtbot.mouseMove(canvas, a + (b - a) * (n / steps))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=b)


def medplib_settings(paths, notice_accepted: bool = True) -> dict:
    """Window settings that point MedPLIB at a tiny checkpoint set (CPU)."""
    out = {f"medplib/{key}": str(val) for key, val in (
        ("checkpoint", paths.checkpoint), ("clip", paths.clip), ("sam", paths.sam), ("device", "cpu"))}
    if notice_accepted:
        out["medplib/notice_accepted"] = True
    return out
