"""NIfTI-1/NIfTI-2 (.nii, .nii.gz) through SimpleITK, so geometry is exactly ITK's.

ITK derives the LPS geometry from the sform/qform (its own precedence rules) and applies
scl_slope/scl_inter; we take the array, spacing, origin and direction unchanged.
SimpleITK cannot read NIfTI-2 here, so NIfTI-2 goes through nibabel with ITK's sform/qform
choice re-implemented (`_itk_affine`; spacing from pixdim as ITK does).

A 4D file loads its first volume (with a note; the documented choice, rather than an
error); a 2D file becomes one slice. Vector pixels: RGB(A) uint8 becomes colour, other
vectors keep their first component (noted). The modality is unknown in NIfTI: integer data
whose minimum looks like air in Hounsfield units is labelled CT/HU (noted)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import LoadError
from ..limits import voxel_excess
from ..volume import SourceInfo, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def sniff_nifti(path: str) -> bool:
    """True for an uncompressed NIfTI-1/2 header (sizeof_hdr 348 or 540 with the magic)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(548)
    except OSError:
        return False
    if len(head) >= 348:
        for order in ("<", ">"):
            size = int.from_bytes(head[:4], "little" if order == "<" else "big")
            if size == 348 and head[344:348] in (b"n+1\0", b"ni1\0"):
                return True
            if size == 540 and len(head) >= 8 and head[4:8] in (b"n+2\0", b"ni2\0"):
                return True
    return False


def _header_size(path: str) -> int | None:
    """sizeof_hdr of a (possibly gzipped) NIfTI file: 348 for NIfTI-1, 540 for NIfTI-2."""
    import gzip

    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            head = fh.read(4)
    except (OSError, EOFError):
        return None
    if len(head) < 4:
        return None
    for order in ("little", "big"):
        size = int.from_bytes(head, order)
        if size in (348, 540):
            return size
    return None


