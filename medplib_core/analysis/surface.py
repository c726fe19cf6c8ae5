"""Label surfaces for a 3D view: marching cubes (scikit-image) in world coordinates.

Each label is meshed inside its own bounding box; vertices go from voxel index to LPS
millimetres through the volume's affine (spacing, direction, origin), normals through its
inverse transpose, and the triangle winding is kept outward also for left-handed grids. The
triangle count is bounded: a mesh over budget is decimated by quadric edge collapse in world
millimetres (fast-simplification, PyVista's decimation library), and its normals recomputed
from the faces; a label far over budget is first meshed with marching-cubes step 2 to bound
the time. Pure NumPy work: the GUI runs it in a worker thread and may pass ``cancel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from fast_simplification import simplify
from scipy import ndimage
from skimage.measure import marching_cubes

from ..annotation.labels import PALETTE, LabelSet
from ..errors import CancelledError, MedplibError
from ..volume import Volume


@dataclass
class Surface:
    label: int
    vertices: np.ndarray  # (n, 3) float32, LPS mm
    faces: np.ndarray  # (m, 3) int32, counter-clockwise seen from outside
    normals: np.ndarray  # (n, 3) float32, unit, pointing outward
    color: tuple[int, int, int]
    step: int  # marching-cubes step used (1 = full resolution, 2 for labels far over budget)

    @property
    def n_triangles(self) -> int:
        return int(len(self.faces))

    def enclosed_volume_mm3(self) -> float:
        """Volume inside the (closed) mesh, by the divergence theorem."""
        v = self.vertices.astype(np.float64)
        a, b, c = v[self.faces[:, 0]], v[self.faces[:, 1]], v[self.faces[:, 2]]
        return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _mesh(mask: np.ndarray, step: int, sigma: float):
    field = mask.astype(np.float32)
    if sigma > 0:
        smooth = ndimage.gaussian_filter(field, sigma)
        if smooth.max() > 0.5:  # a label thinner than the blur (one voxel, a thin line) keeps its voxels
            field = smooth
    return marching_cubes(field, level=0.5, step_size=step, allow_degenerate=False)


def label_surface(volume: Volume, labels: np.ndarray, value: int, max_triangles: int = 150_000,
                  smoothing: float = 0.0, color: tuple[int, int, int] | None = None,
                  box: tuple[slice, ...] | None = None) -> Surface | None:
    """The surface of label ``value`` (None when it has no voxel).

    ``smoothing`` is a Gaussian sigma in voxels applied to the mask before meshing (0 keeps
    the surface exactly halfway between labelled and unlabelled voxel centres). ``box``: the
    label's bounding box if the caller has it (`scipy.ndimage.find_objects`).
    """
    labels = np.asarray(labels)
    if labels.shape != volume.shape:
        raise MedplibError(f"label array {labels.shape} is not on the scan's grid {volume.shape}")
    if labels.dtype.kind not in "ui" or value <= 0:
        raise MedplibError(f"labels must be integers and the value positive, got {labels.dtype}, {value}")
    if box is None:
        boxes = ndimage.find_objects(labels, max_label=int(value))
        box = boxes[value - 1] if len(boxes) >= value else None
    if box is None:
        return None
    pad = 1 + int(np.ceil(3 * smoothing))
    lo = [max(s.start - pad, 0) for s in box]
    hi = [min(s.stop + pad, n) for s, n in zip(box, labels.shape)]
    sub = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == value
    sub = np.pad(sub, [(int(lo[a] == 0), int(hi[a] == labels.shape[a])) for a in range(3)])
    corner = np.array([lo[a] - int(lo[a] == 0) for a in range(3)], dtype=float)  # [k, j, i]
    verts, faces, normals, _ = _mesh(sub, 1, smoothing)
    step = 1
    if len(faces) > 16 * max_triangles:  # bound the decimation's time on huge labels
        step = 2
        verts, faces, normals, _ = _mesh(sub, step, smoothing)
    ijk = (verts + corner)[:, ::-1]  # marching cubes works in array order [k, j, i]
    linear = volume.affine_lps[:3, :3]
    world = ijk @ linear.T + volume.affine_lps[:3, 3]
    # skimage's normals point toward lower values (outward for a mask); map them like planes
    n_world = normals[:, ::-1] @ np.linalg.inv(linear)
    n_world /= np.maximum(np.linalg.norm(n_world, axis=1, keepdims=True), 1e-12)
    faces = faces.astype(np.int32)
    if _winding_is_inward(world, faces, n_world):
        faces = faces[:, ::-1].copy()
    if len(faces) > max_triangles:
        world, faces = simplify(world, faces, target_count=max_triangles)
        faces = faces.astype(np.int32)
        n_world = _vertex_normals(world, faces)
    return Surface(label=int(value), vertices=world.astype(np.float32), faces=faces,
                   normals=n_world.astype(np.float32),
                   color=color or PALETTE[(int(value) - 1) % len(PALETTE)], step=step)


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals of an outward-wound mesh."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    face_n = np.cross(b - a, c - a)
    out = np.zeros_like(verts, dtype=np.float64)
    for n in range(3):
        np.add.at(out, faces[:, n], face_n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _winding_is_inward(verts: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> bool:
    faces = faces[:: max(1, len(faces) // 20_000)]  # the winding is one choice for the whole mesh
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    face_n = np.cross(b - a, c - a)
    vert_n = normals[faces].sum(axis=1)
    return float(np.einsum("ij,ij->i", face_n, vert_n).sum()) < 0


def label_surfaces(volume: Volume, labels: np.ndarray, label_set: LabelSet | None = None,
                   max_triangles: int = 600_000, smoothing: float = 0.0,
                   cancel: Callable[[], bool] | None = None,
                   on_surface: Callable[[Surface, int, int], None] | None = None) -> list[Surface]:
    """Surfaces of every visible label present, sharing a total triangle budget by voxel count.

    ``on_surface(surface, done, total)`` is called as each label is ready, so a 3D pane can
    fill in label by label.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels.reshape(-1))
    present = [v for v in np.flatnonzero(counts) if v]
    boxes = ndimage.find_objects(labels) if present else []  # one pass for every label
    if label_set is not None:
        present = [v for v in present if v not in label_set or label_set[v].visible]
    total = float(sum(counts[v] for v in present)) or 1.0
    out = []
    for v in present:
        if cancel is not None and cancel():
            raise CancelledError("surface computation was cancelled")
        budget = max(2_000, int(max_triangles * counts[v] / total))
        lab = label_set.get(int(v)) if label_set is not None else None
        surf = label_surface(volume, labels, int(v), budget, smoothing, lab.color if lab else None,
                             box=boxes[v - 1])
        if surf is not None:
            out.append(surf)
            if on_surface is not None:
                on_surface(surf, len(out), len(present))
    return out
