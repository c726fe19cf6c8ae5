"""Label statistics against SimpleITK's label filters on the shared volumes; RECIST diameters;
the `stats` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medplib_core import load
from medplib_core.analysis.diameters import in_plane_diameters
from medplib_core.analysis.stats import TABLE_COLUMNS, label_statistics
from medplib_core.export import import_labels
from medplib_core.volume import SourceInfo, Volume

REPO = Path(__file__).resolve().parents[1]
CASES = [("ct_small_abdomen.nii.gz", "ct_small_abdomen_labels.nii.gz"),
         ("mr_small_abdomen.nii.gz", "mr_small_abdomen_labels.nii.gz"),
         ("ct_series_j2k", "ct_series_j2k_labels.nii.gz")]


def _sitk_scan(path: Path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def _sitk_labels_on(scan: sitk.Image, label_path: Path) -> sitk.Image:
    """SimpleITK's own world placement of the label file on the scan (nearest neighbour)."""
    lab = sitk.ReadImage(str(label_path))
    return sitk.Resample(lab, scan, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)


@pytest.mark.shared_data
@pytest.mark.parametrize("scan_name,label_name", CASES)
def test_statistics_match_simpleitk_label_filters(shared_data, scan_name, label_name):
    folder = shared_data / "volumes"
    vol = load(folder / scan_name)
    imported = import_labels(folder / label_name, vol)
    stats = label_statistics(vol, imported.array, imported.labels)
    scan = _sitk_scan(folder / scan_name)
    lab = _sitk_labels_on(scan, folder / label_name)
    intensity = sitk.LabelStatisticsImageFilter()
    intensity.Execute(scan, lab)
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(lab)
    assert [s.label for s in stats] == sorted(int(v) for v in shape.GetLabels())
    assert len(stats) > 10
    names = json.loads((folder / label_name.replace(".nii.gz", ".json")).read_text())["labels_present"]
    for s in stats:
        v = s.label
        assert s.name == names[str(v)]
        assert s.voxels == intensity.GetCount(v) == shape.GetNumberOfPixels(v)
        assert s.volume_ml == pytest.approx(shape.GetPhysicalSize(v) / 1000.0, rel=1e-9)
        assert s.mean == pytest.approx(intensity.GetMean(v), rel=1e-9, abs=1e-9)
        assert s.sd == pytest.approx(intensity.GetSigma(v), rel=1e-7, abs=1e-9)
        assert (s.min, s.max) == (intensity.GetMinimum(v), intensity.GetMaximum(v))
        x0, x1, y0, y1, z0, z1 = intensity.GetBoundingBox(v)
        assert s.bbox_min_ijk == (x0, y0, z0) and s.bbox_max_ijk == (x1, y1, z1)
        np.testing.assert_allclose(s.centroid_world, shape.GetCentroid(v), atol=1e-6)
        assert s.units == vol.units


def _feret_2d(plane: np.ndarray, spacing2: tuple[float, float]) -> float:
    img = sitk.GetImageFromArray(plane.astype(np.uint8))
    img.SetSpacing(spacing2)
    f = sitk.LabelShapeStatisticsImageFilter()
    f.ComputeFeretDiameterOn()
    f.Execute(img)
    return f.GetFeretDiameter(1) if 1 in f.GetLabels() else 0.0


@pytest.mark.shared_data
def test_long_axis_is_the_largest_axial_feret_diameter(shared_data):
    folder = shared_data / "volumes"
    vol = load(folder / "ct_small_abdomen.nii.gz")
    labels = import_labels(folder / "ct_small_abdomen_labels.nii.gz", vol).array
    for value in (1, 2, 5, 7, 52):  # spleen, kidney, liver, pancreas, aorta
        mask = labels == value
        d = in_plane_diameters(mask, vol, "axial")
        ferets = [_feret_2d(mask[k], vol.spacing[:2]) for k in range(vol.shape[0])]
        assert d.long == pytest.approx(max(ferets), rel=1e-9)
        assert d.long == pytest.approx(ferets[d.slice_index], rel=1e-9)
        assert np.linalg.norm(d.long_ends[1] - d.long_ends[0]) == pytest.approx(d.long)
        u = (d.long_ends[1] - d.long_ends[0]) / d.long
        w = d.short_ends[1] - d.short_ends[0]
        assert abs(w @ u) < 1e-6 and np.linalg.norm(w) == pytest.approx(d.short)
        assert 0 < d.short <= d.long
        for end in np.concatenate([d.long_ends, d.short_ends]):  # every end lies on that slice
            i, j, k = vol.world_to_index(end)
            assert k == pytest.approx(d.slice_index, abs=1e-6)
        for end in d.long_ends:  # long-axis ends are voxel centres of the mask
            i, j, k = np.round(vol.world_to_index(end)).astype(int)
            assert mask[k, j, i]


