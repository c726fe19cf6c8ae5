"""Segmentation benchmark: LiteMedSAM prompt modes, speed, and 3D propagation on real data.

    python bench/segmentation.py [--manifest ../shared/data/dev2d/manifest.csv] [--limit N]

Over manifest rows with ``largest_cc_frac >= 0.95``: Dice per modality for a tight box, a box
enlarged by 10 %, a single click at the mask's interior point farthest from its border, the
mask's outline as a free-form polygon, one corrective click after the 10 % box, and the naive
reference pipeline (whole image, eager PyTorch, threshold 0.5); eager-vs-fast tight-box Dice;
encoder/decoder/click latency medians and the fast encoder's and decoder's speed-ups over eager
PyTorch (same process, so the ratios are meaningful even when the machine is busy). Then 3D propagation on ct_small_abdomen.
Ends with ``mean Dice (tight box): X``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
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


class Timed:
    """Wraps an encoder to record each call's duration."""

    def __init__(self, enc):
        self.enc, self.times, self.name = enc, [], enc.name

    def __call__(self, x):
        t = time.perf_counter()
        out = self.enc(x)
        self.times.append(time.perf_counter() - t)
        return out


class TimedDecoder:
    """Wraps a mask-decoder backend to record (prompts in the batch, duration) per call."""

    def __init__(self, backend):
        self.backend, self.calls, self.name = backend, [], backend.name

    def __call__(self, embedding, sparse, *rest):
        t = time.perf_counter()
        out = self.backend(embedding, sparse, *rest)
        self.calls.append((int(sparse.shape[0]), time.perf_counter() - t))
        return out

    def median_ms(self, n: int = 1) -> float:
        times = [t for k, t in self.calls if k == n]
        return float(np.median(times)) * 1000 if times else float("nan")


