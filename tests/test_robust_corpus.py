"""A generated corpus of damaged scans, each loaded in a bounded child process (issue 19).

Real files (pydicom's test files, and NIfTI/PNG/TIFF/JPEG/BMP written here) are truncated,
bit-flipped and given huge declared sizes. Every load must end in a Volume or a LoadError: no
other exception, no hang past 30 s, no more than 2 GB.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from harness.bounded import GB, run_bounded
from pydicom.data import get_testdata_file
from robust_inputs import byte_flips, nifti_with_affine, truncations

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DICOM_SOURCES = ["CT_small.dcm", "MR_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
                 "JPEG2000.dcm", "JPEG-lossy.dcm", "JPGExtended.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle_16bit.dcm", "examples_palette.dcm",
                 "rtdose.dcm", "eCT_Supplemental.dcm", "liver_1frame.dcm", "image_dfl.dcm",
                 "ExplVR_BigEnd.dcm", "SC_ybr_full_422_uncompressed.dcm"]


def _images(folder: Path) -> list[Path]:
    """Real 2D images and NIfTI volumes written with the usual libraries."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(7)
    grey = (rng.random((48, 64)) * 255).astype(np.uint8)
    rgb = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    out = []
    for name, arr, kw in (("grey.png", grey, {}), ("rgb.jpg", rgb, {"quality": 90}),
                          ("grey.tif", grey, {"compression": "tiff_deflate"}),
                          ("rgb.bmp", rgb, {})):
        Image.fromarray(arr).save(folder / name, **kw)
        out.append(folder / name)
    cv2.imwrite(str(folder / "rgb16.png"), (rng.random((30, 40, 3)) * 65535).astype(np.uint16))
    out.append(folder / "rgb16.png")
    vol = (rng.random((6, 7, 8)) * 1000).astype(np.float32)
    out.append(nifti_with_affine(folder / "vol.nii.gz", np.diag([0.8, 0.9, 2.5, 1.0]), vol))
    import nibabel as nib

    nib.save(nib.Nifti1Image((vol * 10).astype(np.int16), np.diag([1.0, 1.0, 3.0, 1.0])),
             str(folder / "vol16.nii"))
    out.append(folder / "vol16.nii")
    return out


def _pixel_start(data: bytes) -> int:
    at = data.rfind(b"\xe0\x7f\x10\x00")
    return at if at > 0 else len(data) // 2


def _huge_dicom(src: str, folder: Path) -> list[Path]:
    """The same file declaring far more rows and columns than it holds."""
    out = []
    for rows, cols in ((65535, 65535), (40000, 40000), (1, 65535)):
        ds = pydicom.dcmread(get_testdata_file(src))
        ds.Rows, ds.Columns = rows, cols
        p = folder / f"huge_{rows}x{cols}_{src}"
        ds.save_as(p)
        out.append(p)
    return out


def _huge_png(folder: Path) -> Path:
    """A real 8-bit PNG whose IHDR (with a valid CRC) claims 60000 × 60000 pixels."""
    data = bytearray((folder / "grey.png").read_bytes())
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", 60000, 60000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    p = folder / "huge.png"
    p.write_bytes(bytes(data))
    return p


def _huge_nifti(folder: Path) -> Path:
    data = bytearray((folder / "vol16.nii").read_bytes())
    data[40:56] = struct.pack("<8h", 3, 30000, 30000, 30000, 1, 1, 1, 1)
    p = folder / "huge.nii"
    p.write_bytes(bytes(data))
    return p


def _corpus(folder: Path) -> list[Path]:
    sources = [Path(get_testdata_file(n)) for n in DICOM_SOURCES] + _images(folder)
    paths: list[Path] = []
    for n, src in enumerate(sources):
        data = src.read_bytes()
        suffix = "".join(src.suffixes) or ".dcm"
        stem = src.name[: -len(suffix)] if suffix else src.name
        variants = truncations(data, (0.05, 0.5, 0.9, 0.995))
        start = _pixel_start(data) if suffix == ".dcm" else 0
        variants += [byte_flips(data, seed=100 * n + s, count=c, start=st)
                     for s, (c, st) in enumerate(((8, 0), (3, 128), (30, start), (200, start)))]
        for m, blob in enumerate(variants):
            p = folder / f"{stem}.v{m}{suffix}"
            p.write_bytes(blob)
            paths.append(p)
    for src in ("CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"):
        paths += _huge_dicom(src, folder)
    paths += [_huge_png(folder), _huge_nifti(folder)]
    return paths


def test_damaged_corpus_never_escapes_hangs_or_eats_memory(tmp_path) -> None:
    paths = _corpus(tmp_path)
    assert len(paths) > 150
    jobs = [{"id": p.name, "call": "medplib_core.io.loader:load", "args": [str(p)]} for p in paths]
    outcomes = run_bounded(jobs, timeout_s=30, mem_bytes=2 * GB,
                           env={"MEDPLIB_MAX_VOXEL_BYTES": "1G"})
    assert len(outcomes) == len(paths)
    bad = [str(o) for o in outcomes if not o.clean or o.seconds > 30 or o.peak_bytes > 2 * GB]
    assert not bad, "\n".join(bad)
    refused = [o for o in outcomes if not o.ok]
    assert all(o.type == "LoadError" and o.id in o.message for o in refused), \
        [str(o) for o in refused if o.type != "LoadError" or o.id not in o.message]
    huge = [o for o in outcomes if o.id.startswith("huge")]
    assert huge and all(not o.ok for o in huge), [str(o) for o in huge]
    slowest = max(outcomes, key=lambda o: o.seconds)
    heaviest = max(outcomes, key=lambda o: o.peak_bytes)
    print(f"\n{len(outcomes)} loads, {len(refused)} refused; slowest {slowest}; heaviest {heaviest}")
