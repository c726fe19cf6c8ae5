"""Label exports (NIfTI, DICOM SEG, PNG) and imports, all written atomically."""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_text  # noqa: F401
from .importers import ImportedLabels, import_labels  # noqa: F401
from .nifti import write_nifti_labels  # noqa: F401
from .png import write_png_labels  # noqa: F401
from .sidecar import read_label_names, sidecar_path  # noqa: F401


def write_dicom_seg(*args, **kwargs):
    """Write a DICOM SEG (see `medplib_core.export.dicom_seg.write_dicom_seg`)."""
    from .dicom_seg import write_dicom_seg as _write

    return _write(*args, **kwargs)


def write_rtstruct(*args, **kwargs):
    """Write an RT Structure Set (see `medplib_core.export.rtstruct.write_rtstruct`)."""
    from .rtstruct import write_rtstruct as _write

    return _write(*args, **kwargs)


def export_labels(path, labels, volume, label_set, extra=None):
    """Write labels in the format the path's extension names (.nii/.nii.gz, .dcm, .png)."""
    from pathlib import Path

    from ..errors import ExportError

    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return write_nifti_labels(path, labels, volume, label_set, extra=extra)
    if name.endswith(".png"):
        return write_png_labels(path, labels, volume, label_set, extra=extra)[0]
    if name.endswith(".dcm"):
        return write_dicom_seg(path, labels, volume, label_set, extra=extra)
    raise ExportError(f"{path}: unknown label format (use .nii.gz, .nii, .dcm for DICOM SEG, or .png)")
