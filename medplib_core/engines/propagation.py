"""3D propagation: from a mask on one slice, segment the neighbouring slices one by one.

Each slice is prompted with a box from its neighbour's result that follows the object: pushed
out where the object goes on past the mask, pulled in where the model filled the box with
something else, judged by the model's score and the seed's appearance; a direction stops
where the object ends (`propagation_rules`). Both directions advance in turn, so the next
slice is encoded in the background while the current one decodes, and only slices that
propagation uses are encoded (`propagation_pipeline`). Works with any `SegmentationEngine`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .base import CancelFn, ProgressFn, SegmentationEngine
from .propagation_pipeline import SliceEncoder
from .propagation_rules import Follower, StopRules
from ..errors import CancelledError, PromptError

__all__ = ["PropagationLog", "PropagationResult", "StopRules", "WindowedSlices", "propagate",
           "propagate_in_view", "propagate_volume", "propagation_summary", "seed_in_array_order"]


@dataclass
class PropagationLog:
    """What happened on each slice, for the status bar and for provenance."""

    seed: int = 0
    scores: dict[int, float] = field(default_factory=dict)
    stops: dict[str, str] = field(default_factory=dict)  # "up"/"down" -> reason
    slices: dict[int, dict] = field(default_factory=dict)  # per slice: area, score, decodes
    encoded: list[int] = field(default_factory=list)  # slices encoded, in order
    wasted: list[int] = field(default_factory=list)  # ... of which never used
    reach: list[float] = field(default_factory=list)  # the engine's reach past a tight box (px)
    encode_s: float = 0.0  # seconds spent encoding slices ...
    wait_s: float = 0.0  # ... of which propagation waited for (the rest overlapped decoding)


class WindowedSlices:
    """Slices ``[k]`` of a ``[k, j, i]`` array as displayed through a window, made on access."""

    def __init__(self, array: np.ndarray, window: tuple[float, float]):
        self.array, self.window = array, (float(window[0]), float(window[1]))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, k: int) -> np.ndarray:
        from ..display import apply_window

        return apply_window(self.array[k], *self.window)


@dataclass
class _Direction:
    name: str
    step: int
    k: int
    prev: np.ndarray
    alive: bool = True
    areas: list[int] = field(default_factory=list)  # areas kept so far, the seed's first


def propagate(
    engine: SegmentationEngine,
    slices: Sequence[np.ndarray] | np.ndarray,
    seed_index: int,
    seed_mask: np.ndarray,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    rules: StopRules | None = None,
    log: PropagationLog | None = None,
    lookahead: bool | None = None,
) -> np.ndarray:
    """Propagate ``seed_mask`` (bool, on slice ``seed_index``) through ``slices`` both ways.

    ``slices`` holds the displayed slices (``uint8``, window applied), indexed like the volume.
    Returns a bool ``(K, H, W)`` mask. ``progress(done, total)`` is called after every slice;
    when ``cancel()`` returns True, `CancelledError` is raised and nothing is returned.
    ``lookahead`` encodes the next slice in the background (default: when the engine declares
    background encoding).
    """
    rules = rules or StopRules()
    log = log if log is not None else PropagationLog()
    n = len(slices)
    if not 0 <= seed_index < n:
        raise PromptError(f"seed slice {seed_index} is outside the volume (0..{n - 1})")
    seed = np.asarray(seed_mask, bool)
    seed_image = np.asarray(slices[seed_index])
    shape = seed_image.shape[:2]
    if seed.shape != shape:
        raise PromptError(f"seed mask is {seed.shape}, the slices are {shape}")
    if seed.sum() < rules.min_pixels:
        raise PromptError("the seed mask is empty: draw or segment the object on one slice first")
    out = np.zeros((n,) + shape, bool)
    out[seed_index] = seed
    log.seed = seed_index
    seed_area = [int(seed.sum())]
    dirs = [_Direction("up", 1, seed_index + 1, seed, areas=list(seed_area)),
            _Direction("down", -1, seed_index - 1, seed, areas=list(seed_area))]
    total, done = n - 1, 0
    encoder = SliceEncoder(engine, slices, lookahead)
    try:
        encoder.request(seed_index)
        for d in dirs:
            _check_end(d, n, log)
            if d.alive:
                encoder.request(d.k)
        seed_session = encoder.take(seed_index)[1] if any(d.alive for d in dirs) else None
        follower = Follower(seed_image, seed, rules, seed_session)
        log.reach = [round(float(v), 2) for v in follower.reach]
        while any(d.alive for d in dirs):
            for d in dirs:
                if not d.alive:
                    continue
                if cancel is not None and cancel():
                    raise CancelledError("propagation cancelled")
                if sum(o.alive for o in dirs) == 1:
                    encoder.request(d.k + d.step)  # alone: encode one ahead (maybe not needed)
                image, session = encoder.take(d.k)
                res = follower.next_slice(session, image, d.prev, d.areas)
                log.slices[d.k] = dict(res.stats, direction=d.name)
                if res.reason is not None:
                    log.stops[d.name] = f"slice {d.k}: {res.reason}"
                    d.alive = False
                    done += abs((n - 1 if d.step > 0 else 0) - d.k) + 1  # the rest counts as done
                else:
                    out[d.k], log.scores[d.k] = res.mask, res.score
                    d.prev, d.k = res.mask, d.k + d.step
                    d.areas.append(int(res.mask.sum()))
                    done += 1
                    _check_end(d, n, log)
                    if d.alive:
                        encoder.request(d.k)
                if progress is not None:
                    progress(min(done, total), total)
    except BaseException:
        encoder.close(wait=False)
        raise
    encoder.close(wait=True)
    log.encoded, log.wasted = list(encoder.encoded), encoder.wasted
    log.encode_s, log.wait_s = encoder.encode_s, encoder.wait_s
    if progress is not None:
        progress(total, total)
    return out


def _check_end(d: _Direction, n: int, log: PropagationLog) -> None:
    if not 0 <= d.k < n:
        d.alive = False
        log.stops[d.name] = "reached the end of the volume"


def propagation_summary(log: PropagationLog) -> dict[str, Any]:
    """A JSON-friendly record of a propagation run."""
    ks = sorted(log.scores)
    return {
        "seed": log.seed,
        "slices": [min(ks + [log.seed]), max(ks + [log.seed])],
        "stops": dict(log.stops),
        "mean_score": float(np.mean(list(log.scores.values()))) if ks else None,
        "encoded": len(log.encoded),
        "encoded_unused": len(log.wasted),
    }


def propagate_volume(engine: SegmentationEngine, volume, index: int, seed_mask: np.ndarray,
                     window: tuple[float, float] | None = None, progress: ProgressFn | None = None,
                     cancel: CancelFn | None = None, log: PropagationLog | None = None,
                     rules: StopRules | None = None, lookahead: bool | None = None) -> np.ndarray:
    """`propagate` over a `Volume`'s k axis, slices displayed with ``window`` (default: its own)."""
    win = window or volume.window or (127.5, 255.0)
    return propagate(engine, WindowedSlices(volume.array, win), index, seed_mask, progress=progress,
                     cancel=cancel, log=log, rules=rules, lookahead=lookahead)


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
                      rules: StopRules | None = None, log: PropagationLog | None = None) -> PropagationResult:
    """Propagate a mask drawn on a displayed slice (``orientation``/``index``, display order)
    through the volume along that view's array axis; the one entry point for GUI, batch,
    server and scripts. The engine sees the slices through ``window`` (the user's)."""
    from ..slicing import slice_geometry

    geom = slice_geometry(volume, orientation, index)
    seed = seed_in_array_order(geom, np.asarray(seed2d, bool), volume.shape)
    axis = geom.axis
    arr = np.moveaxis(volume.array, axis, 0) if axis != 0 else volume.array
    win = tuple(window or volume.window or (127.5, 255.0))
    log = log if log is not None else PropagationLog()
    mask = propagate(engine, WindowedSlices(arr, win), geom.index, seed, progress=progress,
                     cancel=cancel, rules=rules, log=log)
    mask = np.moveaxis(mask, 0, axis) if axis != 0 else mask
    summary = dict(propagation_summary(log), window=list(win), orientation=orientation)
    return PropagationResult(np.ascontiguousarray(mask), summary, axis, geom.index)
