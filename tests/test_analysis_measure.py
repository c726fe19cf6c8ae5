"""Ruler and ROI measurements: world lengths on anisotropic/oblique views, ROI statistics on
the shared CT against direct array reads and scikit-image's ellipse, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from skimage.draw import ellipse as sk_ellipse

from medplib_core import load
from medplib_core.analysis.measure import (
    Roi,
    Ruler,
    measurement_from_dict,
    measurements_from_json,
    measurements_to_json,
)
from medplib_core.errors import MedplibError
from medplib_core.slicing import slice_geometry
from medplib_core.volume import SourceInfo, Volume


def _oblique() -> np.ndarray:
    a, b = np.deg2rad(20.0), np.deg2rad(-30.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_ruler_length_is_the_world_distance(orientation):
    vol = Volume(np.zeros((10, 20, 30), np.int16), spacing=(0.6, 0.9, 3.0), origin=(4, 5, 6),
                 direction=_oblique())
    img = sitk.Image(list(vol.size_ijk), sitk.sitkInt16)
    img.SetSpacing(vol.spacing), img.SetOrigin(vol.origin), img.SetDirection(vol.direction.ravel())
    g = slice_geometry(vol, orientation, 4)
    ruler = Ruler(orientation, 4, (1.0, 2.5), (7.5, 8.0))
    ijk = [g.to_continuous_index(*p) for p in (ruler.start, ruler.end)]
    a, b = (np.array(img.TransformContinuousIndexToPhysicalPoint(list(map(float, p)))) for p in ijk)
    assert ruler.length(vol) == pytest.approx(np.linalg.norm(b - a), rel=1e-12)
    rows_mm, cols_mm = g.pixel_spacing
    assert ruler.length(vol) == pytest.approx(np.hypot(6.5 * rows_mm, 5.5 * cols_mm), rel=1e-12)
    assert ruler.result(vol)["unit"] == "mm"


@pytest.mark.shared_data
def test_rectangle_and_ellipse_on_the_ct_series(shared_data):
    vol = load(shared_data / "volumes" / "ct_series_j2k")  # identity direction, HU
    k = 10
    rect = Roi("rectangle", "axial", k, (199.5, 149.5), (260.5, 230.5))
    s = rect.statistics(vol)
    block = vol.array[k, 200:261, 150:231].astype(float)
    assert s.pixels == block.size and s.units == "HU" and s.area_unit == "mm2"
    assert (s.mean, s.sd, s.min, s.max) == pytest.approx(
        (block.mean(), block.std(ddof=1), block.min(), block.max()))
    assert s.area == pytest.approx(61 * 81 * 0.9765625 ** 2)
    ell = Roi("ellipse", "axial", k, (180.0, 120.0), (300.0, 260.0))
    rr, cc = sk_ellipse(240.0, 190.0, 60.0, 70.0, shape=(512, 512))
    ours = ell.mask(slice_geometry(vol, "axial", k))
    theirs = np.zeros_like(ours)
    theirs[rr, cc] = True
    assert np.count_nonzero(ours ^ theirs) <= 0.01 * theirs.sum()  # boundary pixel conventions
    es = ell.statistics(vol)
    assert es.area == pytest.approx(np.pi * 60 * 70 * 0.9765625 ** 2)
    assert es.pixels * 0.9765625 ** 2 == pytest.approx(es.area, rel=0.01)
    vals = vol.array[k][ours].astype(float)
    assert es.mean == pytest.approx(vals.mean()) and es.max == vals.max()


@pytest.mark.shared_data
def test_coronal_roi_reads_the_flipped_rows(shared_data):
    """On a coronal view rows run toward Inferior: the ROI reads the slices the screen shows."""
    vol = load(shared_data / "volumes" / "ct_series_j2k")
    roi = Roi("rectangle", "coronal", 256, (2.0, 100.0), (5.0, 140.0))
    g = slice_geometry(vol, "coronal", 256)
    assert g.row_flip  # k runs toward Superior, so screen rows are reversed k
    nk = vol.shape[0]
    block = vol.array[nk - 1 - 5: nk - 1 - 2 + 1, 256, 100:141].astype(float)
    s = roi.statistics(vol)
    assert s.pixels == block.size and s.mean == pytest.approx(block.mean())
    assert s.area == pytest.approx(3 * 40 * 2.0 * 0.9765625)


def test_json_round_trip_with_results():
    vol = Volume(np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7), spacing=(0.5, 0.5, 2.0),
                 modality="CT", units="HU")
    items = [Ruler("sagittal", 3, (0, 0), (4, 5), name="span"),
             Roi("ellipse", "axial", 2, (0.5, 0.5), (4.5, 5.5), name="fat"),
             Roi("rectangle", "coronal", 1, (1, 1), (3, 3))]
    text = measurements_to_json(items, vol)
    data = json.loads(text)
    assert data["items"][0]["length"] == pytest.approx(items[0].length(vol), abs=1e-4)
    assert data["items"][1]["mean"] == pytest.approx(items[1].statistics(vol).mean, abs=1e-4)
    back = measurements_from_json(text)
    assert [m.to_dict() for m in back] == [m.to_dict() for m in items]
    with pytest.raises(MedplibError):
        measurement_from_dict({"kind": "polygon", "orientation": "axial", "index": 0})
    with pytest.raises(MedplibError):
        measurements_from_json("[1, 2]")
    with pytest.raises(MedplibError):
        Roi("circle", "axial", 0, (0, 0), (1, 1))


def test_image_rois_are_in_pixels_and_colour_has_no_values():
    vol = Volume(np.zeros((1, 30, 40, 3), np.uint8), source=SourceInfo(path="p.png", kind="image"))
    s = Roi("rectangle", "axial", 0, (0, 0), (9, 19)).statistics(vol)
    assert s.area_unit == "px2" and s.area == pytest.approx(9 * 19)
    assert s.pixels == 200 and s.mean is None
    assert Ruler("axial", 0, (0, 0), (3, 4)).result(vol)["unit"] == "px"


def test_measurements_travel_in_the_export_sidecar(tmp_path):
    from medplib_core.analysis.measure import measurements_from_sidecar, sidecar_measurements
    from medplib_core.annotation import LabelSet
    from medplib_core.export import sidecar_path, write_nifti_labels

    vol = Volume(np.arange(4 * 6 * 8, dtype=np.int16).reshape(4, 6, 8), spacing=(0.5, 0.5, 2.0),
                 modality="CT", units="HU")
    items = [Ruler("axial", 1, (0, 0), (3, 4), name="d"), Roi("rectangle", "sagittal", 2, (0, 0), (2, 3))]
    labels = LabelSet()
    labels.add("x", value=1)
    arr = np.zeros(vol.shape, np.uint8)
    arr[1, 2:4, 2:4] = 1
    out = write_nifti_labels(tmp_path / "m.nii.gz", arr, vol, labels,
                             extra={"measurements": sidecar_measurements(items, vol)})
    data = json.loads(sidecar_path(out).read_text())
    assert data["measurements"][0]["length"] == pytest.approx(2.5)
    assert data["measurements"][1]["units"] == "HU"
    assert [m.to_dict() for m in measurements_from_sidecar(out)] == [m.to_dict() for m in items]
    assert measurements_from_sidecar(tmp_path / "none.nii.gz") == []
