"""The pending proposal and the planes prompt masks live on.

A prompt record's 2D mask lies on a displayed slice (``orientation`` axial/coronal/sagittal and
its ``index``, display order as `SliceGeometry.take` gives it) or, for batch prompts, on the
scan's own stored slice (`STORED`: ``index`` along k, x = i, y = j). A 3D mask (propagation)
lies on the whole ``[k, j, i]`` grid. `plane_view` is the label-array view a mask is written
through; `Proposal.mask_on` shows any mask on any displayed slice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..engines.base import Prompt
from ..project import PromptRecord
from ..slicing import slice_geometry
from ..volume import Volume

STORED = "stored"  # the orientation of a mask on the scan's own k-slice

View = Callable[[np.ndarray], np.ndarray]


def plane_view(volume: Volume, orientation: str, index: int) -> View:
    """The view of a ``[k, j, i]`` array that a 2D mask of ``orientation``/``index`` covers."""
    if orientation == STORED:
        k = int(index)
        if not 0 <= k < volume.shape[0]:
            raise IndexError(f"stored slice {k} is outside 0..{volume.shape[0] - 1}")
        return lambda a: a[k]
    return slice_geometry(volume, orientation, index).take


def mask_on_slice(volume: Volume, record: PromptRecord, orientation: str, index: int) -> np.ndarray | None:
    """``record``'s mask on a displayed slice (display order), or None when it has none there."""
    mask = record.mask
    if mask is None:
        return None
    if mask.ndim == 3:
        m = slice_geometry(volume, orientation, index).take(mask)
        return m if m.any() else None
    if record.orientation == orientation and record.index == index:
        return mask
    if record.orientation == STORED:
        geom = slice_geometry(volume, orientation, index)
        if geom.axis == 0 and geom.index == record.index:  # the same plane, in display order
            return np.ascontiguousarray(dataclasses.replace(geom, index=0).take(mask[np.newaxis]))
    return None


@dataclass
class Proposal:
    """A mask waiting for accept (Enter) or discard (Esc)."""

    record: PromptRecord
    prompt: Prompt | None = None  # kept for corrective clicks

    @property
    def is_3d(self) -> bool:
        return self.record.mask is not None and self.record.mask.ndim == 3

    def mask_on(self, volume: Volume, orientation: str, index: int) -> np.ndarray | None:
        """The proposal's 2D mask on the given displayed slice, if it has one there."""
        return mask_on_slice(volume, self.record, orientation, index)


@dataclass
class AcceptJob:
    """An accept checked on the caller's thread, its voxel write possibly run on a worker."""

    record: PromptRecord
    value: int  # the label written into
    policy: Any  # the label's OverlapPolicy
    name: str
    view: View | None  # None: a 3D mask on the whole grid
    labels_before: list[dict[str, Any]]
    labelmap: Any  # the LabelMap at the time (another scan may be open when the write ends)
