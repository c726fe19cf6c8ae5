"""Batch throughput: cases per minute with LiteMedSAM box prompts, by worker count.

Builds a batch from ../shared/data (dev2d images with their boxes, the NIfTI volumes with a box
from their label maps) plus synthetic 2D cases up to ``--cases``, then runs it with each worker
count in ``--workers`` (fresh output folder each time) and prints a table.

    python bench/batch.py [--cases 36] [--workers 1 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def shared_data() -> Path | None:
    p = Path(os.environ.get("MEDPLIB_SHARED_DATA", REPO.parent / "shared" / "data"))
    return p if p.is_dir() else None


def build_cases(root: Path, n: int) -> tuple[list[dict], list[list]]:
    cases, prompts = [], []
    data = shared_data()
    if data is not None:
        rows = [r for r in csv.DictReader(open(data / "dev2d" / "manifest.csv"))
                if float(r["largest_cc_frac"]) >= 0.95]
        seen = set()
        for r in rows:
            if r["image"] in seen or len(cases) >= n // 2:
                continue
            seen.add(r["image"])
            cid = f"dev_{len(cases):02d}"
            cases.append({"id": cid, "path": str(data / "dev2d" / r["image"])})
            prompts.append([cid, r["target"], "box", "pixel", 0, *r["box_xyxy"].split()])
        import SimpleITK as sitk

        for name, value in (("ct_small_abdomen", 5), ("mr_small_abdomen", 1)):
            lab = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "volumes" / f"{name}_labels.nii.gz"))) == value
            k = int(np.argmax(lab.sum(axis=(1, 2))))
            r, c = np.nonzero(lab[k])
            cases.append({"id": name, "path": str(data / "volumes" / f"{name}.nii.gz")})
            prompts.append([name, "organ", "box", "pixel", k, c.min(), r.min(), c.max(), r.max()])
    rng = np.random.default_rng(0)
    while len(cases) < n:
        i = len(cases)
        img = rng.normal(70, 10, (384, 384)).clip(0, 255)
        cy, cx, rad = rng.integers(80, 300, 2).tolist() + [int(rng.integers(15, 60))]
        yy, xx = np.mgrid[:384, :384]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad * rad] = 190
        p = root / f"synthetic_{i:03d}.png"
        Image.fromarray(img.astype(np.uint8)).save(p)
        cases.append({"id": p.stem, "path": str(p)})
        prompts.append([p.stem, "disc", "box", "pixel", 0, cx - rad - 3, cy - rad - 3, cx + rad + 3, cy + rad + 3])
    return cases, prompts


def write_spec(root: Path, cases, prompts, out: str) -> Path:
    with open(root / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "space", "slice", "x0", "y0", "x1", "y1"])
        w.writerows(prompts)
    spec = root / f"spec_{out}.json"
    spec.write_text(json.dumps({"output": out, "engine": {"name": "litemedsam"},
                                "prompts": "prompts.csv", "cases": cases}))
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=36)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    from medplib_core.batch import run_batch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases, prompts = build_cases(root, args.cases)
        for workers in args.workers:
            times = []
            for rep in range(args.repeats):
                spec = write_spec(root, cases, prompts, f"run_w{workers}_{rep}")
                t0 = time.perf_counter()
                summary = run_batch(spec, workers=workers)
                times.append(time.perf_counter() - t0)
                if summary["failed"]:
                    print(f"warning: {summary['failed']} failed cases", file=sys.stderr)
            med = statistics.median(times)
            rows.append((workers, len(cases), med, len(cases) / med * 60.0))
    base = rows[0][3]
    print(f"\nbatch throughput, LiteMedSAM box prompts, {os.cpu_count()} CPU cores "
          f"(median of {args.repeats} run(s); wall time includes engine start-up)")
    print(f"{'workers':>8} {'cases':>6} {'wall s':>8} {'cases/min':>10} {'vs 1st':>7}")
    for w, n, t, cpm in rows:
        print(f"{w:>8} {n:>6} {t:>8.1f} {cpm:>10.1f} {cpm / base:>7.2f}")


if __name__ == "__main__":
    main()
