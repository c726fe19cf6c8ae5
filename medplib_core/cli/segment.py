"""`medplib-studio segment SCAN --box X0 Y0 X1 Y1 [--slice K] [--points X Y L ...] [--propagate] --out MASK`.

Segments one object on the slice as displayed (the scan's default window, or ``--window C W``)
with the embedded LiteMedSAM engine, or with MedPLIB (``--engine medplib`` and its weights;
``--text "liver"`` grounds a target by name). Writes a PNG (0/255) for 2D images and a NIfTI label map
on the scan's grid for volumes (the slice only, or the whole object with ``--propagate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment one object from a box and/or clicks (LiteMedSAM)")
    p.add_argument("scan", help="a DICOM file or folder, a NIfTI file, a 2D image or a DICOMweb series URL")
    p.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                   help="box in pixel coordinates of the slice (x = column, y = row)")
    p.add_argument("--points", nargs="+", type=float, metavar="X Y L",
                   help="clicks as triples x y label (1 positive, 0 negative)")
    p.add_argument("--slice", type=int, default=None, help="slice index k (default: the middle one)")
    p.add_argument("--window", nargs=2, type=float, metavar=("CENTRE", "WIDTH"),
                   help="display window (default: the scan's own)")
    p.add_argument("--propagate", action="store_true", help="propagate through the volume in 3D")
    p.add_argument("--label", type=int, default=1, help="label value written for the object")
    p.add_argument("--out", required=True, help="output mask (.png for 2D, .nii/.nii.gz for volumes), or a "
                   "DICOMweb service URL to store a DICOM SEG there")
    p.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    p.add_argument("--engine", choices=("litemedsam", "medplib"), default="litemedsam",
                   help="segmentation engine (default: the embedded LiteMedSAM)")
    p.add_argument("--text", help="MedPLIB: the target to ground, e.g. 'liver'")
    for name in ("checkpoint", "clip", "sam"):
        p.add_argument(f"--{name}", help=f"MedPLIB {name} path (default: $MEDPLIB_{name.upper()} or the settings)")
    p.add_argument("--server", metavar="URL", help="use the engine of a `medplib-studio serve` at URL "
                   "(token: $MEDPLIB_SERVER_TOKEN) instead of loading it here")
    p.set_defaults(func=run)


def _points(values):
    if not values:
        return [], []
    if len(values) % 3:
        from medplib_core.errors import PromptError

        raise PromptError("--points takes triples: x y label")
    trip = np.asarray(values, float).reshape(-1, 3)
    return [(x, y) for x, y, _ in trip], [int(lab) for _, _, lab in trip]


def run(args: argparse.Namespace) -> int:
    from medplib_core import load
    from medplib_core.display import apply_window
    from medplib_core.engines.base import Prompt
    from medplib_core.engines.registry import create_engine
    from medplib_core.errors import PromptError
    from medplib_core.pacs import is_url

    vol = load(args.scan)
    pts, labs = _points(args.points)
    if args.text and args.engine != "medplib":
        raise PromptError("--text needs --engine medplib (LiteMedSAM takes boxes and clicks)")
    if args.box is None and not pts and not args.text:
        raise PromptError("give --box and/or --points (or --text with --engine medplib)")
    window = tuple(args.window) if args.window else vol.window
    k = vol.shape[0] // 2 if args.slice is None else args.slice
    if not 0 <= k < vol.shape[0]:
        raise PromptError(f"--slice {k} is outside the scan (0..{vol.shape[0] - 1})")
    image = apply_window(vol.array[k], *window)
    if args.server:
        from medplib_core.engines.remote import RemoteEngine

        engine = RemoteEngine(args.server, engine=args.engine)
    else:
        cfg = {"name": args.engine, "device": args.device}
        if args.engine == "medplib":
            cfg.update(checkpoint=args.checkpoint, clip=args.clip, sam=args.sam)
        engine = create_engine(cfg)
    res = engine.encode(image).predict(Prompt(points=pts, point_labels=labs, text=args.text,
                                              box=tuple(args.box) if args.box else None))
    if res.reason:
        print(f"warning: {res.reason}", file=sys.stderr)
    report = {"out": str(args.out), "pixels": int(res.mask.sum()), "score": round(res.score, 3),
              "slice": k, "engine": engine.info.name, "device": engine.info.device,
              "path": res.provenance.get("path")}
    if is_url(args.out):  # a DICOMweb service: store a DICOM SEG on the scan's series (STOW-RS)
        from medplib_core.annotation import LabelSet
        from medplib_core.pacs.send import send_labels

        label_set = LabelSet()
        label_set.add(args.text or "segment", value=args.label)
        sent = send_labels(args.out, _label_volume(args, vol, engine, res, k, window, report), vol, label_set)
        print(json.dumps({**report, "sent": sent.to_dict()}))
        return 0
    out = Path(args.out)
    as_nifti = out.name.endswith((".nii", ".nii.gz")) or (not vol.is_2d and not out.name.endswith(".png"))
    if not as_nifti and args.propagate:
        raise PromptError("a propagated 3D mask is written as NIfTI: name --out *.nii.gz")
    if not as_nifti:
        _write_png(out, res.mask)
    else:
        _write_nifti(out, _label_volume(args, vol, engine, res, k, window, report), vol)
    print(json.dumps(report))
    return 0


def _label_volume(args, vol, engine, res, k: int, window, report: dict) -> np.ndarray:
    """The result on the scan's grid: the slice's mask, or the propagated 3D object (then
    ``report["propagation"]`` says which slices it reached and why each direction stopped)."""
    from medplib_core.errors import PromptError

    if vol.is_2d and args.propagate:
        raise PromptError("--propagate needs a volume")
    labels = np.zeros(vol.shape, np.uint16 if args.label > 255 else np.uint8)
    if args.propagate and res.mask.any():
        from medplib_core.engines.propagation import PropagationLog, propagate_volume, propagation_summary

        log = PropagationLog()
        mask3d = propagate_volume(engine, vol, k, res.mask, window=window, progress=_progress, log=log)
        print(file=sys.stderr)
        labels[mask3d] = args.label
        report["propagation"] = propagation_summary(log)
    else:
        labels[k][res.mask] = args.label
    return labels


def _progress(done: int, total: int) -> None:
    print(f"\rpropagating {done}/{total}", end="", file=sys.stderr, flush=True)


def _write_png(path: Path, mask: np.ndarray) -> None:
    import cv2

    from medplib_core.export.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255):
            raise OSError(f"could not write {path}")


def _write_nifti(path: Path, labels: np.ndarray, vol) -> None:
    import nibabel as nib

    from medplib_core.export.atomic import atomic_path
    from medplib_core.export.nifti import to_nifti_image

    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(to_nifti_image(labels, vol), str(tmp))
