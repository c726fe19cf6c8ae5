"""3D propagation: from a mask on one slice, segment the neighbouring slices one by one.

Each slice is prompted with the box of its neighbour's result (grown a little, since organs
change between slices); the new mask keeps only the parts that touch the neighbour's mask. A
direction stops where the object ends: empty or tiny result, an area jump, little overlap with
the neighbour, or a low model score. Works with any `SegmentationEngine`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from .base import CancelFn, Prompt, ProgressFn, SegmentationEngine
from .prompts import expand_box, iou, mask_box
from ..errors import CancelledError, PromptError


@dataclass
class StopRules:
    """When a direction ends (defaults are deliberately loose, round numbers)."""

    min_pixels: int = 4  # smaller results mean the object has ended
    min_area_ratio: float = 0.2  # new area / previous area below this: stop
    max_area_ratio: float = 2.5  # ... above this: leaked into a neighbour, stop
    min_overlap: float = 0.2  # IoU with the previous slice's mask below this: stop
    min_score: float = 0.35  # the model's own quality estimate below this: stop
    box_growth: float = 0.0  # grow the previous mask's box by this fraction (min 1 px)
    max_shift: float = 40.0  # stop when the mask's median grey level moves this far from the seed's


@dataclass
class PropagationLog:
    """What happened on each slice, for the status bar and for provenance."""

    seed: int = 0
    scores: dict[int, float] = field(default_factory=dict)
    stops: dict[str, str] = field(default_factory=dict)  # "up"/"down" -> reason


class WindowedSlices:
    """Slices ``[k]`` of a ``[k, j, i]`` array as displayed through a window, made on access."""

    def __init__(self, array: np.ndarray, window: tuple[float, float]):
        self.array, self.window = array, (float(window[0]), float(window[1]))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, k: int) -> np.ndarray:
        from ..display import apply_window

        return apply_window(self.array[k], *self.window)


def _keep_touching(mask: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Components of ``mask`` that overlap ``prev`` grown by a few pixels."""
    if not mask.any():
        return mask
    r = max(1, int(0.05 * np.sqrt(prev.sum())))
    near = cv2.dilate(prev.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(lab[near & mask])
    keep = keep[keep > 0]
    return np.isin(lab, keep) if keep.size else np.zeros_like(mask)


def propagate(
    engine: SegmentationEngine,
    slices: Sequence[np.ndarray] | np.ndarray,
    seed_index: int,
    seed_mask: np.ndarray,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    rules: StopRules | None = None,
    log: PropagationLog | None = None,
) -> np.ndarray:
    """Propagate ``seed_mask`` (bool, on slice ``seed_index``) through ``slices`` both ways.

    ``slices`` holds the displayed slices (``uint8``, window applied), indexed like the volume.
    Returns a bool ``(K, H, W)`` mask. ``progress(done, total)`` is called after every slice;
    when ``cancel()`` returns True, `CancelledError` is raised and nothing is returned.
    """
    rules = rules or StopRules()
    log = log if log is not None else PropagationLog()
    n = len(slices)
    if not 0 <= seed_index < n:
        raise PromptError(f"seed slice {seed_index} is outside the volume (0..{n - 1})")
    seed = np.asarray(seed_mask, bool)
    shape = np.asarray(slices[seed_index]).shape[:2]
    if seed.shape != shape:
        raise PromptError(f"seed mask is {seed.shape}, the slices are {shape}")
    if seed.sum() < rules.min_pixels:
        raise PromptError("the seed mask is empty: draw or segment the object on one slice first")
    out = np.zeros((n,) + shape, bool)
    out[seed_index] = seed
    log.seed = seed_index
    total, done = n - 1, 0
    seed_grey = _grey(np.asarray(slices[seed_index]), seed)
    for step, name in ((1, "up"), (-1, "down")):
        prev, k = seed, seed_index + step
        while 0 <= k < n:
            if cancel is not None and cancel():
                raise CancelledError("propagation cancelled")
            image = np.asarray(slices[k])
            mask, score, reason = _next_slice(engine, image, prev, rules)
            if reason is None and abs(_grey(image, mask) - seed_grey) > rules.max_shift:
                reason = "the object's grey level changed (it ended)"
            done += 1
            if progress is not None:
                progress(done, total)
            if reason is not None:
                log.stops[name] = f"slice {k}: {reason}"
                break
            out[k], log.scores[k] = mask, score
            prev, k = mask, k + step
        else:
            log.stops[name] = "reached the end of the volume"
        if step == 1:
            done = n - 1 - seed_index  # slices skipped after a stop count as done
    if progress is not None:
        progress(total, total)
    return out


def _grey(image: np.ndarray, mask: np.ndarray) -> float:
    """Median displayed grey level inside a mask."""
    img = image.mean(axis=2) if image.ndim == 3 else image
    return float(np.median(img[mask])) if mask.any() else 0.0


def _next_slice(engine, image, prev: np.ndarray, rules: StopRules):
    """Segment one slice from its neighbour's mask; ``(mask, score, stop reason or None)``."""
    box = expand_box(mask_box(prev), rules.box_growth, prev.shape, min_pad=1.0)
    try:
        res = engine.encode(image).predict(Prompt(box=box))
    except PromptError as exc:
        return None, 0.0, str(exc)
    if res.reason:
        return None, 0.0, res.reason
    mask = _keep_touching(res.mask, prev)
    area, prev_area = int(mask.sum()), int(prev.sum())
    if area < rules.min_pixels:
        return None, res.score, "the object ended (empty result)"
    ratio = area / max(prev_area, 1)
    if ratio < rules.min_area_ratio or ratio > rules.max_area_ratio:
        return None, res.score, f"area jumped by a factor {ratio:.2f}"
    if iou(mask, prev) < rules.min_overlap:
        return None, res.score, "little overlap with the neighbouring slice"
    if res.score < rules.min_score:
        return None, res.score, f"low model score {res.score:.2f}"
    return mask, float(res.score), None


def propagation_summary(log: PropagationLog) -> dict[str, Any]:
    """A JSON-friendly record of a propagation run."""
    ks = sorted(log.scores)
    return {
        "seed": log.seed,
        "slices": [min(ks + [log.seed]), max(ks + [log.seed])],
        "stops": dict(log.stops),
        "mean_score": float(np.mean(list(log.scores.values()))) if ks else None,
    }


def propagate_volume(engine: SegmentationEngine, volume, index: int, seed_mask: np.ndarray,
                     window: tuple[float, float] | None = None, progress: ProgressFn | None = None,
                     cancel: CancelFn | None = None, log: PropagationLog | None = None) -> np.ndarray:
    """`propagate` over a `Volume`'s k axis, slices displayed with ``window`` (default: its own)."""
    win = window or volume.window or (127.5, 255.0)
    return propagate(engine, WindowedSlices(volume.array, win), index, seed_mask,
                     progress=progress, cancel=cancel, log=log)


@dataclass
class PropagationResult:
    """A 3D mask on the volume's ``[k, j, i]`` grid with a summary of how it was reached."""

    mask: np.ndarray  # bool, the volume's spatial shape
    summary: dict[str, Any]
    axis: int  # array axis propagation ran along
    seed_index: int

    @property
    def n_slices(self) -> int:
        other = tuple(a for a in range(3) if a != self.axis)
        return int(self.mask.any(axis=other).sum())


def seed_in_array_order(geom, mask2d: np.ndarray, shape_kji) -> np.ndarray:
    """A displayed-slice mask (``geom``: a `SliceGeometry`) re-ordered as the array's own 2D
    slice along ``geom.axis`` (undoing the display's transpose and flips, nothing else)."""
    plane_shape = [n for a, n in enumerate(shape_kji) if a != geom.axis]
    tmp = np.zeros([1 if a == geom.axis else n for a, n in enumerate(shape_kji)], dtype=bool)
    dataclasses.replace(geom, index=0).take(tmp)[...] = mask2d
    return tmp.reshape(plane_shape)


def propagate_in_view(engine: SegmentationEngine, volume, orientation: str, index: int,
                      seed2d: np.ndarray, window: tuple[float, float] | None = None,
                      progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                      rules: StopRules | None = None) -> PropagationResult:
    """Propagate a mask drawn on a displayed slice (``orientation``/``index``, display order)
    through the volume along that view's array axis; the one entry point for GUI, batch,
    server and scripts. The engine sees the slices through ``window`` (the user's)."""
    from ..slicing import slice_geometry

    geom = slice_geometry(volume, orientation, index)
    seed = seed_in_array_order(geom, np.asarray(seed2d, bool), volume.shape)
    axis = geom.axis
    arr = np.moveaxis(volume.array, axis, 0) if axis != 0 else volume.array
    win = tuple(window or volume.window or (127.5, 255.0))
    log = PropagationLog()
    mask = propagate(engine, WindowedSlices(arr, win), geom.index, seed, progress=progress,
                     cancel=cancel, rules=rules, log=log)
    mask = np.moveaxis(mask, 0, axis) if axis != 0 else mask
    summary = dict(propagation_summary(log), window=list(win), orientation=orientation)
    return PropagationResult(np.ascontiguousarray(mask), summary, axis, geom.index)
