"""Hostile scans: every load ends in a Volume or a LoadError, within 30 s and 2 GB (issue 19,
items 1-5 and 13.9). Loads that could hang or blow up memory run in a bounded child process."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pydicom
import pytest
from harness.bounded import GB, run_bounded
from pydicom.data import get_testdata_file
from robust_inputs import (declared_frames_dicom, deflated_dicom_bomb, gzip_bomb_nifti,
                           nifti_declaring, nifti_with_affine, png16_rgb_bomb, rle_panic_dicom,
                           tiff_bomb)
from test_io_support import ct_dataset

from medplib_core.errors import CancelledError, GeometryError, LoadError
from medplib_core.io import load
from medplib_core.volume import Volume

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LOAD = "medplib_core.io.loader:load"


def _bounded(paths, env=None, timeout_s=30.0):
    jobs = [{"id": str(p), "call": LOAD, "args": [str(p)]} for p in paths]
    return run_bounded(jobs, timeout_s=timeout_s, mem_bytes=2 * GB, env=env)


def _assert_refused(outcomes, *words) -> None:
    for o in outcomes:
        assert o.clean and not o.ok, str(o)
        assert o.type == "LoadError", str(o)
        assert o.seconds < 30 and o.peak_bytes < 2 * GB, str(o)
        for w in words:
            assert w in o.message, str(o)


# ----- 1. a native decoder's panic ---------------------------------------------------------------
def test_rust_decoder_panic_becomes_a_load_error(tmp_path) -> None:
    path = rle_panic_dicom(tmp_path / "rle_panic.dcm")
    with pytest.raises(LoadError) as info:
        load(path)
    assert str(path) in str(info.value) and "could not decode" in str(info.value)
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(path.read_bytes())
    with pytest.raises(LoadError):
        load(folder)


def test_info_cli_prints_no_traceback_on_a_panic(tmp_path) -> None:
    import subprocess

    path = rle_panic_dicom(tmp_path / "rle_panic.dcm")
    res = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "info", str(path)],
                         capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]),
                         env={**__import__("os").environ, "RUST_BACKTRACE": "0"})
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and "could not decode" in res.stderr + res.stdout


# ----- 2. declared frames against the data -------------------------------------------------------
@pytest.mark.parametrize("source", [None, "MR_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"])
def test_a_million_or_two_billion_declared_frames_fail_fast(tmp_path, source) -> None:
    paths = [declared_frames_dicom(tmp_path / f"frames_{n}.dcm", n, source)
             for n in (1_000_000, 2**31 - 1)]
    outcomes = _bounded(paths)
    _assert_refused(outcomes, "declares", "frames")
    assert all(o.seconds < 5 for o in outcomes), [str(o) for o in outcomes]


def _enhanced_frames(path, n: int):
    """An enhanced CT with ``n`` one-pixel frames (walking its frames is the whole work)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = ct_dataset(path, ipp=(0, 0, 0), rows=1, cols=1)
    ds.NumberOfFrames = n
    per = []
    for m in range(n):
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, float(m)]
        item.PlanePositionSequence = Sequence([pos])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.zeros(n, "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_cancel_is_polled_while_walking_the_frames(tmp_path) -> None:
    path = _enhanced_frames(tmp_path / "many.dcm", 3000)
    polls, progress = [0], []

    def cancel():
        polls[0] += 1
        return polls[0] > 500  # the user presses Cancel while the frame headers are read

    with pytest.raises(CancelledError):
        load(path, progress=lambda d, t: progress.append(d), cancel=cancel)
    assert not progress, "cancel was not polled before the first frame was decoded"
    assert load(path).shape == (3000, 1, 1)


# ----- 3. memory: the declared size is checked before allocating -----------------------------
def test_nifti_declaring_two_thousand_cubed_is_refused_before_reading(tmp_path) -> None:
    path = nifti_declaring(tmp_path / "x.nii.gz", (2000, 2000, 2000))
    assert path.stat().st_size < 100_000
    (o,) = _bounded([path])
    _assert_refused([o], "2000×2000×2000", "16 GB", "MEDPLIB_MAX_VOXEL_BYTES")
    assert o.peak_bytes < 300e6, str(o)


def test_bombs_are_refused_with_the_limit_that_stopped_them(tmp_path) -> None:
    bombs = [
        gzip_bomb_nifti(tmp_path / "gzip_bomb.nii.gz", (640, 640, 640)),  # 262 MB of zeros
        png16_rgb_bomb(tmp_path / "rgb16.png", 7000, 7000),  # 294 MB through OpenCV
        tiff_bomb(tmp_path / "bomb.tif", 14000, 14000),  # 196 Mpixel: Pillow's bomb error
        deflated_dicom_bomb(tmp_path / "deflated.dcm", 4096, 4096, 8),  # inflates to 268 MB
    ]
    assert all(p.stat().st_size < 2_000_000 for p in bombs)
    outcomes = _bounded(bombs, env={"MEDPLIB_MAX_VOXEL_BYTES": "100M"})
    _assert_refused(outcomes, "MEDPLIB_MAX_VOXEL_BYTES")
    for o in outcomes:
        assert o.peak_bytes < 200e6, str(o)


def test_the_voxel_limit_is_configurable(tmp_path, monkeypatch) -> None:
    path = gzip_bomb_nifti(tmp_path / "zeros.nii.gz", (64, 64, 64))
    monkeypatch.setenv("MEDPLIB_MAX_VOXEL_BYTES", "100k")
    with pytest.raises(LoadError, match="262 kB.*limit of 100 kB"):
        load(path)
    monkeypatch.setenv("MEDPLIB_MAX_VOXEL_BYTES", "1M")
    assert load(path).shape == (64, 64, 64)


def test_a_legitimate_deflated_file_still_loads() -> None:
    vol = load(get_testdata_file("image_dfl.dcm"))
    assert vol.shape == (1, 512, 512)


# ----- 4. geometry of RT Dose and of one-frame enhanced objects -----------------------------
@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm"])
def test_rt_dose_grid_from_grid_frame_offsets(name) -> None:
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    vol = load(path)
    offsets = np.asarray(ds.GridFrameOffsetVector, float)
    assert vol.shape[0] == len(offsets) == 15
    np.testing.assert_allclose(vol.origin, np.asarray(ds.ImagePositionPatient, float))
    np.testing.assert_allclose(vol.spacing[2], 5.0)
    for k in (0, 7, 14):  # every plane where the offsets put it
        np.testing.assert_allclose(vol.index_to_world([0, 0, k]),
                                   np.asarray(ds.ImagePositionPatient, float) + [0, 0, offsets[k]])


def test_one_frame_seg_keeps_its_geometry() -> None:
    path = get_testdata_file("liver_1frame.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    pos = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    vol = load(path)
    np.testing.assert_allclose(vol.origin, np.asarray(pos, float))
    np.testing.assert_allclose(vol.spacing, (0.810547, 0.810547, 1.0))


def test_one_frame_enhanced_ct_matches_its_two_frame_original(tmp_path) -> None:
    src = get_testdata_file("eCT_Supplemental.dcm")
    two = load(src)
    ds = pydicom.dcmread(src)
    frame = ds.pixel_array[0]
    ds.NumberOfFrames = 1
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([ds.PerFrameFunctionalGroupsSequence[0]])
    ds.PixelData = frame.tobytes()
    ds.save_as(tmp_path / "one.dcm")
    one = load(tmp_path / "one.dcm")
    k = int(np.argmin([abs(two.index_to_world([0, 0, m])[2] - one.origin[2]) for m in range(2)]))
    np.testing.assert_allclose(one.origin, two.index_to_world([0, 0, k]), atol=1e-4)
    np.testing.assert_allclose(one.spacing[:2], two.spacing[:2])
    np.testing.assert_allclose(one.direction, two.direction)
    np.testing.assert_array_equal(one.array[0], two.array[k])


# ----- 5. impossible geometry and non-finite voxels -------------------------------------------
@pytest.mark.parametrize("bad", ["nan_origin", "inf_origin", "nan_rotation", "denormal_spacing",
                                 "singular"])
def test_impossible_nifti_geometry_is_refused_at_load(tmp_path, bad) -> None:
    aff = np.eye(4)
    if bad == "nan_origin":
        aff[0, 3] = np.nan
    elif bad == "inf_origin":
        aff[2, 3] = np.inf
    elif bad == "nan_rotation":
        aff[:3, :3] = np.nan
    elif bad == "denormal_spacing":
        aff[0, 0] = 4.6e-41
    else:
        aff[:3, :3] = 0.0
    path = nifti_with_affine(tmp_path / f"{bad}.nii.gz", aff)
    with pytest.raises(LoadError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert any(w in str(info.value) for w in ("geometry", "sform", "qform", "orthogonal")), info.value


def test_volume_refuses_impossible_geometry() -> None:
    arr = np.zeros((2, 3, 4), np.int16)
    with pytest.raises(GeometryError, match="origin"):
        Volume(arr, origin=(float("nan"), 0, 0))
    with pytest.raises(GeometryError, match="spacing"):
        Volume(arr, spacing=(4.6e-41, 1, 1))
    with pytest.raises(GeometryError, match="direction"):
        Volume(arr, direction=np.diag([2.0, 1.0, 1.0]))
    assert isinstance(GeometryError("x"), ValueError)


def test_nan_and_inf_voxels_are_replaced_and_said(tmp_path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    data[0, 0, 0], data[1, 2, 3], data[3, 4, 5] = np.nan, np.inf, -np.inf
    import SimpleITK as sitk

    path = nifti_with_affine(tmp_path / "nan.nii.gz", np.eye(4), data)
    vol = load(path)
    assert np.all(np.isfinite(vol.array))
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
    assert vol.array[0, 0, 0] == 0 and vol.array[3, 2, 1] == 0
    assert vol.array[5, 4, 2] == data[2, 4, 5]
    assert any("3 voxel(s) held NaN or infinite values" in n for n in vol.source.notes)
    clean = load(nifti_with_affine(tmp_path / "clean.nii.gz", np.eye(4)))
    assert not any("NaN" in n for n in clean.source.notes)


# ----- 13.9: single-slice thickness; no millimetres, no millilitres --------------------------------
def test_single_slice_uses_slice_thickness_not_spacing_between_slices(tmp_path) -> None:
    p = tmp_path / "one.dcm"
    ds = ct_dataset(p, ipp=(0, 0, 0), rows=16, cols=16, spacing=(0.5, 0.5),
                    SliceThickness=5.0, SpacingBetweenSlices=20.0)
    ds.save_as(p, enforce_file_format=True)
    vol = load(p)
    assert vol.spacing[2] == 5.0 and vol.physical_spacing
    assert vol.voxel_volume_ml == pytest.approx(0.5 * 0.5 * 5.0 / 1000)


def test_a_png_has_no_millimetres(tmp_path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    vol = load(tmp_path / "a.png")
    assert not vol.physical_spacing and vol.voxel_volume_ml is None
    p = tmp_path / "nospacing.dcm"
    ds = ct_dataset(p, ipp=(0, 0, 0), SliceThickness=2.0)
    del ds.PixelSpacing
    ds.save_as(p, enforce_file_format=True)
    assert load(p).voxel_volume_ml is None
    assert load(get_testdata_file("CT_small.dcm")).physical_spacing


def test_gzip_helper_writes_what_it_declares(tmp_path) -> None:
    path = gzip_bomb_nifti(tmp_path / "z.nii.gz", (8, 8, 8))
    assert len(gzip.decompress(path.read_bytes())) == 352 + 512


def test_label_volumes_in_ml_only_with_millimetres(tmp_path) -> None:
    import json

    from PIL import Image

    from medplib_core.annotation import LabelMap, LabelSet
    from medplib_core.export import write_nifti_labels, write_png_labels

    p = tmp_path / "one.dcm"
    ct_dataset(p, ipp=(0, 0, 0), rows=16, cols=16, spacing=(0.5, 0.5), SliceThickness=5.0,
               SpacingBetweenSlices=20.0).save_as(p, enforce_file_format=True)
    ct = load(p)
    labels = LabelSet()
    labels.add("lesion")
    lm = LabelMap(ct.shape, labels)
    lm.array[0, :4, :5] = 1
    assert lm.volumes_ml(ct) == pytest.approx({1: 20 * 1.25 / 1000})  # 20 voxels of 1.25 mm³
    assert lm.volumes_ml((0.5, 0.5, 5.0)) == pytest.approx({1: 0.025})
    side = json.loads(write_nifti_labels(tmp_path / "ct.nii.gz", lm.array, ct, labels)
                      .with_name("ct.json").read_text())
    assert side["labels"][0]["volume_ml"] == pytest.approx(0.025)

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    png = load(tmp_path / "a.png")
    lm2 = LabelMap(png.shape, labels, array=lm.array.copy())
    assert lm2.volumes_ml(png) is None
    written = write_png_labels(tmp_path / "mask.png", lm2.array, png, labels)
    side = json.loads(written[-1].read_text())
    assert side["labels"][0]["voxels"] == 20 and side["labels"][0]["volume_ml"] is None
    assert side["geometry"]["physical_spacing"] is False
