"""Segmentation benchmark: LiteMedSAM prompt modes, every backend's speed, and 3D propagation.

    python bench/segmentation.py [--manifest ../shared/data/dev2d/manifest.csv] [--limit N]
        [--backend-every K] [--max-isa AVX2] [--build-int8] [--no-3d] [--json OUT]

Over manifest rows with ``largest_cc_frac >= 0.95``, with the engine the application picks
(``auto``): Dice per modality for a tight box, a box enlarged by 10 %, a single click at the
mask's interior point farthest from its border, the mask's outline as a free-form polygon and
one corrective click after the 10 % box (and the single click without the second look of
unsure clicks, `single_click`), each also for the two halves of the rows (even / odd
row numbers: anything tuned on one half should hold on the other); then click -> mask and
box -> mask latency (medians and 90th percentiles, embedding cached). On every K-th row, every
encoder backend this machine offers (eager PyTorch, OpenVINO fp32, OpenVINO bf16 where the CPU
has it natively, OpenVINO int8, ONNX Runtime fp32; see bench/seg_backends.py) is timed in the
same process, interleaved row by row, with its speed-up over eager, its embedding error against
eager and its own tight-box Dice; then the mask decoder backends. Then 3D propagation on
ct_small_abdomen. Ends with ``mean Dice (tight box): X``.

``--max-isa AVX2`` emulates a CPU without AVX-512 (``ONEDNN_MAX_CPU_ISA`` for OpenVINO's and
PyTorch's oneDNN; a separate accelerator cache): partial, because OpenVINO's MLAS GEMMs and ONNX
Runtime still use every instruction the CPU has. Timings are wall clock; "CPU s / call" is the
process's CPU time (all threads), which other load on a shared machine does not inflate.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
DATA = REPO.parent / "shared" / "data"

from medplib_core.engines.base import Prompt  # noqa: E402
from medplib_core.engines.prompts import dice, expand_box, interior_point  # noqa: E402


def load_rgb(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise SystemExit(f"cannot read {path}")
    if im.ndim == 3:
        im = cv2.cvtColor(im[..., :3], cv2.COLOR_BGR2RGB)
    if im.dtype != np.uint8:
        im = cv2.normalize(im, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return im


def outline_polygon(mask: np.ndarray) -> list[tuple[float, float]]:
    """The mask's outer outline as a polygon (vertices every ~1 % of the perimeter)."""
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(cs, key=cv2.contourArea)
    poly = cv2.approxPolyDP(c, 0.01 * cv2.arcLength(c, True), True).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in poly]


def corrective_click(gt: np.ndarray, mask: np.ndarray):
    """A simulated user's click: interior of the largest error region (+ if missed, - if extra)."""
    fn, fp = gt & ~mask, mask & ~gt
    err, lab = (fn, 1) if fn.sum() >= fp.sum() else (fp, 0)
    if not err.any():
        return None
    n, comp = cv2.connectedComponents(err.astype(np.uint8))
    big = 1 + int(np.argmax(np.bincount(comp.ravel())[1:]))
    return interior_point(comp == big), lab


def load_rows(args) -> list[dict]:
    rows = [r for r in csv.DictReader(open(args.manifest)) if float(r["largest_cc_frac"]) >= args.min_frac]
    return rows[: args.limit] if args.limit else rows


def load_case(root: Path, r: dict):
    img, gt = load_rgb(root / r["image"]), cv2.imread(str(root / r["mask"]), cv2.IMREAD_GRAYSCALE) > 127
    return img, gt, tuple(float(v) for v in r["box_xyxy"].split())


