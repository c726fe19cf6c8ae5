"""Batch throughput: cases per minute with LiteMedSAM box prompts, by worker count.

Builds a batch from ../shared/data (dev2d images with their boxes, the NIfTI volumes with a box
from their label maps) plus synthetic 2D cases up to ``--cases``, then runs it with each worker
count in ``--workers`` (fresh output folder each time) and prints a table. ``--ray`` runs the
same batch on a local Ray too (as many engine actors as workers, the cores shared out the same
way; Ray's start-up is timed apart) and adds its columns and the per-case cost Ray adds.

    python bench/batch.py [--cases 36] [--workers 1 2] [--repeats 1] [--ray]
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


def write_spec(root: Path, cases, prompts, out: str, **extra) -> Path:
    with open(root / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "space", "slice", "x0", "y0", "x1", "y1"])
        w.writerows(prompts)
    spec = root / f"spec_{out}.json"
    spec.write_text(json.dumps({"output": out, "engine": {"name": "litemedsam"},
                                "prompts": "prompts.csv", "cases": cases, **extra}))
    return spec


def timed_run(root: Path, cases, prompts, name: str, spec_extra=None, **kw) -> tuple[float, float]:
    """One run (a fresh output folder): wall seconds, and seconds per case from the first finished
    case to the last (the steady rate, start-up left out)."""
    from medplib_core.batch import run_batch

    spec = write_spec(root, cases, prompts, name, **(spec_extra or {}))
    done: list[float] = []
    t0 = time.perf_counter()
    summary = run_batch(spec, progress=lambda prog: done.append(time.perf_counter()), **kw)
    wall = time.perf_counter() - t0
    if summary["failed"]:
        print(f"warning: {summary['failed']} failed cases", file=sys.stderr)
    return wall, (done[-1] - done[0]) / max(1, len(done) - 1)


def start_ray() -> tuple[float, str]:
    """A local Ray on this machine's cores (session files in a temp folder); its start-up seconds."""
    import logging

    import ray

    from medplib_core.ray_cluster import code_env

    temp_dir = tempfile.mkdtemp(prefix="mpray-bench-", dir="/tmp")
    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             logging_level=logging.WARNING, runtime_env=code_env(), object_store_memory=200 * 2**20)
    return time.perf_counter() - t0, temp_dir


def dispatch_ms(root: Path, cases, prompts, calls: int = 200) -> float:
    """Median round trip of an actor call carrying one real `CaseJob` and returning a small record."""
    import ray

    from medplib_core.batch.case import CaseJob
    from medplib_core.batch.manifest import input_checksum
    from medplib_core.batch.spec import load_spec

    spec = load_spec(write_spec(root, cases, prompts, "dispatch"))
    job = CaseJob.from_spec(spec, spec.cases[0], input_checksum(spec.cases[0].path))

    @ray.remote(num_cpus=1)
    class Echo:
        def run(self, job):
            return {"case": job.case.id, "status": "ok"}

    echo = Echo.remote()
    ray.get(echo.run.remote(job))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        ray.get(echo.run.remote(job))
        times.append(time.perf_counter() - t0)
    ray.kill(echo)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=36)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ray", action="store_true", help="also run each worker count on a local Ray")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases, prompts = build_cases(root, args.cases)
        ray_start, temp_dir, per_call = None, None, None
        if args.ray:
            ray_start, temp_dir = start_ray()
        try:
            runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for rep in range(args.repeats):  # pool and Ray interleaved: both see the same machine load
                for workers in args.workers:
                    runs.setdefault(("pool", workers), []).append(
                        timed_run(root, cases, prompts, f"pool_w{workers}_{rep}", workers=workers, ray=False))
                    if args.ray:
                        cpus = max(1, (os.cpu_count() or 1) // workers)  # the pool's threads per worker
                        runs.setdefault(("ray", workers), []).append(
                            timed_run(root, cases, prompts, f"ray_w{workers}_{rep}", workers=workers, ray=True,
                                      spec_extra={"ray": {"cpus": cpus}}))
            med = {k: (statistics.median(w for w, _ in v), statistics.median(s for _, s in v)) for k, v in runs.items()}
            rows = [(w, len(cases), med["pool", w], med.get(("ray", w))) for w in args.workers]
            if args.ray:
                per_call = dispatch_ms(root, cases, prompts)
        finally:
            if args.ray:
                import shutil

                import ray

                ray.shutdown()
                shutil.rmtree(temp_dir, ignore_errors=True)
    base = len(cases) / rows[0][2][0] * 60.0
    print(f"\nbatch throughput, LiteMedSAM box prompts, {os.cpu_count()} CPU cores (median of {args.repeats} "
          "run(s); wall: engine start-up included; steady: first finished case to last)")
    head = f"{'workers':>7} {'cases':>5} {'pool s':>7} {'pool/min':>8} {'vs 1st':>6} {'steady/min':>10}"
    print(head + (f" {'ray s':>7} {'ray/min':>7} {'steady/min':>10} {'ray/pool':>8} {'+ms/case':>8}"
                  if args.ray else ""))
    for w, n, (t, st), on_ray in rows:
        cpm = n / t * 60.0
        line = f"{w:>7} {n:>5} {t:>7.1f} {cpm:>8.1f} {cpm / base:>6.2f} {60.0 / st:>10.1f}"
        if on_ray is not None:
            tr, sr = on_ray
            line += f" {tr:>7.1f} {n / tr * 60.0:>7.1f} {60.0 / sr:>10.1f} {t / tr:>8.2f} {(sr - st) * 1000:>8.0f}"
        print(line)
    if args.ray:
        print("+ms/case: Ray's steady seconds per case minus the pool's. "
              f"Ray start-up (local, not in the wall times): {ray_start:.1f} s; one actor call carrying a "
              f"CaseJob (no work): {per_call:.2f} ms median")


if __name__ == "__main__":
    main()
