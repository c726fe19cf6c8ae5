"""Load-time and peak-memory benchmark: `medplib_core.load` vs SimpleITK's ImageSeriesReader.

Cases: ../shared/data/volumes/ct_series_j2k (20 JPEG 2000 slices, when present) and a
512x512x300 uncompressed int16 CT series that this script writes to a temporary folder.

Every measurement runs in a fresh subprocess: it first loads one file of the series (so lazy
imports and plug-in start-up are not timed), resets the kernel's peak-RSS counter
(/proc/self/clear_refs, "5"), times the load of the whole folder, and reports the peak RSS
growth (VmHWM - RSS before) next to the volume's nbytes. Both readers include their series
discovery (sorting by position): ``load(folder)`` vs GetGDCMSeriesFileNames + Execute.
Runs alternate between the two readers; the table shows medians.

    python bench/load.py [--runs 5] [--slices 300] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ----- the series written for the benchmark ------------------------------------------------
def write_ct_series(folder, n_slices: int = 300, rows: int = 512, cols: int = 512,
                    spacing=(0.75, 0.75, 1.25), seed: int = 0) -> list[Path]:
    """Uncompressed single-frame CT files (uint16 stored, 12 bits, intercept -1024) with full
    geometry tags; names are random UIDs, so name order is not position order."""
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[:rows, :cols]
    body = ((yy - rows / 2) / (0.4 * rows)) ** 2 + ((xx - cols / 2) / (0.45 * cols)) ** 2 < 1
    base = np.where(body, 1064, 24).astype(np.uint16)
    paths = []
    for k in range(n_slices):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{sop}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesDescription, ds.PatientID = "CT", "bench series", "BENCH"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-cols * spacing[0] / 2, -rows * spacing[1] / 2,
                                   -100.0 + k * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        noise = rng.integers(0, 40, size=(rows, cols), dtype=np.uint16)
        ds.PixelData = (base + noise + (k % 50)).astype("<u2").tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ----- one measurement (runs in a subprocess) ----------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(reader: str, folder: str) -> dict:
    first = sorted(p for p in Path(folder).iterdir() if p.is_file())[0]
    if reader == "medplib":
        from medplib_core.io import load

        load(first)  # warm-up: imports and decoder plug-ins
    else:
        import SimpleITK as sitk

        sitk.ReadImage(str(first))
    import resource

    exact = _reset_peak()
    rss0 = _status_kb("VmRSS")
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if reader == "medplib":
        vol = load(folder)
        t1 = time.perf_counter()
        nbytes, shape, dtype = vol.array.nbytes, vol.shape, str(vol.array.dtype)
    else:
        r = sitk.ImageSeriesReader()
        names = r.GetGDCMSeriesFileNames(folder)
        t_disc = time.perf_counter()
        r.SetFileNames(names)
        img = r.Execute()
        t1 = time.perf_counter()
        shape = tuple(reversed(img.GetSize()))
        nbytes = img.GetNumberOfPixels() * img.GetSizeOfPixelComponent() * \
            img.GetNumberOfComponentsPerPixel()
        dtype = img.GetPixelIDTypeAsString()
    if exact:
        peak_kb = _status_kb("VmHWM")
    else:  # no clear_refs: fall back to the lifetime maximum (over-estimates imports)
        peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, maxrss0)
    out = {"seconds": t1 - t0, "peak_bytes": max(peak_kb - rss0, 0) * 1024,
           "nbytes": int(nbytes), "shape": list(shape), "dtype": dtype, "exact_peak": exact}
    if reader == "sitk":
        out["read_seconds"] = t1 - t_disc
    return out


def measure(reader: str, folder: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, __file__, "--worker", reader, folder],
                         capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{reader} on {folder} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----- the table ---------------------------------------------------------------------------
def run_case(name: str, folder: str, runs: int) -> dict:
    measure("medplib", folder)  # page cache warm-up, discarded
    results: dict[str, list[dict]] = {"medplib": [], "sitk": []}
    for _ in range(runs):
        for reader in ("medplib", "sitk"):
            results[reader].append(measure(reader, folder))
    med = {r: statistics.median(x["seconds"] for x in v) for r, v in results.items()}
    peak = {r: max(x["peak_bytes"] for x in v) for r, v in results.items()}
    read_only = statistics.median(x["read_seconds"] for x in results["sitk"])
    m0 = results["medplib"][0]
    return {"case": name, "shape": "x".join(map(str, m0["shape"])), "dtype": m0["dtype"],
            "nbytes": m0["nbytes"], "medplib_s": med["medplib"], "sitk_s": med["sitk"],
            "sitk_read_s": read_only, "ratio": med["medplib"] / med["sitk"],
            "medplib_peak": peak["medplib"], "sitk_peak": peak["sitk"],
            "peak_ratio": peak["medplib"] / m0["nbytes"],
            "runs": runs, "exact_peak": m0["exact_peak"]}


def print_table(rows: list[dict]) -> None:
    head = ("case", "shape (k,j,i)", "dtype", "medplib s", "sitk s", "ratio", "sitk read s",
            "medplib peak MB", "sitk peak MB", "volume MB", "peak/volume")
    lines = [head]
    for r in rows:
        mb = 1024 * 1024
        lines.append((r["case"], r["shape"], r["dtype"], f"{r['medplib_s']:.3f}",
                      f"{r['sitk_s']:.3f}", f"{r['ratio']:.2f}", f"{r['sitk_read_s']:.3f}",
                      f"{r['medplib_peak'] / mb:.1f}", f"{r['sitk_peak'] / mb:.1f}",
                      f"{r['nbytes'] / mb:.1f}", f"{r['peak_ratio']:.2f}"))
    widths = [max(len(str(line[c])) for line in lines) for c in range(len(head))]
    for n, line in enumerate(lines):
        print("| " + " | ".join(str(v).ljust(w) for v, w in zip(line, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(f"\nmedians of {rows[0]['runs']} runs each (fresh process per run, readers "
          "alternating); ratio = medplib / SimpleITK (discovery + read); peak = max RSS growth"
          f" during the load ({'VmHWM after clear_refs' if rows[0]['exact_peak'] else 'ru_maxrss'}"
          "); goal: ratio <= 1.2, peak/volume <= 2.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--keep", help="write (or reuse) the synthetic series in this folder")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    rows = []
    shared = Path(os.environ.get("MEDPLIB_SHARED_DATA", REPO.parent / "shared" / "data"))
    j2k = shared / "volumes" / "ct_series_j2k"
    if j2k.is_dir():
        rows.append(run_case("ct_series_j2k (JPEG 2000)", str(j2k), args.runs))
    else:
        print(f"({j2k} not found: skipping the JPEG 2000 case)")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medplib_bench_"))
    try:
        if not (tmp.is_dir() and len(list(tmp.glob("*.dcm"))) == args.slices):
            write_ct_series(tmp, n_slices=args.slices)
        rows.append(run_case(f"synthetic {args.slices} slices (uncompressed)", str(tmp),
                             args.runs))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
