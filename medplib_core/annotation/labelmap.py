"""A label map on a volume's grid, with policy-aware edits that can be reverted.

Every edit goes through `LabelMap.apply`. An edit works on a *view* of the label array (the
whole array, or one displayed slice as returned by `SliceGeometry.take`), so a brush stroke
on a coronal slice costs only that slice. The returned `Edit` holds the changed bounding box of
the view, zlib-compressed, never a full copy; `revert` and `reapply` write it back. The undo
history that keeps edits within a memory budget is `medplib_core.session.history.History`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import MedplibError
from ..volume import Volume
from .labels import LabelSet, OverlapPolicy

View = Callable[[np.ndarray], np.ndarray]


def _whole(a: np.ndarray) -> np.ndarray:
    return a


class LockedLabelError(MedplibError):
    """An edit asked to change a locked label."""


@dataclass
class Edit:
    """One undoable change: old and new values of a box inside a view of the label array."""

    view: View
    box: tuple[slice, ...]
    shape: tuple[int, ...]
    old: bytes
    new: bytes
    description: str = ""
    changed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return len(self.old) + len(self.new)

    def old_block(self) -> np.ndarray:
        """The box's values before the edit (read-only)."""
        return _unpack(self.old, self.shape)

    def new_block(self) -> np.ndarray:
        """The box's values after the edit (read-only)."""
        return _unpack(self.new, self.shape)


def _unpack(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(data), dtype=np.uint16).reshape(shape)


def _pack(block: np.ndarray) -> bytes:
    """Compress a contiguous block without first copying it into a bytes object."""
    return zlib.compress(np.ascontiguousarray(block), 1)


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


class LabelMap:
    """Integer labels (uint16, indexed ``[k, j, i]``) plus the `LabelSet` that names them."""

    def __init__(self, shape: tuple[int, int, int], labels: LabelSet | None = None,
                 array: np.ndarray | None = None):
        if array is None:
            array = np.zeros(shape, dtype=np.uint16)
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"label array shape {array.shape} does not match the grid {shape}")
        self.array = np.ascontiguousarray(array, dtype=np.uint16)
        self.labels = labels if labels is not None else LabelSet()

    # ----- editing -----------------------------------------------------------------------------
    def apply(self, mask: np.ndarray, value: int, *, view: View | None = None,
              policy: OverlapPolicy | str | None = None, erase: bool = False,
              description: str = "", meta: dict[str, Any] | None = None) -> Edit | None:
        """Paint ``value`` into the voxels of ``mask`` (or erase them with ``erase=True``).

        ``mask`` has the shape of ``view(self.array)``. The policy defaults to the label's own:
        OVERWRITE takes voxels of other labels, MERGE fills background only. Voxels of locked
        labels are never changed. Erasing with a ``value`` removes only that label; with
        ``value=0`` it removes every unlocked label. Returns the `Edit` (for an undo history), or
        None if nothing changed.
        """
        view = view or _whole
        target = view(self.array)
        if not np.shares_memory(target, self.array):
            raise ValueError("the view must return a view of the label array, not a copy")
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != target.shape:
            raise ValueError(f"mask shape {mask.shape} does not match the view {target.shape}")
        value = int(value)
        if value and value not in self.labels:
            raise KeyError(f"no label with value {value}")
        if value and self.labels[value].locked:
            verb = "erase" if erase else "paint into"
            raise LockedLabelError(f"label '{self.labels[value].name}' is locked: unlock it to {verb} it")
        box = _bbox(mask)
        if box is None:
            return None
        cur = target[box]
        sel = mask[box].copy()
        locked = self.labels.locked_values()
        if locked:
            sel &= ~np.isin(cur, locked)
        if erase:
            sel &= (cur == value) if value else (cur != 0)
            new_value = 0
        else:
            pol = OverlapPolicy(policy) if policy is not None else self.labels[value].policy
            if pol is OverlapPolicy.MERGE:
                sel &= (cur == 0) | (cur == value)
            sel &= cur != value
            new_value = value
        changed = int(sel.sum())
        if changed == 0:
            return None
        old = cur.copy()
        new = old.copy()
        new[sel] = new_value
        target[box] = new
        return Edit(view=view, box=box, shape=old.shape, old=_pack(old), new=_pack(new),
                    description=description, changed=changed, meta=dict(meta or {}))

    def replace_all(self, array: np.ndarray, description: str = "replace labels") -> Edit | None:
        """Replace the whole label array (an import), as one undoable edit."""
        array = np.asarray(array, dtype=np.uint16)
        if array.shape != self.array.shape:
            raise ValueError(f"label array shape {array.shape} does not match the grid {self.array.shape}")
        box = _bbox(array != self.array)
        if box is None:
            return None
        old = self.array[box].copy()
        new = array[box].copy()
        self.array[box] = new
        return Edit(view=_whole, box=box, shape=old.shape, old=_pack(old), new=_pack(new),
                    description=description, changed=int((old != new).sum()))

    # ----- reverting ----------------------------------------------------------------------------
    def revert(self, edit: Edit) -> None:
        """Put the voxels of ``edit`` back as they were before it (undo)."""
        edit.view(self.array)[edit.box] = edit.old_block()

    def reapply(self, edit: Edit) -> None:
        """Write the voxels of ``edit`` again (redo)."""
        edit.view(self.array)[edit.box] = edit.new_block()

    # ----- statistics --------------------------------------------------------------------------
    def counts(self) -> dict[int, int]:
        """Voxel count per label value present (background excluded)."""
        bc = np.bincount(self.array.reshape(-1))
        return {int(v): int(n) for v, n in enumerate(bc) if v and n}

    def volumes_ml(self, spacing) -> dict[int, float] | None:
        """Millilitres per label value present. ``spacing`` is a `Volume` (its own
        ``voxel_volume_ml``) or an (i, j, k) spacing in millimetres. None when there are no
        millimetres (a `Volume` whose spacing is not physical, e.g. a PNG)."""
        if isinstance(spacing, Volume):
            voxel_ml = spacing.voxel_volume_ml
        else:
            voxel_ml = float(np.prod(spacing)) / 1000.0
        if voxel_ml is None:
            return None
        return {v: n * voxel_ml for v, n in self.counts().items()}
