"""Fill between slices on real organ labels (every 4th slice kept, Dice against the full label)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medplib_core import load
from medplib_core.analysis.interpolate import axis_of, fill_between_slices
from medplib_core.errors import MedplibError
from medplib_core.export import import_labels
from medplib_core.volume import Volume


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _every(ref: np.ndarray, axis: int, step: int) -> tuple[np.ndarray, list[int]]:
    moved = np.moveaxis(ref, axis, 0)
    occupied = np.flatnonzero(moved.any(axis=(1, 2)))
    keep = list(range(occupied[0], occupied[-1] + 1, step))
    if keep[-1] != occupied[-1]:
        keep.append(int(occupied[-1]))
    sparse = np.zeros_like(ref)
    np.moveaxis(sparse, axis, 0)[keep] = moved[keep]
    return sparse, keep


@pytest.mark.shared_data
@pytest.mark.parametrize("scan,labels,orientation,value,min_dice", [
    ("ct_small_abdomen.nii.gz", "ct_small_abdomen_labels.nii.gz", "axial", 5, 0.97),  # liver
    ("ct_small_abdomen.nii.gz", "ct_small_abdomen_labels.nii.gz", "axial", 1, 0.955),  # spleen
    ("ct_small_abdomen.nii.gz", "ct_small_abdomen_labels.nii.gz", "axial", 2, 0.95),  # kidney
    ("mr_small_abdomen.nii.gz", "mr_small_abdomen_labels.nii.gz", "axial", 5, 0.95),
    ("ct_series_j2k", "ct_series_j2k_labels.nii.gz", "coronal", 5, 0.98),
    ("ct_series_j2k", "ct_series_j2k_labels.nii.gz", "sagittal", 1, 0.975),
    ("ct_series_j2k", "ct_series_j2k_labels.nii.gz", "sagittal", 52, 0.94),  # aorta
])
def test_every_fourth_slice_fills_back_to_the_organ(shared_data, scan, labels, orientation,
                                                     value, min_dice):
    folder = shared_data / "volumes"
    vol = load(folder / scan)
    ref = import_labels(folder / labels, vol).array == value
    axis = axis_of(vol, orientation)
    sparse, keep = _every(ref, axis, 4)
    fill = fill_between_slices(sparse, vol, orientation)
    assert fill.axis == axis and fill.drawn == keep
    assert set(fill.filled) <= set(range(keep[0], keep[-1] + 1)) - set(keep)
    moved, got = np.moveaxis(ref, axis, 0), np.moveaxis(fill.mask, axis, 0)
    np.testing.assert_array_equal(got[keep], moved[keep])  # drawn slices untouched
    assert not np.moveaxis(fill.added, axis, 0)[keep].any()
    dice = _dice(fill.mask, ref)
    assert dice >= min_dice, f"Dice {dice:.4f}"
    assert dice > _dice(sparse, ref) + 0.2


def test_a_shape_travels_between_non_overlapping_slices():
    """A 4 mm disc drawn 20 mm apart in-plane on slices 0 and 10: it moves, it does not vanish."""
    vol = Volume(np.zeros((11, 60, 80), np.int16), spacing=(0.5, 0.5, 2.0))
    jj, ii = np.indices(vol.shape[1:])
    mask = np.zeros(vol.shape, bool)
    mask[0] = np.hypot((ii - 20) * 0.5, (jj - 30) * 0.5) <= 4
    mask[10] = np.hypot((ii - 60) * 0.5, (jj - 30) * 0.5) <= 4
    fill = fill_between_slices(mask, vol, "axial")
    assert fill.filled == list(range(1, 10))
    for k in range(11):
        cj, ci = ndimage.center_of_mass(fill.mask[k])
        assert ci == pytest.approx(20 + 4 * k, abs=0.6) and cj == pytest.approx(30, abs=0.6)
        assert fill.mask[k].sum() == pytest.approx(mask[0].sum(), rel=0.15)


def test_overlapping_shapes_blend_in_size():
    vol = Volume(np.zeros((9, 50, 50), np.int16), spacing=(1.0, 1.0, 1.0))
    jj, ii = np.indices(vol.shape[1:])
    r = np.hypot(ii - 25, jj - 25)
    mask = np.zeros(vol.shape, bool)
    mask[0], mask[8] = r <= 6, r <= 14
    fill = fill_between_slices(mask, vol, "axial")
    radii = [np.sqrt(fill.mask[k].sum() / np.pi) for k in range(9)]
    np.testing.assert_allclose(radii, 6 + np.arange(9), atol=0.6)
    assert np.all(fill.mask[1:8] <= (r <= 14))


def test_needs_two_drawn_slices_on_the_grid():
    vol = Volume(np.zeros((5, 6, 7), np.int16))
    one = np.zeros(vol.shape, bool)
    one[2, 1:3, 1:3] = True
    with pytest.raises(MedplibError, match="at least two slices"):
        fill_between_slices(one, vol)
    with pytest.raises(MedplibError, match="grid"):
        fill_between_slices(np.zeros((5, 6, 8), bool), vol)
