"""Box and point prompts for batch runs, read from a CSV.

Columns (a header row is required; unknown columns are ignored)::

    case,label,type,space,slice,x0,y0,z0,x1,y1,z1,polarity

* ``type``: ``box`` (two corners) or ``point`` (x0, y0[, z0]); ``polarity`` 1 (default) or 0
  for a negative point.
* ``space``: ``pixel`` (default) — x is the column and y the row of the scan's own image plane,
  and ``slice`` the index k along the stored slice axis (0 for 2D images; middle slice if
  empty); or ``world`` — DICOM LPS millimetres (x0,y0,z0 and x1,y1,z1), the slice is the one
  holding the prompt's centre.
* Rows of one case with the same ``label`` and ``slice`` form one prompt (a box plus points).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedplibError
from ..volume import Volume


class PromptCsvError(MedplibError):
    pass


@dataclass
class PromptRow:
    case: str
    label: str
    type: str  # "box" or "point"
    space: str  # "pixel" or "world"
    slice: int | None
    coords: tuple[float, ...]  # pixel: x0,y0[,x1,y1]; world: x0,y0,z0[,x1,y1,z1]
    polarity: int = 1
    line: int = 0

    def on_volume(self, vol: Volume) -> tuple[int, list[float]]:
        """The slice index k and the pixel coordinates ``[x0, y0(, x1, y1)]`` on that slice."""
        if self.space == "pixel":
            k = self.slice if self.slice is not None else vol.shape[0] // 2
            if not 0 <= k < vol.shape[0]:
                raise PromptCsvError(f"line {self.line}: slice {k} is outside 0..{vol.shape[0] - 1}")
            return k, list(self.coords)
        pts = np.asarray(self.coords, dtype=float).reshape(-1, 3)
        ijk = vol.world_to_index(pts)
        k = int(round(float(ijk[:, 2].mean())))
        if not 0 <= k < vol.shape[0]:
            raise PromptCsvError(f"line {self.line}: the world point lies outside the scan (slice {k})")
        if len(pts) == 2:
            x0, x1 = sorted(ijk[:, 0])
            y0, y1 = sorted(ijk[:, 1])
            return k, [x0, y0, x1, y1]
        return k, [float(ijk[0, 0]), float(ijk[0, 1])]


def _num(row: dict[str, str], key: str) -> float | None:
    v = (row.get(key) or "").strip()
    return float(v) if v else None


def read_prompts(path: str | Path) -> list[PromptRow]:
    path = Path(path)
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise PromptCsvError(f"{path}: cannot read the prompts ({exc.strerror})") from exc
    rows: list[PromptRow] = []
    with fh:
        reader = csv.DictReader(fh)
        need = {"case", "label", "x0", "y0"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise PromptCsvError(f"{path}: the header must have at least {', '.join(sorted(need))}")
        for n, row in enumerate(reader, start=2):
            kind = (row.get("type") or "box").strip().lower()
            space = (row.get("space") or "pixel").strip().lower()
            if kind not in ("box", "point") or space not in ("pixel", "world"):
                raise PromptCsvError(f"{path}: line {n}: type must be box|point and space pixel|world")
            keys = {("box", "pixel"): ("x0", "y0", "x1", "y1"), ("point", "pixel"): ("x0", "y0"),
                    ("box", "world"): ("x0", "y0", "z0", "x1", "y1", "z1"),
                    ("point", "world"): ("x0", "y0", "z0")}[(kind, space)]
            vals = [_num(row, k) for k in keys]
            if any(v is None for v in vals):
                raise PromptCsvError(f"{path}: line {n}: a {space} {kind} needs {', '.join(keys)}")
            sl = _num(row, "slice")
            negative = (row.get("polarity") or "1").strip().lower() in ("0", "-1", "neg", "negative")
            rows.append(PromptRow(case=row["case"].strip(), label=row["label"].strip(), type=kind,
                                  space=space, slice=int(sl) if sl is not None else None,
                                  coords=tuple(vals), polarity=0 if negative else 1, line=n))
    return rows
