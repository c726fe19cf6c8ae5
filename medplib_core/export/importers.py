"""Import label maps (NIfTI, DICOM SEG, RTSTRUCT, PNG) onto a scan's grid, placed by world coordinates.

When the label file's grid differs from the scan's (other orientation, spacing or extent),
it is resampled in world (LPS) coordinates with nearest-neighbour interpolation, so labels
land on the voxels they cover in the world, never by raw array index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..annotation.labels import LabelSet
from ..errors import FATAL, ExportError, MedplibError
from ..limits import voxel_excess
from ..volume import Volume
from .sidecar import read_label_names, sidecar_matches, sidecar_path

TRACKING_RE = re.compile(r"^label (\d+)$")  # segment tracking id -> label value (see dicom_seg)


@dataclass
class ImportedLabels:
    array: np.ndarray  # uint16 [k, j, i] on the scan's grid
    labels: LabelSet
    resampled: bool
    notes: list[str] = field(default_factory=list)


def volume_to_sitk(array: np.ndarray, spacing, origin, direction) -> sitk.Image:
    """A SimpleITK image of a ``[k, j, i]`` array with the given LPS geometry."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=float).reshape(-1)))
    return img


def reference_image(volume: Volume) -> sitk.Image:
    ref = sitk.Image(list(volume.size_ijk), sitk.sitkUInt8)
    ref.SetSpacing(volume.spacing)
    ref.SetOrigin(volume.origin)
    ref.SetDirection(tuple(volume.direction.reshape(-1)))
    return ref


