"""NIfTI label maps on the source grid, with the source affine converted LPS -> RAS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..annotation.labels import LabelSet
from ..errors import ExportError
from ..volume import Volume
from .sidecar import build_sidecar, commit_labels


def label_dtype(array: np.ndarray) -> np.dtype:
    """The smallest unsigned type that holds every label value."""
    top = int(array.max()) if array.size else 0
    return np.dtype(np.uint8) if top < 256 else np.dtype(np.uint16)


def to_nifti_image(labels: np.ndarray, volume: Volume) -> nib.Nifti1Image:
    """Wrap a ``[k, j, i]`` label array in a NIfTI image with the volume's RAS affine.

    NIfTI stores data indexed ``[i, j, k]``; the transpose only changes the index order, the
    affine still maps the same voxel to the same world point.
    """
    if tuple(labels.shape) != volume.shape:
        raise ExportError(f"label array {labels.shape} is not on the scan's grid {volume.shape}")
    data = np.ascontiguousarray(labels.astype(label_dtype(labels), copy=False).transpose(2, 1, 0))
    img = nib.Nifti1Image(data, volume.affine_ras)
    img.set_qform(volume.affine_ras, code=1)  # scanner anatomical
    img.set_sform(volume.affine_ras, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["intent_name"] = b"LABELS"
    return img


def write_nifti_labels(path: str | Path, labels: np.ndarray, volume: Volume, label_set: LabelSet,
                       extra: dict[str, Any] | None = None) -> Path:
    """Write ``labels`` as ``path`` (.nii or .nii.gz) plus its JSON sidecar, as one commit."""
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ExportError(f"{path}: a NIfTI label map must end in .nii or .nii.gz")
    img = to_nifti_image(labels, volume)
    present = {int(v): int(n) for v, n in enumerate(np.bincount(labels.reshape(-1))) if v and n}
    commit_labels(path, lambda tmp: nib.save(img, str(tmp)),
                  build_sidecar(label_set, volume, present, extra))
    return path
