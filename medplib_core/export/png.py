"""PNG label masks for 2D sources: an indexed PNG (pixel value = label value) and its sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..annotation.labels import LabelSet
from ..errors import ExportError
from ..volume import Volume
from .atomic import atomic_path
from .sidecar import build_sidecar, write_sidecar


def write_png_labels(path: str | Path, labels: np.ndarray, volume: Volume, label_set: LabelSet,
                     per_label: bool = False, extra: dict[str, Any] | None = None) -> list[Path]:
    """Write an indexed PNG of a 2D label map; with ``per_label`` also one 0/255 PNG per label.

    Values above 255 do not fit an 8-bit palette image; those maps are written as 16-bit grey.
    """
    path = Path(path)
    if not volume.is_2d:
        raise ExportError(f"{path}: PNG export is for 2D images; this scan has {volume.shape[0]} slices")
    plane = np.asarray(labels).reshape(volume.shape)[0]
    written = []
    if plane.max(initial=0) < 256:
        img = Image.fromarray(plane.astype(np.uint8), mode="P")
        palette = [0, 0, 0] * 256
        for lab in label_set:
            if lab.value < 256:
                palette[3 * lab.value: 3 * lab.value + 3] = list(lab.color)
        img.putpalette(palette)
    else:
        img = Image.fromarray(plane.astype(np.uint16))
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
    written.append(path)
    if per_label:
        for lab in label_set:
            out = path.with_name(f"{path.stem}_{lab.value:03d}_{_safe(lab.name)}.png")
            with atomic_path(out, suffix=".png") as tmp:
                Image.fromarray(((plane == lab.value) * 255).astype(np.uint8)).save(tmp, format="PNG")
            written.append(out)
    present = {int(v): int(n) for v, n in enumerate(np.bincount(plane.reshape(-1))) if v and n}
    written.append(write_sidecar(path, build_sidecar(label_set, volume, present, extra)))
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "label"
