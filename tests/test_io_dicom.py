"""DICOM series assembly on small synthetic series: sorting, geometry, notes, series choice."""

from __future__ import annotations

import numpy as np
import pytest
from test_io_support import ct_dataset, write_series

from medplib_core.errors import CancelledError, LoadError
from medplib_core.io import list_series, load

OBLIQUE_IOP = (0.8660254, 0.5, 0.0, 0.0, 0.0, -1.0)  # rows toward L/P, columns toward I


def test_sorted_by_position_not_by_name(tmp_path) -> None:
    zs = [4.0, 0.0, 8.0, 2.0, 6.0]
    names = ["a.dcm", "b.dcm", "c.dcm", "d.dcm", "e.dcm"]
    write_series(tmp_path, zs, names=names)
    vol = load(tmp_path)
    assert vol.shape == (5, 8, 10)
    assert [p.rsplit("/", 1)[-1] for p in vol.source.files] == ["b.dcm", "d.dcm", "a.dcm",
                                                                  "e.dcm", "c.dcm"]
    # slice m was written with stored value 1001 + m; HU = stored - 1024
    np.testing.assert_array_equal(vol.array[:, 0, 0], [-22, -20, -23, -19, -21])
    assert vol.array.dtype == np.int16 and vol.units == "HU" and vol.modality == "CT"
    np.testing.assert_allclose(vol.spacing, (0.75, 0.5, 2.0))
    np.testing.assert_allclose(vol.origin, (-10.0, 5.0, 0.0))
    np.testing.assert_allclose(vol.direction, np.eye(3))
    assert vol.source.notes == []
    assert len(set(vol.source.sop_instance_uids)) == 5


def test_oblique_geometry_matches_positions(tmp_path) -> None:
    paths = write_series(tmp_path, [3.0, 0.0, 1.5, 4.5], iop=OBLIQUE_IOP, spacing=(0.6, 0.9))
    vol = load(tmp_path)
    row, col = np.array(OBLIQUE_IOP[:3]), np.array(OBLIQUE_IOP[3:])
    np.testing.assert_allclose(vol.direction[:, 0], row, atol=1e-6)
    np.testing.assert_allclose(vol.direction[:, 1], col, atol=1e-6)
    np.testing.assert_allclose(vol.direction[:, 2], np.cross(row, col), atol=1e-6)
    np.testing.assert_allclose(vol.spacing, (0.9, 0.6, 1.5))
    import pydicom

    for k, f in enumerate(vol.source.files):
        ipp = np.array(pydicom.dcmread(f).ImagePositionPatient, float)
        np.testing.assert_allclose(vol.index_to_world((0, 0, k)), ipp, atol=1e-5)
        # the column direction really is (0, 0, -1) per row step
        np.testing.assert_allclose(vol.index_to_world((0, 1, k)) - ipp, [0, 0, -0.6], atol=1e-6)
    assert len(paths) == 4


def test_matches_simpleitk(tmp_path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    write_series(tmp_path, [0.0, 2.5, 5.0, 7.5], iop=OBLIQUE_IOP)
    vol = load(tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    img = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.array)
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), vol.direction, atol=1e-6)


def test_gap_and_uneven_spacing_are_noted(tmp_path) -> None:
    write_series(tmp_path / "gap", [0, 2, 4, 8, 10, 12])
    vol = load(tmp_path / "gap")
    assert vol.spacing[2] == pytest.approx(2.0)
    assert any("gap" in n for n in vol.source.notes)
    write_series(tmp_path / "uneven", [0, 2, 4.6, 6.6])
    vol = load(tmp_path / "uneven")
    assert any("uneven" in n for n in vol.source.notes)


def test_duplicate_positions_keep_first_and_note(tmp_path) -> None:
    write_series(tmp_path, [0, 0, 2, 2, 4, 4])
    vol = load(tmp_path)
    assert vol.shape[0] == 3
    np.testing.assert_array_equal(vol.array[:, 0, 0], [-23, -21, -19])  # instances 1, 3, 5
    assert any("repeat the position" in n for n in vol.source.notes)


