"""A small batch to try the review queue on (tests, the screenshot script, demos).

Two synthetic 2D images (a bright disc on noise), a small CT volume built from pydicom's real
CT slice, and optionally a corrupt DICOM file; one LiteMedSAM box prompt per case.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

# pydicom's CT_small.dcm: the spinal canal (pixel x0, y0, x1, y1), as in the GUI tests
CT_BOX = (45, 40, 74, 64)
DISCS = ((70, 90, 25), (80, 110, 25))  # (centre row, centre column, radius) per synthetic image


def disc_image(path: Path, cy: int, cx: int, r: int, seed: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = rng.normal(60, 8, (160, 200)).clip(0, 255)
    yy, xx = np.mgrid[:160, :200]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def write_sample_spec(root: str | Path, output: str = "run", broken: bool = True, ct_slices: int = 4) -> Path:
    """Write the cases, ``prompts.csv`` and ``spec.json`` under ``root``; returns the spec path."""
    from studio_support import stacked_ct

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = []  # (id, path, box, slice)
    for n, (cy, cx, r) in enumerate(DISCS):
        p = disc_image(root / f"disc_{n}.png", cy, cx, r, seed=3 + n)
        cases.append((p.stem, p, (cx - r - 3, cy - r - 3, cx + r + 3, cy + r + 3), 0))
    ct = root / "ct.nii.gz"
    if not ct.exists():
        stacked_ct(ct, n=ct_slices)
    cases.append(("ct", ct, CT_BOX, ct_slices // 2))
    if broken:
        bad = root / "broken.dcm"
        bad.write_bytes(b"DICM" + os.urandom(300))
        cases.append(("broken", bad, (5, 5, 40, 40), 0))
    with open(root / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "slice", "x0", "y0", "x1", "y1"])
        for cid, _, box, k in cases:
            w.writerow([cid, "lesion", "box", k, *box])
    spec = {"output": output, "engine": {"name": "litemedsam"}, "prompts": "prompts.csv", "workers": 1,
            "cases": [{"id": cid, "path": str(p)} for cid, p, _, _ in cases]}
    path = root / f"spec_{output}.json"
    path.write_text(json.dumps(spec, indent=1))
    return path
