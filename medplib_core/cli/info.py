"""`medplib-studio info PATH [--json]`: what a scan loads as (geometry, modality, series)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show what a scan loads as: shape, spacing, origin, direction, series")
    p.add_argument("path", help="a DICOM file or folder, a NIfTI file, a 2D image or a DICOMweb series URL")
    p.add_argument("--series", help="SeriesInstanceUID or index, for folders with several series")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _series_list(path: Path) -> list[dict[str, Any]]:
    if not path.is_dir():
        return []
    from medplib_core.io import list_series

    out = []
    for s in list_series(path):
        d = asdict(s) if is_dataclass(s) else dict(vars(s))
        d.pop("files", None)  # long; the count is enough here
        out.append(d)
    return out


def describe(path: str, series: str | None = None) -> dict[str, Any]:
    from medplib_core import load
    from medplib_core.pacs import is_url

    vol = load(path, series=series)  # a series URL stays a string (Path would mangle it)
    p = Path(path)
    info = {"path": str(path)}
    info.update(vol.geometry_dict())
    info["source"] = vol.source.to_dict() if vol.source else None
    found = [] if is_url(path) else _series_list(p)
    if found:
        info["series_found"] = found
    return info


def run(args: argparse.Namespace) -> int:
    info = describe(args.path, args.series)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    fmt = lambda v: "(" + ", ".join(f"{x:.6g}" for x in v) + ")"  # noqa: E731
    nk, nj, ni = info["shape_kji"]
    print(f"path:        {info['path']}")
    print(f"size (i,j,k): {ni} x {nj} x {nk}" + ("  colour" if info["colour"] else ""))
    print(f"spacing mm:  {fmt(info['spacing'])}")
    print(f"origin LPS:  {fmt(info['origin'])}")
    d = info["direction"]
    print("direction:   " + "  ".join(fmt([d[r][c] for r in range(3)]) for c in range(3)) + "  (i, j, k axes)")
    print(f"orientation: {info['orientation']}")
    print(f"modality:    {info['modality']}   units: {info['units'] or '-'}   dtype: {info['dtype']}")
    if info["window"]:
        print(f"window:      centre {info['window'][0]:.6g}, width {info['window'][1]:.6g}")
    src = info.get("source") or {}
    if src.get("series_instance_uid"):
        print(f"series:      {src['series_instance_uid']}  {src.get('series_description') or ''}")
    for note in src.get("notes") or []:
        print(f"note:        {note}")
    for i, s in enumerate(info.get("series_found", [])):
        desc = ", ".join(f"{k}={v}" for k, v in s.items() if v not in (None, "", []))
        print(f"  series [{i}]: {desc}")
    return 0