def _oblique() -> np.ndarray:
    a, b = np.deg2rad(30.0), np.deg2rad(-20.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rz @ ry


def test_ellipse_axes_on_an_oblique_anisotropic_grid():
    """An elliptic cylinder with semi-axes 30 and 12 mm in the slice plane: long 60, short 24."""
    vol = Volume(np.zeros((12, 160, 240), np.int16), spacing=(0.4, 0.7, 3.0), origin=(5, -8, 20),
                 direction=_oblique(), modality="CT", units="HU")
    k, j, i = np.indices(vol.shape)
    x, y = (i - 120) * 0.4, (j - 80) * 0.7  # in-plane mm along the i and j axes
    t = np.deg2rad(35.0)
    xr, yr = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    mask = (xr / 30.0) ** 2 + (yr / 12.0) ** 2 <= 1.0
    mask[:3] = False
    d = in_plane_diameters(mask, vol, "axial")
    assert d.unit == "mm"
    assert d.long == pytest.approx(60.0, abs=0.8)
    assert d.short == pytest.approx(24.0, abs=0.8)
    u = (d.long_ends[1] - d.long_ends[0]) / d.long
    major = vol.direction @ np.array([np.cos(t), np.sin(t), 0.0])  # world direction of the major axis
    assert abs(u @ major) > 0.999
    stats = label_statistics(vol, mask.astype(np.uint8))[0]
    assert stats.volume_ml == pytest.approx(np.pi * 30 * 12 * 9 * 3.0 / 1000.0, rel=0.02)
    np.testing.assert_allclose(stats.centroid_world, vol.index_to_world([120, 80, 7.0]), atol=0.05)


def test_image_without_physical_spacing_has_no_volume():
    arr = np.random.default_rng(0).integers(0, 255, (1, 40, 50)).astype(np.uint8)
    vol = Volume(arr, source=SourceInfo(path="photo.png", kind="image"))
    labels = np.zeros(vol.shape, np.uint8)
    labels[0, 5:15, 10:30] = 3
    s = label_statistics(vol, labels)[0]
    assert s.label == 3 and s.voxels == 200 and s.volume_ml is None
    assert s.mean == pytest.approx(arr[0, 5:15, 10:30].mean())
    assert s.diameters.unit == "px" and s.diameters.long == pytest.approx(np.hypot(9, 19))


def test_bad_label_arrays_are_refused():
    from medplib_core.errors import MedplibError

    vol = Volume(np.zeros((3, 4, 5), np.int16))
    with pytest.raises(MedplibError, match="grid"):
        label_statistics(vol, np.zeros((3, 4, 6), np.uint8))
    with pytest.raises(MedplibError, match="integers"):
        label_statistics(vol, np.zeros((3, 4, 5), np.float32))
    assert label_statistics(vol, np.zeros((3, 4, 5), np.uint16)) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "stats", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.shared_data
def test_stats_cli_table_and_json(shared_data):
    folder = shared_data / "volumes"
    labels, scan = folder / "ct_series_j2k_labels.nii.gz", folder / "ct_series_j2k"
    res = _cli(str(labels), "--reference", str(scan), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["units"] == "HU" and data["physical_spacing"] is True
    rows = {r["label"]: r for r in data["labels"]}
    assert set(TABLE_COLUMNS) <= set(rows[5])
    assert rows[5]["name"] == "liver"
    vol = load(scan)
    lab = sitk.GetArrayFromImage(_sitk_labels_on(_sitk_scan(scan), labels))
    liver = vol.array[lab == 5]
    assert rows[5]["voxels"] == liver.size
    assert rows[5]["volume_ml"] == pytest.approx(liver.size * 0.9765625 ** 2 * 2.0 / 1000.0)
    assert rows[5]["mean"] == pytest.approx(liver.mean())
    assert rows[5]["diameters"]["unit"] == "mm"
    table = _cli(str(labels), "--reference", str(scan))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    head = next(n for n, line in enumerate(lines) if line.lstrip().startswith("label"))
    assert lines[head].split()[:5] == ["label", "name", "voxels", "volume_ml", "mean"]
    assert len(lines) - head - 1 == len(rows)
    liver_line = next(line.split() for line in lines[head + 1:] if line.split()[1] == "liver")
    assert int(liver_line[2]) == liver.size and float(liver_line[4]) == pytest.approx(liver.mean(), abs=0.01)


def test_stats_cli_names_a_missing_file(tmp_path):
    res = _cli(str(tmp_path / "nope.nii.gz"), "--reference", str(tmp_path / "scan.nii.gz"))
    assert res.returncode == 1
    assert "scan.nii.gz" in res.stderr and "Traceback" not in res.stderr
