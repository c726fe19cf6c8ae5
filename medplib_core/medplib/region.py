"""Pixel-level prompts: user regions -> 24x24 grids -> one region vector each (spec §8).

A region is given as a point, a box, a free-form polygon or a painted mask (x = column,
y = row, in the displayed slice's pixels). `Region.to_mask` builds the full-resolution binary
mask as the reference demo does (a point is a 41x41 square; boxes are built correctly, not
transposed as in the demo), `mask_to_grid` maps it onto the CLIP patch grid and
`region_vector` samples the region-adapter feature map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from medplib_core.errors import PromptError

from .preprocess import longest_side_hw

POINT_HALF_SIZE = 20  # a clicked point becomes a (2*20+1)^2 square (demo behaviour)


@dataclass
class Region:
    """One drawn region; ``kind`` is "point", "box", "polygon" or "mask"."""

    kind: str
    data: Any

    def to_mask(self, h: int, w: int) -> np.ndarray:
        """The region as a bool (h, w) mask in the slice grid."""
        m = np.zeros((h, w), dtype=np.uint8)
        if self.kind == "point":
            x, y = (int(round(float(v))) for v in self.data)
            r = POINT_HALF_SIZE
            m[max(0, y - r):max(0, y + r + 1), max(0, x - r):max(0, x + r + 1)] = 1
        elif self.kind == "box":
            x0, y0, x1, y1 = (float(v) for v in self.data)
            x0, x1 = sorted((x0, x1))
            y0, y1 = sorted((y0, y1))
            c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)) + 1)
            r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)) + 1)
            m[r0:r1, c0:c1] = 1  # rows from y, columns from x
        elif self.kind == "polygon":
            pts = np.round(np.asarray(self.data, dtype=np.float64)).astype(np.int32)
            if pts.ndim != 2 or pts.shape[0] < 3:
                raise PromptError("a free-form region needs at least 3 vertices")
            cv2.fillPoly(m, [pts.reshape(-1, 1, 2)], 1)
        elif self.kind == "mask":
            a = np.asarray(self.data).astype(bool)
            if a.shape != (h, w):
                raise PromptError(f"region mask has shape {a.shape}, the image is {(h, w)}")
            m = a.astype(np.uint8)
        else:
            raise PromptError(f"unknown region kind {self.kind!r}")
        if not m.any():
            raise PromptError(f"the {self.kind} region lies outside the {w}x{h} image")
        return m.astype(bool)

    def describe(self) -> dict[str, Any]:
        if self.kind == "mask":
            return {"kind": "mask", "pixels": int(np.count_nonzero(self.data))}
        data = np.asarray(self.data, dtype=float).tolist()
        return {"kind": self.kind, "data": data}


def as_region(obj: Any) -> Region:
    """Accept a `Region`, a bool mask, an (x, y) point, an (x0, y0, x1, y1) box or a polygon."""
    if isinstance(obj, Region):
        return obj
    if isinstance(obj, np.ndarray) and obj.ndim == 2 and obj.dtype == bool:
        return Region("mask", obj)
    if isinstance(obj, dict) and "kind" in obj:
        return Region(str(obj["kind"]), obj.get("data"))
    arr = np.asarray(obj, dtype=float)
    if arr.shape == (2,):
        return Region("point", tuple(arr))
    if arr.shape == (4,):
        return Region("box", tuple(arr))
    if arr.ndim == 2 and arr.shape[1] == 2:
        return Region("polygon", arr)
    raise PromptError(f"cannot interpret {type(obj).__name__} of shape {arr.shape} as a region")


def regions_from_prompt(prompt: Any) -> list[Region]:
    """The regions drawn in an engine `Prompt` (positive points merge into one region)."""
    out: list[Region] = []
    if prompt.region is not None:
        out.append(Region("mask", np.asarray(prompt.region, dtype=bool)))
    if prompt.polygon is not None:
        out.append(Region("polygon", np.asarray(prompt.polygon, dtype=float)))
    if prompt.box is not None:
        out.append(Region("box", tuple(prompt.box)))
    pos = [p for p, lab in zip(prompt.points, prompt.point_labels or [1] * len(prompt.points))
           if int(lab) == 1]
    if pos:
        out.append(Region("points", pos))
    return out


def _points_mask(points: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    for p in points:
        try:
            m |= Region("point", p).to_mask(h, w)
        except PromptError:
            pass  # a point off the image adds nothing
    return m


def region_mask(region: Region, h: int, w: int) -> np.ndarray:
    """Bool mask of any region, including the "points" union used for engine prompts."""
    if region.kind == "points":
        m = _points_mask(region.data, h, w)
        if not m.any():
            raise PromptError("every point lies outside the image")
        return m
    return region.to_mask(h, w)


def mask_to_grid(mask: np.ndarray, size: int = 336, patch: int = 14) -> np.ndarray:
    """§8.2: longest-side resize to ``size`` (PIL bilinear on 0/1), centre-pad, nearest 1/patch.

    Returns a uint8 (size/patch, size/patch) grid of 0/1."""
    from PIL import Image

    m = np.asarray(mask).astype(np.uint8)
    h, w = m.shape
    nh, nw = longest_side_hw(h, w, size)
    if (nh, nw) != (h, w):
        m = np.asarray(Image.fromarray(m).resize((nw, nh), Image.BILINEAR))
    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top:top + nh, left:left + nw] = m
    grid = cv2.resize(canvas, None, fx=1.0 / patch, fy=1.0 / patch, interpolation=cv2.INTER_NEAREST)
    return (grid > 0).astype(np.uint8)


def largest_component(grid: np.ndarray) -> np.ndarray:
    """Keep only the largest 8-connected component (the evaluation-dataset variant, §8.2)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(grid.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(grid)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == best).astype(np.uint8)


def region_vector(
    features: torch.Tensor,
    grid: np.ndarray,
    max_points: int | None = 512,
    seed: int = 42,
) -> torch.Tensor:
    """§8.3: mean of bilinear samples of ``features`` [N*N, D] at the grid's cells.

    Cells (r, c) in row-major order are normalised to (r/N, c/N) and sampled with
    ``align_corners=True`` at x = 2c/N - 1, y = 2r/N - 1 (the reference's slightly shifted
    positions). More than ``max_points`` cells -> a seeded random subset (``None``: all)."""
    n = grid.shape[0]
    d = features.shape[-1]
    cells = np.argwhere(np.asarray(grid) > 0)  # row-major (r, c)
    if len(cells) == 0:
        return torch.zeros(d, dtype=features.dtype, device=features.device)
    coords = torch.from_numpy(cells.astype(np.float32)) / n
    if max_points is not None and len(cells) > max_points:
        gen = torch.Generator().manual_seed(seed)
        coords = coords[torch.randperm(len(cells), generator=gen)[:max_points]]
    fmap = features.float().reshape(n, n, d).permute(2, 0, 1)[None]  # [1, D, N, N]
    g = torch.stack([coords[:, 1], coords[:, 0]], dim=-1) * 2 - 1  # (x, y) in [-1, 1]
    g = g.to(fmap.device)[None, None]  # [1, 1, P, 2]
    sampled = F.grid_sample(fmap, g, mode="bilinear", align_corners=True)  # [1, D, 1, P]
    vec = sampled[0, :, 0].mean(dim=-1)
    return torch.nan_to_num(vec, nan=0.0).to(features.dtype)
