"""`medplib-studio convert-labels LABELS --reference SCAN --out OUT`: NIfTI <-> DICOM SEG <-> PNG,
and to an RT Structure Set.

The labels are placed on the reference scan's grid by world coordinates, then written in the
format that OUT's extension names (.nii.gz/.nii, .dcm for DICOM SEG, .png for 2D images);
`--format rtstruct` writes a .dcm as an RT Structure Set (contours) instead of a DICOM SEG.
"""

from __future__ import annotations

import argparse

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-labels",
                       help="convert a label map onto a scan's grid (NIfTI, DICOM SEG, PNG, RTSTRUCT)")
    p.add_argument("labels", help="the label file: .nii/.nii.gz, DICOM SEG (.dcm) or .png")
    p.add_argument("--reference", required=True, help="the scan the labels belong to (a path or a DICOMweb series URL)")
    p.add_argument("--series", help="series of the reference folder, if it holds several")
    p.add_argument("--out", required=True, help="output path (its extension picks the format), or a DICOMweb "
                   "service URL to store a DICOM SEG there")
    p.add_argument("--format", choices=("auto", "rtstruct"), default="auto",
                   help="auto: the extension decides (.dcm = DICOM SEG); rtstruct: an RT Structure Set "
                   "(.dcm, contours on a DICOM reference)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medplib_core import load
    from medplib_core.export import export_labels, import_labels

    from medplib_core.pacs import is_url

    volume = load(args.reference, series=args.series)
    imported = import_labels(args.labels, volume)
    extra = {"converted_from": str(args.labels)}
    if is_url(args.out):  # a DICOMweb service: store a DICOM SEG there (STOW-RS)
        from medplib_core.pacs.send import send_labels

        out = send_labels(args.out, imported.array, volume, imported.labels, extra=extra).url
    elif args.format == "rtstruct":
        from medplib_core.errors import ExportError
        from medplib_core.export import write_rtstruct

        if not str(args.out).lower().endswith(".dcm"):
            raise ExportError(f"{args.out}: an RT Structure Set is a DICOM file: name it .dcm")
        out = write_rtstruct(args.out, imported.array, volume, imported.labels, extra=extra)
    else:
        out = export_labels(args.out, imported.array, volume, imported.labels, extra=extra)
    present = [int(v) for v in np.unique(imported.array) if v]
    for note in imported.notes:
        print(f"note: {note}")
    verb = "stored" if is_url(args.out) else "wrote"
    print(f"{verb} {out} ({len(present)} labels: {', '.join(imported.labels[v].name for v in present if v in imported.labels)})")
    return 0
