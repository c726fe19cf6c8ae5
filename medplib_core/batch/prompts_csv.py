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

The file must be UTF-8. Every problem names the file and the line: a missing column value, a
number that is not one (NaN and infinities included), an empty box, an unknown type, space or
polarity; a prompt outside its image is refused when the case runs (its size is known then).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedplibError
from ..volume import Volume
from .spec_source import SpecError, read_text


class PromptCsvError(MedplibError):
    pass


NEGATIVE = ("0", "-1", "neg", "negative")
POSITIVE = ("", "1", "+1", "pos", "positive")
COORDS = {("box", "pixel"): ("x0", "y0", "x1", "y1"), ("point", "pixel"): ("x0", "y0"),
          ("box", "world"): ("x0", "y0", "z0", "x1", "y1", "z1"),
          ("point", "world"): ("x0", "y0", "z0")}


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
    source: str = ""  # the CSV file, for messages

    def _where(self) -> str:
        return f"{self.source}: line {self.line}" if self.source else f"line {self.line}"

    def on_volume(self, vol: Volume) -> tuple[int, list[float]]:
        """The slice index k and the pixel coordinates ``[x0, y0(, x1, y1)]`` on that slice;
        PromptCsvError when the prompt lies outside the scan."""
        nk, nj, ni = vol.shape
        if self.space == "pixel":
            k = self.slice if self.slice is not None else nk // 2
            if not 0 <= k < nk:
                raise PromptCsvError(f"{self._where()}: slice {k} is outside 0..{nk - 1}")
            xy = list(self.coords)
        else:
            pts = np.asarray(self.coords, dtype=float).reshape(-1, 3)
            ijk = vol.world_to_index(pts)
            k = int(round(float(ijk[:, 2].mean())))
            if not 0 <= k < nk:
                raise PromptCsvError(f"{self._where()}: the world point lies outside the scan "
                                     f"(slice {k} of 0..{nk - 1})")
            if len(pts) == 2:
                x0, x1 = sorted(ijk[:, 0])
                y0, y1 = sorted(ijk[:, 1])
                xy = [x0, y0, x1, y1]
            else:
                xy = [float(ijk[0, 0]), float(ijk[0, 1])]
        xs, ys = xy[0::2], xy[1::2]
        if any(not 0 <= x <= ni for x in xs) or any(not 0 <= y <= nj for y in ys):
            shown = ", ".join(f"{v:g}" for v in xy)
            raise PromptCsvError(f"{self._where()}: the {self.type} ({shown}) lies outside the "
                                 f"{ni}×{nj} image (x 0..{ni}, y 0..{nj})")
        return k, xy


def _num(row: dict[str, str], key: str, where: str) -> float | None:
    v = (row.get(key) or "").strip()
    if not v:
        return None
    try:
        x = float(v)
    except ValueError:
        raise PromptCsvError(f"{where}: {key} {v!r} is not a number") from None
    if not math.isfinite(x):
        raise PromptCsvError(f"{where}: {key} {v!r} is not a finite number")
    return x


def read_prompts(path: str | Path) -> list[PromptRow]:
    path = Path(path)
    try:
        text = read_text(path, "prompts CSV")
    except SpecError as exc:
        raise PromptCsvError(str(exc)) from None
    rows: list[PromptRow] = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    need = {"case", "label", "x0", "y0"}
    try:
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise PromptCsvError(f"{path}: line 1: the header must have at least "
                                 f"{', '.join(sorted(need))}")
        for row in reader:
            rows.append(_row(row, reader.line_num, path))
    except csv.Error as exc:
        raise PromptCsvError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _row(row: dict, n: int, path: Path) -> PromptRow:
    where = f"{path}: line {n}"
    kind = (row.get("type") or "box").strip().lower()
    space = (row.get("space") or "pixel").strip().lower()
    if kind not in ("box", "point") or space not in ("pixel", "world"):
        raise PromptCsvError(f"{where}: type must be box|point and space pixel|world "
                             f"(got {kind!r}, {space!r})")
    case, label = (row.get("case") or "").strip(), (row.get("label") or "").strip()
    if not case or not label:
        raise PromptCsvError(f"{where}: every row needs a case and a label")
    keys = COORDS[(kind, space)]
    vals = [_num(row, k, where) for k in keys]
    if any(v is None for v in vals):
        raise PromptCsvError(f"{where}: a {space} {kind} needs {', '.join(keys)}")
    if kind == "box" and space == "pixel" and (vals[2] <= vals[0] or vals[3] <= vals[1]):
        raise PromptCsvError(f"{where}: an empty box (x1 must exceed x0 and y1 exceed y0)")
    sl = _num(row, "slice", where)
    if sl is not None and (sl < 0 or not float(sl).is_integer()):
        raise PromptCsvError(f"{where}: slice {sl:g} is not a slice index (0, 1, 2, ...)")
    polarity = (row.get("polarity") or "").strip().lower()
    if polarity not in NEGATIVE + POSITIVE:
        raise PromptCsvError(f"{where}: polarity {polarity!r} must be 1 (positive) or 0 (negative)")
    return PromptRow(case=case, label=label, type=kind, space=space,
                     slice=int(sl) if sl is not None else None, coords=tuple(vals),
                     polarity=0 if polarity in NEGATIVE else 1, line=n, source=str(path))