def resample_onto(image: sitk.Image, volume: Volume) -> tuple[np.ndarray, bool]:
    """Nearest-neighbour resampling of a label image onto ``volume``'s grid (world placement)."""
    same = (
        tuple(image.GetSize()) == tuple(volume.size_ijk)
        and np.allclose(image.GetSpacing(), volume.spacing, atol=1e-4)
        and np.allclose(image.GetOrigin(), volume.origin, atol=1e-3)
        and np.allclose(image.GetDirection(), volume.direction.reshape(-1), atol=1e-5)
    )
    if same:
        return sitk.GetArrayFromImage(image).astype(np.uint16), False
    out = sitk.Resample(image, reference_image(volume), sitk.Transform(),
                        sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    return sitk.GetArrayFromImage(out), True


def import_labels(path: str | Path, volume: Volume) -> ImportedLabels:
    """Read NIfTI, DICOM SEG or PNG labels and place them on ``volume``'s grid."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            out = _import_nifti(path, volume)
        elif name.endswith(".png"):
            out = _import_png(path, volume)
        else:
            out = _import_seg(path, volume)
    except (MedplibError, *FATAL):
        raise
    except BaseException as exc:  # noqa: BLE001 - the boundary: a bad file gives the export error
        raise ExportError(f"{path}: cannot import labels ({type(exc).__name__}: {exc})") from exc
    if sidecar_matches(path) is False:
        out.notes.append(f"{sidecar_path(path).name} belongs to another version of this file "
                         "(an interrupted export?): its label names were not used")
    return out


def _label_set_for(path: Path, values: np.ndarray) -> LabelSet:
    labels = read_label_names(path) or LabelSet()
    for v in values:
        if int(v) and int(v) not in labels:
            labels.add(f"label {int(v)}", value=int(v))
    return labels


def _import_nifti(path: Path, volume: Volume) -> ImportedLabels:
    try:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("NiftiImageIO")  # never another ITK reader for a file named .nii
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        excess = voxel_excess(tuple(reversed(reader.GetSize())), 8)
        if excess:
            raise ExportError(f"{path}: {excess}")
        img = reader.Execute()
    except RuntimeError as exc:
        raise ExportError(f"{path}: not a readable NIfTI label map ({str(exc).strip().splitlines()[-1]})") from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ExportError(f"{path}: a label map must be a 3D scalar image")
    arr = sitk.GetArrayViewFromImage(img)
    if arr.dtype.kind == "f" and not np.allclose(arr, np.round(arr)):
        raise ExportError(f"{path}: holds non-integer values; it is not a label map")
    if arr.min() < 0 or arr.max() > 65535:
        raise ExportError(f"{path}: label values must lie in 0..65535")
    img = sitk.Cast(img, sitk.sitkUInt16)
    array, resampled = resample_onto(img, volume)
    notes = ["resampled onto the scan's grid by world coordinates (nearest neighbour)"] if resampled else []
    if resampled and not array.any() and sitk.GetArrayViewFromImage(img).any():
        notes.append("no labelled voxel falls inside the scan: check that the file belongs to this scan")
    return ImportedLabels(array, _label_set_for(path, np.unique(array)), resampled, notes)


def _import_png(path: Path, volume: Volume) -> ImportedLabels:
    from PIL import Image

    if not volume.is_2d:
        raise ExportError(f"{path}: PNG labels fit 2D images only; this scan has {volume.shape[0]} slices")
    try:
        with Image.open(path, formats=["PNG"]) as im:  # a PNG only, whatever else is installed
            if im.size != (volume.shape[2], volume.shape[1]):
                raise ExportError(f"{path}: mask is {im.size[0]}x{im.size[1]} but the image is "
                                  f"{volume.shape[2]}x{volume.shape[1]}")
            plane = np.array(im if im.mode in ("P", "L", "I;16", "I") else im.convert("L"))
    except (OSError, Image.DecompressionBombError) as exc:
        raise ExportError(f"{path}: not a readable PNG ({exc})") from exc
    values = np.unique(plane)
    if set(values.tolist()) <= {0, 255}:  # a binary mask: 0/255 (this version) or 0/1 (older)
        plane = (plane > 0).astype(np.uint16) * _png_foreground(path)
    array = plane.astype(np.uint16)[np.newaxis]
    return ImportedLabels(array, _label_set_for(path, np.unique(array)), False, [])


def _code(item) -> dict[str, str]:
    return {"value": str(item.CodeValue), "scheme": str(item.CodingSchemeDesignator),
            "meaning": str(item.CodeMeaning)}


def segment_terminology(item) -> dict | None:
    """Category, type and type modifier codes of a SEG segment (as `Label.terminology` keeps them)."""
    try:
        cat = item.SegmentedPropertyCategoryCodeSequence[0]
        kind = item.SegmentedPropertyTypeCodeSequence[0]
        out = {"category": _code(cat), "type": _code(kind)}
        mods = kind.get("SegmentedPropertyTypeModifierCodeSequence") or []
        if mods:
            out["modifier"] = _code(mods[0])
        return out
    except (AttributeError, IndexError, KeyError):
        return None


def _png_foreground(path: Path) -> int:
    """The label value a binary PNG's white stands for (its sidecar says; 1 otherwise)."""
    import json

    if sidecar_matches(path) is False:
        return 1
    try:
        info = json.loads(sidecar_path(path).read_text(encoding="utf-8")).get("png", {})
        value = int(info.get("foreground_value") or 1)
    except (OSError, ValueError, TypeError, AttributeError):
        return 1
    return value if 0 < value < 65536 else 1


def _import_seg(path: Path, volume: Volume) -> ImportedLabels:
    import highdicom as hd
    import pydicom

    try:  # an RT Structure Set shares the .dcm extension
        head = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise ExportError(f"{path}: not a readable DICOM file ({exc})") from exc
    if str(head.get("Modality", "")) == "RTSTRUCT":
        from .rtstruct import read_rtstruct

        return read_rtstruct(path, volume)
    try:
        seg = hd.seg.segread(str(path))
    except (OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise ExportError(f"{path}: not a readable DICOM SEG ({exc})") from exc
    numbers = [int(d.SegmentNumber) for d in seg.SegmentSequence]
    try:
        hv = seg.get_volume(combine_segments=True, relabel=False, dtype=np.uint16)
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"{path}: the SEG frames do not form a volume ({exc})") from exc
    aff = np.asarray(hv.affine, dtype=float)
    cols = [aff[:3, 2], aff[:3, 1], aff[:3, 0]]  # array axes (slice, row, column) -> (i, j, k)
    spacing = [float(np.linalg.norm(c)) for c in cols]
    direction = np.column_stack([c / s for c, s in zip(cols, spacing)])
    arr = np.asarray(hv.array, dtype=np.uint16)
    labels = LabelSet()
    value_of = {}
    for d in seg.SegmentSequence:
        number = int(d.SegmentNumber)
        tracked = TRACKING_RE.match(str(getattr(d, "TrackingID", "") or ""))
        value = int(tracked.group(1)) if tracked else number
        value_of[number] = value
        if value not in labels:
            labels.add(str(d.SegmentLabel), value=value, terminology=segment_terminology(d))
    lut = np.zeros(max(numbers) + 1, dtype=np.uint16)
    for number, value in value_of.items():
        lut[number] = value
    arr = lut[arr]
    img = volume_to_sitk(arr, spacing, aff[:3, 3], direction)
    array, resampled = resample_onto(img, volume)
    notes = ["resampled onto the scan's grid by world coordinates (nearest neighbour)"] if resampled else []
    return ImportedLabels(array, labels, resampled, notes)
