"""3D propagation benchmark: Dice before/after against the reference labels, and seconds per slice.

    python bench/propagation.py [--before REV] [--quick] [--ceiling] [--json OUT]

Cases: liver, spleen and both kidneys of ``ct_small_abdomen`` and ``mr_small_abdomen`` (the
eight of issue 13.4), and liver, spleen, stomach and aorta of the 512x512 ``ct_series_j2k``
(its labels placed by world coordinates), a check on a volume the rules were not developed on.
Each case is seeded as ``medplib-studio segment --slice K --box ... --propagate`` does: the
reference's tight box on the organ's largest slice, the engine's mask from it, then propagation
through the volume in the scan's own window. "before" is the propagation module of git revision
``--before`` (default: the one issue 13 measured), run in this process on the same engine.

Every run starts with an empty embedding cache, so seconds per slice include encoding (the
slices propagation visited, the stop slices included); ``--quick`` shares embeddings between
runs (quality only, the time column then says "cached"). ``--ceiling`` adds the Dice of the
reference's own tight box on every slice (no propagation): what any box rule could reach with
this engine. The machine may be shared: compare the columns of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
BEFORE_REV = "db37cc7"  # propagation as measured in issue 13 (item 4)

CASES = [("ct_small_abdomen.nii.gz", o) for o in ("liver", "spleen", "kidney_right", "kidney_left")] + \
        [("mr_small_abdomen.nii.gz", o) for o in ("liver", "spleen", "kidney_right", "kidney_left")] + \
        [("ct_series_j2k", o) for o in ("liver", "spleen", "stomach", "aorta")]


def load_case(volumes: Path, scan: str, organ: str, seed_at: str = "largest") -> dict:
    """The scan, the organ's reference mask on the scan's grid, the seed slice (its largest, or
    the slice a third / two thirds into its extent) and the reference's tight box there."""
    import medplib_core
    from medplib_core.export.importers import import_labels
    from medplib_core.engines.prompts import mask_box

    vol = medplib_core.load(str(volumes / scan))
    stem = scan.removesuffix(".nii.gz")
    names = json.loads((volumes / f"{stem}_labels.json").read_text())["labels_present"]
    value = next(int(v) for v, n in names.items() if n == organ)
    truth = import_labels(volumes / f"{stem}_labels.nii.gz", vol).array == value
    areas = truth.reshape(truth.shape[0], -1).sum(1)
    if seed_at == "largest":
        k = int(np.argmax(areas))
    else:
        ks = np.nonzero(areas)[0]
        k = int(ks[int(round((len(ks) - 1) * {"third": 1 / 3, "two-thirds": 2 / 3}[seed_at]))])
    return {"scan": stem, "organ": organ, "volume": vol, "truth": truth, "k": k, "box": mask_box(truth[k])}


def seed_mask(engine, case: dict) -> np.ndarray:
    """The engine's mask from the tight box on the seed slice, as the ``segment`` command makes it."""
    from medplib_core.display import apply_window
    from medplib_core.engines.base import Prompt

    image = apply_window(case["volume"].array[case["k"]], *case["volume"].window)
    return engine.encode(image).predict(Prompt(box=case["box"])).mask


def load_before(rev: str):
    """The propagation module as it was at git revision ``rev`` (None when git cannot say)."""
    try:
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:medplib_core/engines/propagation.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no 'before' column: git show {rev} failed ({exc})", file=sys.stderr)
        return None
    mod = types.ModuleType("medplib_core.engines._propagation_before")
    mod.__package__ = "medplib_core.engines"
    sys.modules[mod.__name__] = mod
    exec(compile(src, f"propagation.py@{rev}", "exec"), mod.__dict__)
    return mod


def run_one(engine, module, case: dict, seed: np.ndarray, cold: bool, **options) -> dict:
    """One propagation with ``module.propagate_volume``: Dice, slices, seconds."""
    from medplib_core.engines.prompts import dice

    if cold:
        engine.cache.clear()
    calls = engine.encoder_calls
    t = time.perf_counter()
    seen: list[int] = []
    log = module.PropagationLog()
    mask = module.propagate_volume(engine, case["volume"], case["k"], seed, log=log,
                                   progress=lambda d, n: seen.append(d), **options)
    dt = time.perf_counter() - t
    visited = max(1, len(seen) - 1)  # progress is reported once per slice, plus a final call
    return {"dice": dice(mask, case["truth"]), "slices": int(mask.any(axis=(1, 2)).sum()),
            "truth_slices": int(case["truth"].any(axis=(1, 2)).sum()), "seconds": dt,
            "s_per_slice": dt / visited, "encoder_calls": engine.encoder_calls - calls,
            "encode_s": getattr(log, "encode_s", None), "wait_s": getattr(log, "wait_s", None)}