def run_2d(args, fast, eager) -> dict:
    from medplib_core.engines.litemedsam import Settings

    rows = [r for r in csv.DictReader(open(args.manifest)) if float(r["largest_cc_frac"]) >= args.min_frac]
    rows = rows[: args.limit] if args.limit else rows
    root = Path(args.manifest).parent
    dices: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    lat: dict[str, list[float]] = defaultdict(list)
    naive = Settings(zoom=False, clip_margin=None, box_pad=0.0)
    whole = Settings(zoom=False)
    pairs: list[tuple[float, float]] = []
    for i, r in enumerate(rows):
        img, gt = load_rgb(root / r["image"]), cv2.imread(str(root / r["mask"]), cv2.IMREAD_GRAYSCALE) > 127
        mod = r["modality"]
        box = tuple(float(v) for v in r["box_xyxy"].split())

        def add(mode, value):
            dices[mode][mod].append(value)
            dices[mode]["ALL"].append(value)

        s = fast.encode(img)
        t = time.perf_counter()
        res = s.predict(Prompt(box=box))
        add("tight box", dice(res.mask, gt))
        if res.provenance["path"] == "whole":
            lat["box -> mask (cached, decoder + post)"].append(time.perf_counter() - t)
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
        add("outline", dice(s.predict(Prompt(polygon=outline_polygon(gt))).mask, gt))
        m10 = s.predict(Prompt(box=expand_box(box, 0.1, gt.shape))).mask
        cc = corrective_click(gt, m10)
        if cc is not None:
            m10 = s.predict(Prompt(points=[cc[0]], point_labels=[cc[1]], mask_input=m10)).mask
        add("box +10% +1 corrective click", dice(m10, gt))
        if eager is not None and i % args.eager_every == 0:
            se = eager.encode(img)
            de = dice(se.predict(Prompt(box=box)).mask, gt)
            add("tight box, eager PyTorch", de)
            pairs.append((dices["tight box"][mod][-1], de))
            keep, eager.settings = eager.settings, naive
            add("naive reference (eager)", dice(se.box_mask(box)[0] > 0, gt))
            eager.settings = keep
        if args.verbose:
            run = "  ".join(f"{k}={np.mean(v['ALL']):.3f}" for k, v in dices.items())
            print(f"[{i + 1}/{len(rows)}] {mod} {r['target']}: {run}", flush=True)
    return {"dice": dices, "latency": lat, "pairs": pairs}


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default=str(DATA / "dev2d" / "manifest.csv"))
    ap.add_argument("--volume", default=str(DATA / "volumes" / "ct_small_abdomen.nii.gz"))
    ap.add_argument("--min-frac", type=float, default=0.95)
    ap.add_argument("--limit", type=int, default=0, help="only the first N rows (quick runs)")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager PyTorch engine (no speed-ups)")
    ap.add_argument("--eager-every", type=int, default=1,
                    help="run the eager reference on every N-th row only (quicker)")
    ap.add_argument("--no-3d", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if not Path(args.manifest).is_file():
        print(f"manifest not found: {args.manifest}", file=sys.stderr)
        return 2
    import torch

    from medplib_core.engines.accel import cpu_threads
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    torch.set_num_threads(cpu_threads())
    fast = LiteMedSAMEngine()
    eager = None if args.no_eager else LiteMedSAMEngine(backend="eager")
    fast.encoder = Timed(fast.encoder)
    fast.decoder.backend = TimedDecoder(fast.decoder.backend)
    if eager is not None:
        eager.encoder = Timed(eager.encoder)
        eager.decoder.backend = TimedDecoder(eager.decoder.backend)
    print(f"engine: {fast.info.name} {fast.info.version}, encoder {fast.encoder.name}, "
          f"decoder {fast.decoder.name}, threads {cpu_threads()}")
    t0 = time.perf_counter()
    r2 = run_2d(args, fast, eager)
    mods = sorted({m for d in r2["dice"].values() for m in d if m != "ALL"})
    print(f"\n{'prompt mode':34s}" + "".join(f"{m[:10]:>12s}" for m in mods) + f"{'mean':>9s}")
    for mode, per in r2["dice"].items():
        cells = "".join(f"{np.mean(per[m]):8.3f} ({len(per[m]):2d})" if per.get(m) else f"{'-':>12s}" for m in mods)
        print(f"{mode:34s}{cells}{np.mean(per['ALL']):9.3f}")
    lat = r2["latency"]
    fe = np.median(fast.encoder.times) if fast.encoder.times else float("nan")
    print(f"\nencoder {fast.encoder.name}: median {fe * 1000:.0f} ms over {len(fast.encoder.times)} calls")
    if eager is not None and eager.encoder.times:
        ee = np.median(eager.encoder.times)
        print(f"encoder eager PyTorch: median {ee * 1000:.0f} ms; speed-up {ee / fe:.2f}x")
        both = r2["pairs"]
        dd = float(np.mean([a - b for a, b in both])) if both else float("nan")
        print(f"tight-box Dice fast - eager on the same {len(both)} rows: {dd:+.4f}")
    fd = fast.decoder.backend.median_ms(1)
    print(f"mask decoder {fast.decoder.name}, one prompt: median {fd:.0f} ms", end="")
    if eager is not None and eager.decoder.backend.calls:
        ed = eager.decoder.backend.median_ms(1)
        print(f"; eager PyTorch {ed:.0f} ms; speed-up {ed / fd:.2f}x", end="")
    print()
    for k, v in lat.items():
        print(f"{k}: median {np.median(v) * 1000:.0f} ms, 90th percentile {np.percentile(v, 90) * 1000:.0f} ms"
              f" (n={len(v)})")
    print(f"2D part took {time.perf_counter() - t0:.0f} s (machine shared: timings are noisy)")
    r3 = []
    if not args.no_3d and Path(args.volume).is_file():
        r3 = run_3d(fast, Path(args.volume))
        print(f"\n3D propagation on {Path(args.volume).name} (seed = ground truth on its largest slice)")
        for r in r3:
            print(f"  {r['organ']:12s} Dice {r['dice']:.3f}  {r['seconds']:6.1f} s  slices {r['slices']}"
                  f" (truth {r['gt_slices']})  stops: {r['stops']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"dice": {k: {m: float(np.mean(v)) for m, v in d.items()}
                                                         for k, d in r2["dice"].items()}, "3d": r3}, indent=1))
    print(f"mean Dice (tight box): {np.mean(r2['dice']['tight box']['ALL']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
