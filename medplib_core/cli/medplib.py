"""`medplib-studio medplib ...`: MedPLIB model tools.

* ``check-layout``: build the full-size model on the meta device (no weights) and check the
  parameter total (11,687,144,240) and the key set against the spec.
* ``make-tiny OUT``: write tiny checkpoints with the real layout (for tests and demos).
* ``ask --checkpoint ... [--clip ...] [--sam ...] IMAGE "question"``: stream an answer; save
  the mask as a PNG when the answer is grounded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("medplib", help="MedPLIB model tools: check-layout, make-tiny, ask")
    msub = p.add_subparsers(dest="medplib_command", metavar="ACTION")
    c = msub.add_parser("check-layout", help="full-size layout on the meta device: parameter "
                        "total and tensor count")
    c.set_defaults(func=run_check_layout)
    t = msub.add_parser("make-tiny", help="write tiny MedPLIB/CLIP/SAM-Med2D checkpoints")
    t.add_argument("out", help="output folder")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--demo", action="store_true", help="every greedy answer is 'The liver "
                   "<SEG>.' (streamed text and a grounded mask, for GUI demos)")
    t.set_defaults(func=run_make_tiny)
    a = msub.add_parser("ask", help="ask MedPLIB a question about a 2D image")
    a.add_argument("image", help="a 2D image file (PNG, JPEG, ...)")
    a.add_argument("question")
    a.add_argument("--checkpoint", help="MedPLIB-7b-2e folder (or $MEDPLIB_CHECKPOINT)")
    a.add_argument("--clip", help="clip-vit-large-patch14-336 folder (or $MEDPLIB_CLIP)")
    a.add_argument("--sam", help="sam-med2d_b.pth (or $MEDPLIB_SAM)")
    a.add_argument("--device", help="auto, cpu or cuda (or $MEDPLIB_DEVICE)")
    a.add_argument("--point", action="append", default=[], metavar="X,Y",
                   help="a region: a clicked point (repeatable; regions fill <region> marks)")
    a.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1", help="a region box")
    a.add_argument("--region-mask", action="append", default=[], metavar="PNG",
                   help="a region given as a mask image (non-zero pixels)")
    a.add_argument("--mask-out", help="where to save the mask PNG (default: IMAGE_medplib_mask.png)")
    a.add_argument("--max-new-tokens", type=int, default=512)
    a.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    a.add_argument("--top-p", type=float, default=None)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--crop", choices=("reference", "correct"), default="reference",
                   help="mask post-processing (spec 11.3)")
    a.add_argument("--threshold", type=float, default=0.1)
    a.add_argument("--forced-answer", help=argparse.SUPPRESS)
    a.add_argument("--report", action="store_true", help="print the load report")
    a.add_argument("--json", action="store_true", help="print the turn's provenance as JSON")
    a.add_argument("--server", metavar="URL", help="ask the MedPLIB of a `medplib-studio serve` at URL "
                   "(token: $MEDPLIB_SERVER_TOKEN); the weight options are then the server's")
    a.set_defaults(func=run_ask)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_check_layout(args: argparse.Namespace) -> int:
    from medplib_core.medplib.layout import RELEASED_PARAMETERS, check_layout

    r = check_layout()
    print(f"parameters: {r.parameters:,}")
    print(f"tensors:    {r.tensors} (expected {r.expected_tensors}; "
          "+32 rotary_emb.inv_freq buffers if the shards carry them)")
    for g, n in r.per_group.items():
        print(f"  {g:<20} {n:>15,}")
    for title, items in (("missing", r.missing), ("extra", r.extra), ("shape", r.shape_mismatch)):
        if items:
            print(f"{title}: {len(items)}, e.g. {items[:5]}")
    ok = r.ok and r.parameters == RELEASED_PARAMETERS
    print("layout OK" if ok else f"layout MISMATCH (expected {RELEASED_PARAMETERS:,} parameters)")
    return 0 if ok else 1


def run_make_tiny(args: argparse.Namespace) -> int:
    from medplib_core.medplib.tiny import make_tiny

    paths = make_tiny(args.out, seed=args.seed, demo=args.demo)
    print(f"checkpoint: {paths.checkpoint}\nclip:       {paths.clip}\nsam:        {paths.sam}")
    return 0


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    from medplib_core.errors import PromptError

    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise PromptError(f"--{what} wants {n} comma-separated numbers, got {text!r}")
    return vals


def _read_image(path: str):
    import numpy as np
    from PIL import Image

    from medplib_core.errors import LoadError

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise LoadError(path, f"cannot read the image: {exc}") from exc


def _regions(args: argparse.Namespace, region_type=None) -> list:
    """The --point/--box/--region-mask regions, as `region_type(kind, data)` or plain values."""
    import numpy as np
    from PIL import Image

    make = region_type or (lambda kind, data: data)
    regions = [make("point", _floats(p, 2, "point")) for p in args.point]
    regions += [make("box", _floats(b, 4, "box")) for b in args.box]
    for m in args.region_mask:
        regions.append(make("mask", np.array(Image.open(m).convert("L")) > 0))
    return regions


def _stream(delta: str) -> None:
    sys.stdout.write(delta)
    sys.stdout.flush()


def run_ask(args: argparse.Namespace) -> int:
    if getattr(args, "server", None):
        return _ask_remote(args)
    from medplib_core.errors import LoadError
    from medplib_core.medplib.chat import ChatSession, ChatSettings
    from medplib_core.medplib.generation import GenerationSettings
    from medplib_core.medplib.loader import load_medplib
    from medplib_core.medplib.region import Region
    from medplib_core.medplib.selection import MedplibSettings

    cfg = MedplibSettings.from_sources(None, args)
    ok, message = cfg.availability()
    if not ok:
        raise LoadError(cfg.checkpoint or "MedPLIB", message)
    image = _read_image(args.image)
    regions = _regions(args, Region)
    loaded = load_medplib(cfg.checkpoint, cfg.clip, cfg.sam, device=cfg.device)
    if args.report:
        print(loaded.report.format(), file=sys.stderr)
    gen = GenerationSettings(**_generation_options(args))
    settings = ChatSettings(generation=gen, crop_mode=args.crop, threshold=args.threshold)
    chat = ChatSession(loaded, image, settings)
    turn = chat.ask(args.question, regions=regions, on_token=None if args.json else _stream)
    return _finish(args, turn)


def _generation_options(args: argparse.Namespace) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
            "top_p": args.top_p, "seed": args.seed, "forced_answer": args.forced_answer}


def _ask_remote(args: argparse.Namespace) -> int:
    """The same question through a server's MedPLIB (no model is loaded here)."""
    from medplib_core.engines.remote import RemoteEngine

    image = _read_image(args.image)
    regions = _regions(args)
    engine = RemoteEngine(args.server, engine="medplib")
    if args.report:
        print(f"server {args.server}: {engine.info.name} {engine.info.version} on {engine.info.device}",
              file=sys.stderr)
    settings = dict(_generation_options(args), crop_mode=args.crop, threshold=args.threshold)
    chat = engine.encode(image).chat(settings)
    turn = chat.ask(args.question, regions=regions, on_token=None if args.json else _stream)
    engine.close()
    return _finish(args, turn)


def _finish(args: argparse.Namespace, turn) -> int:
    import numpy as np
    from PIL import Image

    if not args.json:
        print()
    if turn.masks:
        out = Path(args.mask_out) if args.mask_out else Path(args.image).with_name(
            Path(args.image).stem + "_medplib_mask.png")
        Image.fromarray(turn.masks[0].astype(np.uint8) * 255).save(out)
        print(f"mask: {out} ({int(turn.masks[0].sum())} pixels)", file=sys.stderr)
    if args.json:
        print(json.dumps(turn.provenance, indent=1, default=str))
    return 0
