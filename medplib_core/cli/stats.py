"""`medplib-studio stats LABELS --reference SCAN [--json]`: the label statistics table.

The labels are placed on the reference scan's grid by world coordinates (as every import is),
then measured: columns ``label, name, voxels, volume_ml, mean, sd, min, max``; the JSON has the
same keys per label plus the unit, bounding box, centre of mass and RECIST-style diameters.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="per-label voxels, volume (ml) and scan statistics inside each label")
    p.add_argument("labels", help="the label file: .nii/.nii.gz, DICOM SEG or RTSTRUCT (.dcm) or .png")
    p.add_argument("--reference", required=True, help="the scan the labels belong to")
    p.add_argument("--series", help="series of the reference folder, if it holds several")
    p.add_argument("--orientation", default="axial", choices=("axial", "coronal", "sagittal"),
                   help="plane of the long/short diameters (default axial, as RECIST)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _cell(value, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: list[dict], units: str) -> str:
    """A plain aligned text table of the `TABLE_COLUMNS` rows."""
    heads = ["label", "name", "voxels", "volume_ml", f"mean{f' ({units})' if units else ''}",
             "sd", "min", "max"]
    keys = ["label", "name", "voxels", "volume_ml", "mean", "sd", "min", "max"]
    digits = {"volume_ml": 3, "mean": 2, "sd": 2, "min": 1, "max": 1}
    body = [[_cell(r[k], digits.get(k, 0)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(b[n]) for b in body)) if body else len(h) for n, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) if n == 1 else h.rjust(w) for n, (h, w) in enumerate(zip(heads, widths)))]
    for b in body:
        lines.append("  ".join(c.ljust(w) if n == 1 else c.rjust(w) for n, (c, w) in enumerate(zip(b, widths))))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from medplib_core import load
    from medplib_core.analysis.physical import has_physical_spacing
    from medplib_core.analysis.stats import label_statistics
    from medplib_core.export import import_labels

    volume = load(args.reference, series=args.series)
    imported = import_labels(args.labels, volume)
    stats = label_statistics(volume, imported.array, imported.labels, orientation=args.orientation)
    if args.json:
        print(json.dumps({"reference": str(args.reference), "labels_file": str(args.labels),
                          "units": volume.units, "physical_spacing": has_physical_spacing(volume),
                          "notes": imported.notes, "labels": [s.to_dict() for s in stats]}, indent=1))
        return 0
    for note in imported.notes:
        print(f"note: {note}")
    if not has_physical_spacing(volume):
        print("note: the scan has no physical spacing; volume_ml is not given")
    print(format_table([s.row() for s in stats], volume.units))
    return 0