def run_2d(args, fast, rows) -> dict:
    """Every prompt mode on every row with the application's engine."""
    from medplib_core.engines.litemedsam import Settings

    root = Path(args.manifest).parent
    dices: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    lat: dict[str, list[float]] = defaultdict(list)
    whole = Settings(zoom=False)
    for i, r in enumerate(rows):
        img, gt, box = load_case(root, r)
        mod = r["modality"]

        def add(mode, value):
            for key in (mod, "ALL", "half A (even rows)" if i % 2 == 0 else "half B (odd rows)"):
                dices[mode][key].append(value)

        s = fast.encode(img)
        t = time.perf_counter()
        res = s.predict(Prompt(box=box))
        add("tight box", dice(res.mask, gt))
        if s.frame_for(box)[0].is_whole:
            lat["box -> mask (cached, decoder + post)"].append(time.perf_counter() - t)
        else:  # crop-and-zoom and whole-slice views (box fit), the zoom region now cached too
            t = time.perf_counter()
            s.predict(Prompt(box=box))
            lat["box -> mask, small box (both views, cached)"].append(time.perf_counter() - t)
        keep, fast.settings = fast.settings, whole
        add("tight box, whole image only (no zoom)", dice(s.box_mask(box)[0], gt))
        fast.settings = keep
        add("box +10%", dice(s.predict(Prompt(box=expand_box(box, 0.1, gt.shape))).mask, gt))
        pt = interior_point(gt)
        click = Prompt(points=[pt], point_labels=[1])
        add("single click", dice(s.predict(click).mask, gt))
        t = time.perf_counter()
        s.predict(click)  # again, now with every embedding it needs cached
        lat["click -> mask (cached)"].append(time.perf_counter() - t)
        keep_look, fast.settings.click_second_look = fast.settings.click_second_look, False
        add("single click, first look only", dice(s.predict(click).mask, gt))  # same embedding
        t = time.perf_counter()
        s.predict(click)
        lat["click -> mask, first look only (cached)"].append(time.perf_counter() - t)
        fast.settings.click_second_look = keep_look
        add("outline", dice(s.predict(Prompt(polygon=outline_polygon(gt))).mask, gt))
        m10 = s.predict(Prompt(box=expand_box(box, 0.1, gt.shape))).mask
        cc = corrective_click(gt, m10)
        if cc is not None:
            m10 = s.predict(Prompt(points=[cc[0]], point_labels=[cc[1]], mask_input=m10)).mask
        add("box +10% +1 corrective click", dice(m10, gt))
        if args.verbose:
            run = "  ".join(f"{k}={np.mean(v['ALL']):.3f}" for k, v in dices.items())
            print(f"[{i + 1}/{len(rows)}] {mod} {r['target']}: {run}", flush=True)
    return {"dice": dices, "latency": lat}


def print_modes(r2: dict, engine) -> None:
    per = r2["dice"]
    mods = sorted({m for d in per.values() for m in d if m not in ("ALL",) and not m.startswith("half")})
    cols = mods + ["half A (even rows)", "half B (odd rows)"]
    print(f"\nprompt modes, encoder {engine.encoder.name}, decoder {engine.decoder.name} (Dice, rows)")
    print(f"| {'prompt mode':38s} | " + " | ".join(c.split(" (")[0] for c in cols) + " | mean |")
    print("|---|" + "---|" * (len(cols) + 1))
    for mode, d in per.items():
        cells = " | ".join(f"{np.mean(d[c]):.3f} ({len(d[c])})" if d.get(c) else "-" for c in cols)
        print(f"| {mode:38s} | {cells} | **{np.mean(d['ALL']):.3f}** |")
    print()
    for k, v in r2["latency"].items():
        print(f"{k}: median {np.median(v) * 1000:.0f} ms, 90th percentile {np.percentile(v, 90) * 1000:.0f} ms"
              f" (n={len(v)}; encoder {engine.encoder.name}, decoder {engine.decoder.name})")


def machine_line() -> str:
    import platform

    import openvino
    import torch

    from medplib_core import threads

    name, flags = platform.processor() or "?", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    emulated = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (f"CPU {name} ({os.cpu_count()} logical), flags {' '.join(isa)}"
            f"{f', oneDNN limited to {emulated} (emulation)' if emulated else ''}; threads {threads.configure()}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}; torch {torch.__version__}, "
            f"openvino {openvino.__version__}; load average {load:.1f}")


def run_3d(fast, volume_path: Path) -> list[dict]:
    import medplib_core
    from medplib_core.engines.propagation import PropagationLog, propagate_volume

    vol = medplib_core.load(str(volume_path))
    lab_path = volume_path.with_name(volume_path.name.replace(".nii.gz", "_labels.nii.gz"))
    labels = np.asarray(medplib_core.load(str(lab_path)).array)
    names = json.loads(lab_path.with_suffix("").with_suffix(".json").read_text())["labels_present"]
    want = {"liver": None, "spleen": None, "kidney_left": None}
    for v, n in names.items():
        if n in want:
            want[n] = int(v)
    out = []
    for name, value in want.items():
        gt = labels == value
        k = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
        log = PropagationLog()
        t = time.perf_counter()
        pred = propagate_volume(fast, vol, k, gt[k], log=log)
        dt = time.perf_counter() - t
        out.append({"organ": name, "seed": k, "dice": dice(pred, gt), "seconds": dt,
                    "slices": int(pred.any((1, 2)).sum()), "gt_slices": int(gt.any((1, 2)).sum()),
                    "stops": log.stops})
    return out