def test_several_series_list_and_pick(tmp_path) -> None:
    write_series(tmp_path, [0, 1, 2], series_uid="1.2.3.1", names=["s1_0", "s1_1", "s1_2"])
    write_series(tmp_path, [0, 1, 2, 3, 4], series_uid="1.2.3.2",
                 names=[f"s2_{m}" for m in range(5)], rows=6, cols=6)
    (tmp_path / "notes.txt").write_text("not dicom")
    series = list_series(tmp_path)
    assert [s.uid for s in series] == ["1.2.3.1", "1.2.3.2"] or \
        [s.uid for s in series] == ["1.2.3.2", "1.2.3.1"]
    by_uid = {s.uid: s for s in series}
    assert by_uid["1.2.3.2"].n_files == 5 and by_uid["1.2.3.1"].n_files == 3
    assert by_uid["1.2.3.1"].modality == "CT" and by_uid["1.2.3.1"].size_bytes > 0
    assert series[0].description == "synthetic"
    vol = load(tmp_path)  # largest by voxels: 3x8x10=240 > 5x6x6=180
    assert vol.source.series_instance_uid == series[0].uid
    assert any("2 series" in n for n in vol.source.notes)
    assert any("non-DICOM" in n for n in vol.source.notes)
    vol = load(tmp_path, series="1.2.3.2")
    assert vol.shape == (5, 6, 6)
    vol = load(tmp_path, series=1)
    assert vol.source.series_instance_uid == series[1].uid
    with pytest.raises(LoadError, match="no series"):
        load(tmp_path, series="9.9.9")
    with pytest.raises(LoadError, match="out of range"):
        load(tmp_path, series=5)


def test_single_file_and_window(tmp_path) -> None:
    p = tmp_path / "one.dcm"
    ds = ct_dataset(p, ipp=(1, 2, 3), WindowCenter=[40, 400], WindowWidth=[350, 2000],
                    SliceThickness=1.25)
    ds.save_as(p, enforce_file_format=True)
    vol = load(p)
    assert vol.shape == (1, 8, 10) and vol.window == (40.0, 350.0)
    assert vol.spacing[2] == pytest.approx(1.25)
    assert vol.source.files == [str(p)]


def test_float_rescale_and_monochrome1(tmp_path) -> None:
    px = np.arange(80, dtype=np.uint16).reshape(8, 10)
    p = tmp_path / "f.dcm"
    ct_dataset(p, ipp=(0, 0, 0), pixels=px, slope=0.5, intercept=1.25,
               modality="MR").save_as(p, enforce_file_format=True)
    vol = load(p)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array[0], px * 0.5 + 1.25)
    p1 = tmp_path / "m1.dcm"
    ct_dataset(p1, ipp=(0, 0, 0), pixels=px, slope=1, intercept=0, modality="CR",
               photometric="MONOCHROME1").save_as(p1, enforce_file_format=True)
    vol = load(p1)
    np.testing.assert_array_equal(vol.array[0], 4095 - px.astype(np.int64))
    assert any("MONOCHROME1" in n for n in vol.source.notes)


def test_progress_and_cancel(tmp_path) -> None:
    write_series(tmp_path, [0, 1, 2, 3])
    calls: list[tuple[int, int]] = []
    load(tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(0 <= d <= t for d, t in calls)
    n = {"polls": 0}

    def cancel() -> bool:
        n["polls"] += 1
        return n["polls"] > 3

    with pytest.raises(CancelledError):
        load(tmp_path, cancel=cancel)


def test_gantry_tilt_is_noted(tmp_path) -> None:
    from pydicom.uid import generate_uid

    uid = generate_uid()
    for m in range(4):
        p = tmp_path / f"t{m}.dcm"
        # each slice 2 mm higher and 0.35 mm further posterior: a 10 degree tilt
        ct_dataset(p, ipp=(0.0, 0.35 * m, 2.0 * m), series_uid=uid, instance=m + 1) \
            .save_as(p, enforce_file_format=True)
    vol = load(tmp_path)
    assert vol.spacing[2] == pytest.approx(2.0)
    assert any("tilt" in n for n in vol.source.notes)