def _itk_reason(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Description" in ln or "ERROR" in ln.upper()]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text.replace("Description:", "").strip()[:300]


def load_nifti(path: str, report=None) -> Volume:
    """Read a NIfTI file; raises LoadError with ITK's reason when it cannot.

    The header is read first (ITK's header-only pass) and its declared size checked against
    the voxel limit before any voxel is read; a 4D file reads only its first volume.
    """
    import SimpleITK as sitk

    if report is not None:
        report(0, 1)
    if _header_size(path) == 540:
        vol = _try_nifti2(path, report)
        if vol is not None:
            return vol
    _check_transforms(path)
    reader = sitk.ImageFileReader()
    reader.SetImageIO("NiftiImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        vol = _try_nifti2(path, report)
        if vol is not None:
            return vol
        raise LoadError(path, f"not a readable NIfTI file: {_itk_reason(exc)}") from None
    notes: list[str] = []
    size = [int(n) for n in reader.GetSize()]
    dim = len(size)
    if dim not in (2, 3, 4):
        raise LoadError(path, f"unsupported NIfTI dimension {dim}")
    ncomp = int(reader.GetNumberOfComponents())
    spacing = list(reader.GetSpacing())
    origin = list(reader.GetOrigin())
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)
    read_size = size[:3] if dim == 4 else size
    excess = voxel_excess(tuple(reversed(read_size)) + ((ncomp,) if ncomp > 1 else ()),
                          _itemsize(reader.GetPixelID(), ncomp))
    if excess:
        raise LoadError(path, excess)
    if dim == 4:
        reader.SetExtractIndex([0, 0, 0, 0])
        reader.SetExtractSize(size[:3] + [0])
        notes.append(f"4D file with {size[3]} volumes: loaded the first")
        spacing, origin, direction = spacing[:3], origin[:3], direction[:3, :3]
    arr = _float_voxels(path, read_size) if ncomp == 1 else None
    if arr is None:
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            raise LoadError(path, f"cannot read the NIfTI voxels: {_itk_reason(exc)}") from None
        arr = sitk.GetArrayFromImage(img)
        del img
    else:
        arr = replace_non_finite(arr, notes)
    colour = ncomp > 1
    if colour and not (ncomp in (3, 4) and arr.dtype == np.uint8):
        arr = arr[..., 0]
        colour = False
        notes.append(f"vector image with {ncomp} components: loaded the first component")
    elif colour and ncomp == 4:
        arr = arr[..., :3]
        notes.append("RGBA: alpha dropped")
    if dim == 2:
        arr = arr[np.newaxis]
        d3 = np.eye(3)
        d3[:2, :2] = direction
        spacing, origin, direction = spacing + [1.0], origin + [0.0], d3
    modality, units = "OT", ""
    if arr.dtype.kind in "iu" and not colour and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if -3100 <= lo <= -900 and hi >= 0:
            modality, units = "CT", "HU"
            notes.append("modality guessed as CT (values look like Hounsfield units)")
    if report is not None:
        report(1, 1)
    source = SourceInfo(path=os.fspath(path), kind="nifti", notes=notes)
    return Volume(arr, spacing=tuple(spacing), origin=tuple(origin), direction=direction,
                  modality=modality, units=units, source=source)


def _check_transforms(path: str) -> None:
    """Refuse a header whose voxel sizes or coded sform/qform hold NaN or infinite values (ITK
    would quietly fall back to another transform or to an origin of 0)."""
    import nibabel as nib

    try:
        hdr = nib.load(str(path)).header
        fields = {"pixdim": np.asarray(hdr["pixdim"][1:4], float)}
        if int(hdr["sform_code"]) > 0:
            fields["sform"] = np.concatenate([hdr["srow_x"], hdr["srow_y"], hdr["srow_z"]])
        if int(hdr["qform_code"]) > 0:
            fields["qform"] = np.asarray([hdr[k] for k in ("quatern_b", "quatern_c", "quatern_d",
                                                           "qoffset_x", "qoffset_y", "qoffset_z")],
                                         float)
    except Exception:  # noqa: BLE001 - not parseable by nibabel: ITK gives the reason
        return
    bad = [name for name, v in fields.items() if not np.all(np.isfinite(v.astype(float)))]
    if bad:
        raise LoadError(path, f"impossible geometry: the header's {' and '.join(bad)} "
                        "hold(s) NaN or infinite values")


def _itemsize(pixel_id: int, ncomp: int) -> int:
    """Bytes per pixel component of a SimpleITK pixel type."""
    import SimpleITK as sitk

    probe = sitk.Image([1, 1], pixel_id, ncomp) if ncomp > 1 else sitk.Image([1, 1], pixel_id)
    return int(sitk.GetArrayViewFromImage(probe).dtype.itemsize)


def _float_voxels(path: str, size: list[int]) -> np.ndarray | None:
    """The voxels of a file that stores floats, read with nibabel (``[k, j, i]``; the first
    volume of a 4D file), or None for other files. ITK's reader turns NaN and infinite voxels
    into 0 without a word; reading them ourselves lets the load say so."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if np.dtype(img.header.get_data_dtype()).kind != "f" or len(img.shape) > 4:
            return None
        proxy = img.dataobj
        if proxy.offset < (540 + 4 if isinstance(img, nib.Nifti2Image) else 348 + 4):
            return None  # a vox_offset inside the header: ITK's reading of it is the reference
        data = np.asanyarray(proxy[..., 0] if len(img.shape) == 4 else proxy)
    except Exception:  # noqa: BLE001 - nibabel disagrees with ITK about the file: let ITK read it
        return None
    while data.ndim < len(size):
        data = data[..., np.newaxis]
    if list(data.shape[:len(size)]) != list(size) or data.ndim != len(size):
        return None
    dtype = np.float64 if img.header.get_data_dtype().itemsize > 4 else np.float32
    return np.ascontiguousarray(data.T, dtype=dtype)


def replace_non_finite(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """Set NaN and infinite voxels to 0 (what displays and engines can use), with a note."""
    if arr.dtype.kind != "f":
        return arr
    bad = ~np.isfinite(arr)
    n = int(np.count_nonzero(bad))
    if n:
        arr[bad] = 0
        notes.append(f"{n} voxel(s) held NaN or infinite values: set to 0")
    return arr


def _orthonormal(m: np.ndarray, tol: float = 1e-4) -> np.ndarray | None:
    """Columns of ``m`` normalised, when they form an orthonormal matrix; else None."""
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms < 1e-12):
        return None
    r = m / norms
    return r if np.allclose(r.T @ r, np.eye(3), atol=tol) else None


def _itk_affine(hdr, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(direction, origin) in RAS as ITK's NiftiImageIO picks them from sform/qform.

    sform wins when it is orthonormal (after removing scale) and the qform is unknown, the
    sform code is SCANNER_ANAT, or both transforms agree; the qform otherwise; identity when
    neither is set; an unusable sform without qform is an error (ITK throws too).
    """
    scode, qcode = int(hdr["sform_code"]), int(hdr["qform_code"])
    if scode <= 0 and qcode <= 0:
        return np.eye(3), np.zeros(3)
    qform = hdr.get_qform() if qcode > 0 else None
    sform = hdr.get_sform() if scode > 0 else None
    if sform is not None:
        srot = _orthonormal(sform[:3, :3])
        if srot is not None:
            agree = qform is not None and _orthonormal(qform[:3, :3]) is not None and \
                np.allclose(srot, _orthonormal(qform[:3, :3]), atol=1e-4) and \
                np.allclose(sform[:3, 3], qform[:3, 3], atol=1e-3)
            if qform is None or scode == 1 or agree:
                return srot, sform[:3, 3]
    if qform is not None:
        qrot = _orthonormal(qform[:3, :3])
        if qrot is not None:
            return qrot, qform[:3, 3]
    raise LoadError(path, "the NIfTI header has no usable sform or qform (non-orthogonal)")


def _try_nifti2(path: str, report) -> Volume | None:
    """Read a NIfTI-2 file with nibabel; None when the file is not NIfTI-2."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception:
        return None
    if not isinstance(img, nib.Nifti2Image):
        return None
    hdr = img.header
    _check_transforms(path)
    notes = ["NIfTI-2 read with nibabel (geometry by ITK's sform/qform rule)"]
    shape = img.shape
    excess = voxel_excess(tuple(reversed(shape[:3])), np.dtype(hdr.get_data_dtype()).itemsize)
    if excess:
        raise LoadError(path, excess)
    try:
        if len(shape) > 3:
            data = np.asanyarray(img.dataobj[(slice(None),) * 3 + (0,) * (len(shape) - 3)])
            n_vol = int(np.prod(shape[3:]))
            notes.append(f"{len(shape)}D file with {n_vol} volumes: loaded the first")
        else:
            data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise LoadError(path, f"cannot read the NIfTI-2 voxels: {exc}") from None
    while data.ndim < 3:
        data = data[..., np.newaxis]
    arr = replace_non_finite(np.ascontiguousarray(data.T), notes)
    rot, trans = _itk_affine(hdr, path)
    flip = np.diag([-1.0, -1.0, 1.0])
    zooms = [abs(float(z)) or 1.0 for z in hdr.get_zooms()[:3]]
    zooms += [1.0] * (3 - len(zooms))
    if report is not None:
        report(1, 1)
    return Volume(arr, spacing=tuple(zooms), origin=tuple(flip @ trans), direction=flip @ rot,
                  source=SourceInfo(path=os.fspath(path), kind="nifti", notes=notes))