def checked_or_rerun(args, script: str, argv=None) -> int | None:
    """An exit status when ``script`` should stop here: the manifest is missing (2), or it ran
    again with oneDNN limited to ``args.max_isa`` and an accelerator cache of its own; None
    to go on."""
    if not Path(args.manifest).is_file():
        print(f"manifest not found: {args.manifest}", file=sys.stderr)
        return 2
    if not args.max_isa or os.environ.get("ONEDNN_MAX_CPU_ISA") == args.max_isa.upper():
        return None
    import subprocess

    isa = args.max_isa
    cache = Path(os.environ.get("MEDPLIB_CACHE_DIR") or Path.home() / ".cache" / "medplib-studio")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa.upper(), MEDPLIB_CACHE_DIR=str(cache / f"isa-{isa.lower()}"))
    return subprocess.call([sys.executable, script] + list(argv if argv is not None else sys.argv[1:]), env=env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default=str(DATA / "dev2d" / "manifest.csv"))
    ap.add_argument("--volume", default=str(DATA / "volumes" / "ct_small_abdomen.nii.gz"))
    ap.add_argument("--min-frac", type=float, default=0.95)
    ap.add_argument("--limit", type=int, default=0, help="only the first N rows (quick runs)")
    ap.add_argument("--backend-every", type=int, default=3, help="time every backend on every K-th row")
    ap.add_argument("--no-backends", action="store_true", help="skip the per-backend tables")
    ap.add_argument("--build-int8", action="store_true", help="quantise the int8 encoder now if missing")
    ap.add_argument("--max-isa", help="emulate an older CPU, e.g. AVX2 (see the module docstring)")
    ap.add_argument("--no-3d", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    stop = checked_or_rerun(args, __file__, argv)
    if stop is not None:
        return stop
    import medplib_core.engines  # noqa: F401  (the thread policy, before PyTorch loads)
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    from seg_backends import (Timed, TimedDecoder, decoder_table, encoder_specs, make_engines,
                              print_encoder_table, run_encoders)

    print(machine_line())
    if args.build_int8:
        from medplib_core.engines.fast_encoder import make_encoder
        from medplib_core.engines.litemedsam_model import build_network, file_sha256, weights_path

        enc = make_encoder(build_network().image_encoder, file_sha256(weights_path()), "cpu", "openvino-int8")
        print(f"int8 encoder built and checked: {enc.name}")
    rows = load_rows(args)
    fast = LiteMedSAMEngine()
    fast.encoder = Timed(fast.encoder)
    fast.decoder.backend = TimedDecoder(fast.decoder.backend)
    print(f"engine: {fast.info.name} {fast.info.version}, auto picked encoder {fast.encoder.name}, "
          f"decoder {fast.decoder.name}")
    t0 = time.perf_counter()
    r2 = run_2d(args, fast, rows)
    print_modes(r2, fast)
    print(f"2D part took {time.perf_counter() - t0:.0f} s")
    out = {"dice": {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in r2["dice"].items()}}
    if not args.no_backends:
        specs = encoder_specs(args.build_int8)
        engines = make_engines(specs)
        root = Path(args.manifest).parent
        cases = [load_case(root, r) for r in rows[:: args.backend_every]]
        res = run_encoders(engines, cases, dice, Prompt, interior_point)
        print(f"\nencoder backends on {len(cases)} rows (every {args.backend_every}th), interleaved row by row;"
              f" decoder of each row's engine: eager for eager, else auto")
        print_encoder_table(res)
        embs = [engines["eager"].encode(img).embedding for img, _, _ in cases[:8]]
        decoder_table(embs)
        out["encoders"] = {k: {"median_ms": float(np.median(v["times"]) * 1000), "dice": float(np.mean(v["dice"])),
                               "backend": v["name"]} for k, v in res.items()}
    r3 = []
    if not args.no_3d and Path(args.volume).is_file():
        r3 = run_3d(fast, Path(args.volume))
        print(f"\n3D propagation on {Path(args.volume).name} (seed = ground truth on its largest slice)")
        for r in r3:
            print(f"  {r['organ']:12s} Dice {r['dice']:.3f}  {r['seconds']:6.1f} s  slices {r['slices']}"
                  f" (truth {r['gt_slices']})  stops: {r['stops']}")
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "3d": r3}, indent=1))
    print(f"mean Dice (tight box): {np.mean(r2['dice']['tight box']['ALL']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
