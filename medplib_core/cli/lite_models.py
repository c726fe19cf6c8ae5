"""`medplib-studio lite-models build DIR | show DIR`: LiteMedSAM as pre-built OpenVINO model files.

``build`` (full install: PyTorch and the weights) exports, checks against eager PyTorch and
writes the folder the light install runs from (``$MEDPLIB_LITE_MODELS`` or the bundle's own);
``show`` prints a folder's manifest (weights checksum, the checks and their numbers).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lite-models", help="LiteMedSAM model files for the light install: build, show")
    msub = p.add_subparsers(dest="lite_command", metavar="ACTION", required=True)
    b = msub.add_parser("build", help="export the packaged weights to OpenVINO files, checked against PyTorch")
    b.add_argument("folder")
    b.set_defaults(func=run_build)
    s = msub.add_parser("show", help="print a model folder's manifest")
    s.add_argument("folder")
    s.set_defaults(func=run_show)


def run_build(args: argparse.Namespace) -> int:
    from medplib_core.engines.lite_files_build import build

    manifest = build(args.folder, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"folder": args.folder, "checks": manifest["checks"]}, indent=1))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from medplib_core.engines.lite_files import read_manifest

    print(json.dumps(read_manifest(args.folder), indent=1))
    return 0
