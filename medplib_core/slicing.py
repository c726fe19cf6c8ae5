"""Display slices of a `Volume` in axial, coronal and sagittal orientation.

Nothing here copies or resamples voxels: `SliceGeometry.take` returns a NumPy *view* of the
volume's array (basic indexing, optional transpose and reversed strides), so writing into that
view writes the volume (the label editor relies on this).

Orientation is chosen per world axis: the array axis whose direction is closest to world
S-I is sliced for "axial", to A-P for "coronal", to L-R for "sagittal" (the three array axes are
assigned to the three world axes jointly, so an oblique volume still gets three distinct views).

Screen conventions (radiological):

* axial: screen x toward patient Left (patient Right on screen-left), top = Anterior;
* coronal: screen x toward patient Left, top = Superior;
* sagittal: screen x toward Posterior (Anterior on screen-left), top = Superior.

The slice ``index`` is always the plain array index along the sliced axis (no reversal), so
``index`` can be compared with ``k``/``j``/``i`` directly. A 2D volume (one slice) only has
"axial", and shows as stored (rows = j, columns = i, no flips).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from .volume import Volume

ORIENTATIONS = ("axial", "coronal", "sagittal")

# world axis (LPS: 0 = x L, 1 = y P, 2 = z S) that the sliced array axis is closest to
_SLICED_WORLD = {"axial": 2, "coronal": 1, "sagittal": 0}
# (world axis of screen rows, sign of world direction as rows increase,
#  world axis of screen columns, sign as columns increase)
_SCREEN = {
    "axial": (1, +1, 0, +1),  # rows toward P (top = A), columns toward L
    "coronal": (2, -1, 0, +1),  # rows toward I (top = S), columns toward L
    "sagittal": (2, -1, 1, +1),  # rows toward I (top = S), columns toward P
}
_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # (positive, negative) per LPS axis


def _array_axis_of_ijk(n: int) -> int:
    """ijk index (0 = i) to array axis (array is [k, j, i])."""
    return 2 - n


def world_axis_assignment(direction: np.ndarray) -> tuple[int, int, int]:
    """For each world axis x, y, z (LPS) the ijk index (0 = i) best aligned with it.

    The assignment is the permutation that maximises the summed |cosines|, so each array
    axis serves exactly one world axis even for strongly oblique direction matrices.
    """
    d = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    best, best_score = (0, 1, 2), -1.0
    for perm in permutations(range(3)):  # perm[world] = ijk index
        score = sum(d[w, perm[w]] for w in range(3))
        if score > best_score + 1e-12:
            best, best_score = perm, score
    return best  # type: ignore[return-value]


def available_orientations(vol: Volume) -> tuple[str, ...]:
    """The orientations a volume can show: all three, or only "axial" for a 2D image."""
    return ("axial",) if vol.is_2d else ORIENTATIONS


def n_slices(vol: Volume, orientation: str) -> int:
    """Number of slices in ``orientation`` (0 when that orientation does not exist, 2D)."""
    _check_orientation(orientation)
    if vol.is_2d:
        return 1 if orientation == "axial" else 0
    perm = world_axis_assignment(vol.direction)
    ijk = perm[_SLICED_WORLD[orientation]]
    return int(vol.array.shape[_array_axis_of_ijk(ijk)])


def _check_orientation(orientation: str) -> None:
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")


def _letters_for(vec: np.ndarray) -> str:
    """Letter(s) naming where a world direction points, dominant first (oblique: two)."""
    order = np.argsort(-np.abs(vec))
    out = ""
    for n, w in enumerate(order):
        c = vec[w]
        if n == 0 or abs(c) >= 0.3:
            out += _LETTERS[w][0 if c > 0 else 1]
    return out[:2]


def _opposite(letters: str) -> str:
    swap = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
    return "".join(swap[c] for c in letters)


@dataclass(frozen=True, eq=False)
class SliceGeometry:
    """One display slice: which voxels, in which screen order, at which world place.

    ``axis`` is the array axis sliced (0 = k, 1 = j, 2 = i); ``row_axis`` / ``col_axis`` are
    the array axes that run down / across the screen, reversed when ``row_flip`` /
    ``col_flip``. ``shape`` is the displayed (rows, columns).
    """

    orientation: str
    index: int
    axis: int
    row_axis: int
    col_axis: int
    row_flip: bool
    col_flip: bool
    shape: tuple[int, int]
    pixel_spacing: tuple[float, float]  # (row_mm, col_mm)
    edge_letters: tuple[str, str, str, str]  # (top, bottom, left, right)
    affine_lps: np.ndarray  # the volume's (i, j, k, 1) -> LPS matrix

    # ----- pixels ------------------------------------------------------------------------
    def take(self, array: np.ndarray) -> np.ndarray:
        """The slice of ``array`` ([k, j, i] or [k, j, i, c]) in display order, as a VIEW.

        Writing into the returned array writes the source array (no copy is made), which is
        how a 2D mask is painted into a 3D label map.
        """
        idx: list = [slice(None)] * 3
        idx[self.axis] = self.index
        view = array[tuple(idx)]
        rest = [a for a in range(3) if a != self.axis]  # remaining axes, ascending
        if rest[0] != self.row_axis:
            view = np.swapaxes(view, 0, 1)
        if self.row_flip:
            view = view[::-1]
        if self.col_flip:
            view = view[:, ::-1]
        return view

    @property
    def aspect(self) -> float:
        """Height/width of one displayed pixel (row_mm / col_mm), for the display transform."""
        return self.pixel_spacing[0] / self.pixel_spacing[1]

    # ----- coordinates ---------------------------------------------------------------------
    def _array_coords(self, row: float, col: float) -> np.ndarray:
        a = np.zeros(3, dtype=float)
        a[self.axis] = self.index
        a[self.row_axis] = (self.shape[0] - 1 - row) if self.row_flip else row
        a[self.col_axis] = (self.shape[1] - 1 - col) if self.col_flip else col
        return a

    def to_voxel(self, row: float, col: float) -> tuple[int, int, int]:
        """Screen pixel (row, col) to the voxel index ``(i, j, k)`` (rounded to ints)."""
        a = self._array_coords(int(round(row)), int(round(col)))
        return int(a[2]), int(a[1]), int(a[0])

    def to_continuous_index(self, row: float, col: float) -> np.ndarray:
        """Screen position (row, col), possibly fractional, to a continuous ``(i, j, k)``."""
        a = self._array_coords(float(row), float(col))
        return a[::-1].copy()

    def to_world(self, row: float, col: float) -> np.ndarray:
        """Screen position (row, col) to LPS millimetres (voxel centres at integer rows/cols)."""
        ijk = self.to_continuous_index(row, col)
        return self.affine_lps[:3, :3] @ ijk + self.affine_lps[:3, 3]

    def from_voxel(self, i: float, j: float, k: float) -> tuple[float, float]:
        """Voxel index ``(i, j, k)`` to screen (row, col) in this view (ignores the slice)."""
        a = (k, j, i)
        r, c = float(a[self.row_axis]), float(a[self.col_axis])
        if self.row_flip:
            r = self.shape[0] - 1 - r
        if self.col_flip:
            c = self.shape[1] - 1 - c
        return r, c

    def slice_index_of(self, i: float, j: float, k: float) -> int:
        """The slice index (in this orientation) that contains voxel ``(i, j, k)``."""
        return int(round((k, j, i)[self.axis]))


def slice_geometry(vol: Volume, orientation: str, index: int) -> SliceGeometry:
    """Geometry of slice ``index`` in ``orientation``; raises IndexError/ValueError when invalid."""
    _check_orientation(orientation)
    n = n_slices(vol, orientation)
    if n == 0:
        raise ValueError(f"a 2D image has no {orientation} view")
    index = int(index)
    if not 0 <= index < n:
        raise IndexError(f"{orientation} slice {index} is outside 0..{n - 1}")
    direction = np.asarray(vol.direction, dtype=float)
    sp = vol.spacing
    arr_shape = vol.array.shape[:3]

    if vol.is_2d:
        axis, row_axis, col_axis = 0, 1, 2
        row_flip = col_flip = False
    else:
        perm = world_axis_assignment(direction)
        row_w, row_sign, col_w, col_sign = _SCREEN[orientation]
        axis = _array_axis_of_ijk(perm[_SLICED_WORLD[orientation]])
        row_axis = _array_axis_of_ijk(perm[row_w])
        col_axis = _array_axis_of_ijk(perm[col_w])
        row_flip = direction[row_w, perm[row_w]] * row_sign < 0
        col_flip = direction[col_w, perm[col_w]] * col_sign < 0

    def world_dir(array_axis: int, flip: bool) -> np.ndarray:
        v = direction[:, 2 - array_axis]
        return -v if flip else v

    down = _letters_for(world_dir(row_axis, row_flip))
    right = _letters_for(world_dir(col_axis, col_flip))
    if vol.source is not None and vol.source.kind == "image":
        letters = ("", "", "", "")  # a photograph or screenshot has no patient orientation
    else:
        letters = (_opposite(down), down, _opposite(right), right)
    return SliceGeometry(
        orientation=orientation,
        index=index,
        axis=axis,
        row_axis=row_axis,
        col_axis=col_axis,
        row_flip=bool(row_flip),
        col_flip=bool(col_flip),
        shape=(int(arr_shape[row_axis]), int(arr_shape[col_axis])),
        pixel_spacing=(float(sp[2 - row_axis]), float(sp[2 - col_axis])),
        edge_letters=letters,
        affine_lps=vol.affine_lps,
    )