def ceiling(engine, case: dict) -> float:
    """3D Dice of the engine's masks from the reference's own tight box on every slice."""
    from medplib_core.display import apply_window
    from medplib_core.engines.base import Prompt
    from medplib_core.engines.prompts import dice, mask_box

    vol, truth = case["volume"], case["truth"]
    out = np.zeros_like(truth)
    for k in range(truth.shape[0]):
        box = mask_box(truth[k])
        if box is not None:
            out[k] = engine.encode(apply_window(vol.array[k], *vol.window)).predict(Prompt(box=box)).mask
    return dice(out, truth)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA / "volumes"))
    ap.add_argument("--before", default=BEFORE_REV, help="git revision of the 'before' propagation")
    ap.add_argument("--quick", action="store_true", help="share embeddings between runs (no timing)")
    ap.add_argument("--ceiling", action="store_true", help="add the reference-box ceiling column")
    ap.add_argument("--only", nargs="*", help="organs or scans to run (default: all)")
    ap.add_argument("--seed-at", choices=("largest", "third", "two-thirds"), default="largest",
                    help="seed slice: the organ's largest (as in issue 13) or a third / two thirds in")
    ap.add_argument("--speed", action="store_true",
                    help="also time ct_series_j2k's liver with and without encoding ahead")
    ap.add_argument("--whole-slice", action="store_true",
                    help="decode every prompt on the whole slice (the engine's crop-and-zoom off)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    volumes = Path(args.data)
    if not volumes.is_dir():
        print(f"no shared volumes at {volumes}", file=sys.stderr)
        return 2
    import torch

    from medplib_core.engines import propagation
    from medplib_core.engines.accel import cpu_threads
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    torch.set_num_threads(cpu_threads())
    engine = LiteMedSAMEngine()
    if args.whole_slice:
        engine.settings.zoom = False
    before = load_before(args.before)
    backend = f"{engine.encoder.name}/{engine.decoder.name}" + (", whole slice" if args.whole_slice else "")
    print(f"engine {engine.info.name} {engine.info.version}; encoder/decoder {backend}; threads {cpu_threads()}")
    rows = []
    head = (f"{'organ':13s}{'volume':18s}{'seed':>5s}{'before':>8s}{'after':>8s}"
            + (f"{'ceiling':>8s}" if args.ceiling else "")
            + f"{'slices b/a/ref':>16s}{'s/slice b/a':>13s}{'enc b/a':>9s}  backend")
    print(head)
    for scan, organ in CASES:
        if args.only and organ not in args.only and scan.split(".")[0] not in args.only:
            continue
        case = load_case(volumes, scan, organ, args.seed_at)
        seed = seed_mask(engine, case)
        b = run_one(engine, before, case, seed, not args.quick) if before else None
        a = run_one(engine, propagation, case, seed, not args.quick)
        c = ceiling(engine, case) if args.ceiling else None
        row = {"organ": organ, "volume": case["scan"], "seed": case["k"], "before": b, "after": a,
               "ceiling": c, "backend": backend}
        rows.append(row)
        bd = f"{b['dice']:8.3f}" if b else f"{'-':>8s}"
        sl = f"{b['slices'] if b else '-'}/{a['slices']}/{a['truth_slices']}"
        sp = "cached" if args.quick else (f"{b['s_per_slice']:.2f}/" if b else "-/") + f"{a['s_per_slice']:.2f}"
        enc = f"{b['encoder_calls'] if b else '-'}/{a['encoder_calls']}"
        print(f"{organ:13s}{case['scan']:18s}{case['k']:5d}{bd}{a['dice']:8.3f}"
              + (f"{c:8.3f}" if c is not None else "") + f"{sl:>16s}{sp:>13s}{enc:>9s}  {backend}", flush=True)
    eight = [r["after"]["dice"] for r in rows if r["volume"] != "ct_series_j2k"]
    if eight:
        print(f"issue 13.4 cases: min Dice after {min(eight):.3f}, {sum(d >= 0.85 for d in eight)}/{len(eight)} >= 0.85")
    speed = speed_rows(engine, volumes, before) if args.speed else []
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "speed": speed}, indent=1))
    return 0


def speed_rows(engine, volumes: Path, before) -> list[dict]:
    """Seconds per slice on the 512x512 series, cold cache each run, runs interleaved."""
    from medplib_core.engines import propagation

    case = load_case(volumes, "ct_series_j2k", "liver")
    seed = seed_mask(engine, case)
    runs = {"before": (before, {}), "after, encoding in line": (propagation, {"lookahead": False}),
            "after, next slice encoded ahead": (propagation, {"lookahead": True})}
    out: dict[str, list[dict]] = {k: [] for k, (mod, _) in runs.items() if mod is not None}
    for _ in range(2):
        for name in out:
            mod, opts = runs[name]
            out[name].append(run_one(engine, mod, case, seed, cold=True, **opts))
    print(f"\nspeed on ct_series_j2k liver (512x512, {case['truth'].shape[0]} slices), cold cache, 2 runs each:")
    rows = []
    for name, rs in out.items():
        s = float(np.median([r["s_per_slice"] for r in rs]))
        r = rs[-1]
        rows.append({"run": name, "s_per_slice": s, "encoder_calls": r["encoder_calls"], "dice": r["dice"],
                     "encode_s": r["encode_s"], "wait_s": r["wait_s"]})
        waited = (f"  waited for {r['wait_s']:.1f} of {r['encode_s']:.1f} s of encoding"
                  if r["encode_s"] is not None else "")
        print(f"  {name:34s} {s:5.2f} s/slice  encoder calls {r['encoder_calls']:3d}  Dice {r['dice']:.3f}{waited}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
