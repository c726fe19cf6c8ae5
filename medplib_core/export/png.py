"""PNG label masks for 2D sources, written so that any viewer shows them, plus their sidecar.

* one label drawn: an 8-bit grey mask, 0 background and 255 the label (the sidecar's
  ``png.foreground_value`` says which label 255 stands for);
* several labels: an indexed (palette) PNG whose pixel value is the label value and whose
  palette holds the label colours;
* label values above 255: 16-bit grey, pixel value = label value.

`medplib_core.export.importers` reads all three back (and the 0/1 masks of earlier versions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..annotation.labels import LabelSet
from ..errors import ExportError
from ..volume import Volume
from .sidecar import build_sidecar, commit_labels


def png_image(plane: np.ndarray, label_set: LabelSet) -> tuple[Image.Image, dict[str, Any]]:
    """The PNG image of a 2D label plane and what the sidecar says about its encoding."""
    present = [int(v) for v in np.unique(plane) if v]
    if len(present) <= 1:
        img = Image.fromarray(((plane != 0) * 255).astype(np.uint8))
        return img, {"encoding": "binary", "foreground_value": present[0] if present else None}
    if max(present) < 256:
        img = Image.frombytes("P", (plane.shape[1], plane.shape[0]), plane.astype(np.uint8).tobytes())
        palette = [0, 0, 0] * 256
        for lab in label_set:
            if lab.value < 256:
                palette[3 * lab.value: 3 * lab.value + 3] = list(lab.color)
        img.putpalette(palette)
        return img, {"encoding": "palette"}
    return Image.fromarray(plane.astype(np.uint16)), {"encoding": "value16"}


def write_png_labels(path: str | Path, labels: np.ndarray, volume: Volume, label_set: LabelSet,
                     per_label: bool = False, extra: dict[str, Any] | None = None) -> list[Path]:
    """Write a 2D label map as ``path`` with its sidecar (one commit); with ``per_label`` also
    one 0/255 PNG per label. Returns every path written, the sidecar last."""
    path = Path(path)
    if not volume.is_2d:
        raise ExportError(f"{path}: PNG export is for 2D images; this scan has {volume.shape[0]} slices")
    plane = np.asarray(labels).reshape(volume.shape)[0]
    img, encoding = png_image(plane, label_set)
    more = []
    if per_label:
        for lab in label_set:
            out = path.with_name(f"{path.stem}_{lab.value:03d}_{_safe(lab.name)}.png")
            mask = Image.fromarray(((plane == lab.value) * 255).astype(np.uint8))
            more.append((out, lambda tmp, m=mask: m.save(tmp, format="PNG")))
    present = {int(v): int(n) for v, n in enumerate(np.bincount(plane.reshape(-1))) if v and n}
    sidecar = build_sidecar(label_set, volume, present, extra)
    sidecar["png"] = encoding
    return commit_labels(path, lambda tmp: img.save(tmp, format="PNG"), sidecar, "PNG labels",
                         more)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "label"
