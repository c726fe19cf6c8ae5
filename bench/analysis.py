"""Analysis tools on a 512x512x300 CT: label statistics, fill between slices, surfaces, brush.

The volume is the shared CT series (512x512x20, 0.98x0.98x2 mm) with its 31-label map, stacked
15 times along k (300 slices), so sizes and label shapes are real. Baselines in the same
process: SimpleITK's LabelStatisticsImageFilter (+ LabelShapeStatistics for the centroids)
for the statistics table. Medians of ``--runs``; numbers from a busy shared machine are to be
read as ratios.

    python bench/analysis.py [--runs 3] [--stack 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(fn, runs: int) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stack", type=int, default=15)
    args = ap.parse_args()
    import SimpleITK as sitk

    from medplib_core import load
    from medplib_core.analysis.brush import brush_2d, brush_ball
    from medplib_core.analysis.interpolate import fill_between_slices
    from medplib_core.analysis.stats import label_statistics
    from medplib_core.analysis.surface import label_surface, label_surfaces
    from medplib_core.export import import_labels
    from medplib_core.volume import Volume

    data = REPO.parent / "shared" / "data" / "volumes"
    src = load(data / "ct_series_j2k")
    imp = import_labels(data / "ct_series_j2k_labels.nii.gz", src)
    vol = Volume(np.concatenate([src.array] * args.stack), spacing=src.spacing, origin=src.origin,
                 direction=src.direction, modality="CT", units="HU")
    labels = np.concatenate([imp.array] * args.stack)
    print(f"volume {vol.shape[::-1]} (i, j, k), {len(np.unique(labels)) - 1} labels, "
          f"{np.count_nonzero(labels) / labels.size:.1%} labelled; busy shared machine\n")

    img = sitk.GetImageFromArray(vol.array)
    img.SetSpacing(vol.spacing)
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(img)

    def sitk_stats():
        f = sitk.LabelStatisticsImageFilter()
        f.Execute(img, lab)
        g = sitk.LabelShapeStatisticsImageFilter()
        g.Execute(lab)

    liver = labels == 5
    sparse = np.zeros_like(liver)
    sparse[::4] = liver[::4]
    centre = vol.index_to_world([256, 256, vol.shape[0] // 2])
    rows = [
        ("label statistics, no diameters", lambda: label_statistics(vol, labels, diameters=False)),
        ("label statistics + RECIST diameters", lambda: label_statistics(vol, labels)),
        ("  baseline: SimpleITK LabelStatistics + LabelShapeStatistics", sitk_stats),
        ("fill between slices: liver, every 4th axial slice", lambda: fill_between_slices(sparse, vol, "axial")),
        ("surface: liver, <= 150k triangles", lambda: label_surface(vol, labels, 5)),
        ("surfaces: all labels, <= 600k triangles", lambda: label_surfaces(vol, labels)),
        ("brush: 10 mm disc stroke (5 points, axial)", lambda: brush_2d(
            vol, "axial", 150, [(200, 200 + 10 * n) for n in range(5)], 10.0, value_range=(-100, 200))),
        ("brush: 15 mm ball", lambda: brush_ball(vol, centre, 15.0)),
    ]
    print("| step | median s |")
    print("|---|---|")
    for name, fn in rows:
        print(f"| {name} | {timed(fn, args.runs):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
