"""From stored DICOM samples to real values: rescale, MONOCHROME1, palette and colour."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import LoadError
from .dicom_pixels import stored_dtype, stored_range

Transform = tuple[float, float]  # (slope, intercept)
IDENTITY: Transform = (1.0, 0.0)


def rescale_of(item: Dataset | None) -> Transform:
    """(RescaleSlope, RescaleIntercept) of a dataset or functional-group item, else identity."""
    if item is None:
        return IDENTITY
    try:
        s = _number(item.get("RescaleSlope"), 1.0)
        b = _number(item.get("RescaleIntercept"), 0.0)
    except (TypeError, ValueError):
        return IDENTITY
    if not (np.isfinite(s) and np.isfinite(b)) or s == 0:
        return IDENTITY
    return s, b


def _number(value, default: float) -> float:
    if value is None or value == "":
        return default
    if hasattr(value, "__len__") and not isinstance(value, str):  # a multi-valued DS
        value = value[0]
    return float(value)


@dataclass
class ValuePlan:
    """How every frame's stored samples become the output array."""

    kind: str  # "grey", "rgb" or "palette"
    dtype: np.dtype
    frame_shape: tuple[int, ...]
    stored: np.dtype
    stored_lo: float = 0.0
    stored_hi: float = 0.0
    monochrome1: bool = False
    header: Dataset | None = None  # for the palette LUT
    notes: list[str] = field(default_factory=list)

    def real_range(self, t: Transform) -> tuple[float, float]:
        a, b = t[0] * self.stored_lo + t[1], t[0] * self.stored_hi + t[1]
        return min(a, b), max(a, b)


def _fits(dtype, lo: float, hi: float) -> bool:
    info = np.iinfo(dtype)
    return info.min <= lo and hi <= info.max


def make_plan(path: str, ds: Dataset, transforms: list[Transform],
              float_pixels: np.dtype | None = None) -> ValuePlan:
    """Choose the output dtype: stored type when no rescale, int16/int32 when the rescale is
    integral and the real range fits, float32 otherwise. Colour stays uint8/uint16 RGB."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise LoadError(path, "the image has no valid Rows/Columns") from None
    if rows <= 0 or cols <= 0:
        raise LoadError(path, f"the image has an empty size ({rows}x{cols})")
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    stored = np.dtype(float_pixels) if float_pixels is not None else stored_dtype(ds, path)
    if spp == 3:
        dt = np.dtype(f"u{min(stored.itemsize, 4)}")
        notes = [] if pi == "RGB" else [f"{pi} colour converted to RGB"]
        return ValuePlan("rgb", dt, (rows, cols, 3), stored, notes=notes)
    if spp != 1:
        raise LoadError(path, f"unsupported Samples per Pixel {spp}")
    if pi == "PALETTE COLOR":
        return ValuePlan("palette", np.dtype(np.uint8), (rows, cols, 3), stored, header=ds,
                         notes=["PALETTE COLOR applied (RGB)"])
    lo, hi = stored_range(ds, stored)
    plan = ValuePlan("grey", stored, (rows, cols), stored, lo, hi, pi == "MONOCHROME1")
    if plan.monochrome1:
        plan.notes.append("MONOCHROME1 inverted so that higher values are brighter")
    if stored.kind == "f":
        plan.dtype = np.dtype(np.float32) if stored.itemsize <= 4 else stored
        return plan
    if all(t == IDENTITY for t in transforms):
        return plan
    if all(float(s).is_integer() and float(b).is_integer() for s, b in transforms):
        rlo = min(plan.real_range(t)[0] for t in transforms)
        rhi = max(plan.real_range(t)[1] for t in transforms)
        for cand in (np.int16, np.uint16, np.int32):
            if _fits(cand, rlo, rhi):
                plan.dtype = np.dtype(cand)
                return plan
    plan.dtype = np.dtype(np.float32)
    return plan


def store(raw: np.ndarray, photometric: str, plan: ValuePlan, t: Transform,
          out: np.ndarray, path: str) -> None:
    """Write one decoded frame into ``out`` (a slice of the preallocated volume)."""
    if plan.kind == "rgb":
        if raw.ndim == 3 and photometric.upper().startswith("YBR"):
            try:
                raw = pydicom.pixels.convert_color_space(raw, photometric, "RGB")
            except Exception as exc:
                raise LoadError(path, f"cannot convert {photometric} to RGB: {exc}") from None
        _check_shape(raw, out, path)
        np.copyto(out, raw, casting="unsafe")
        return
    if plan.kind == "palette":
        _check_shape(raw, out[..., 0], path)
        try:
            rgb = pydicom.pixels.apply_color_lut(raw, plan.header)
        except Exception as exc:
            raise LoadError(path, f"invalid palette colour lookup table: {exc}") from None
        if rgb.dtype.itemsize > 1 and rgb.max(initial=0) > 255:
            rgb = rgb >> 8
        np.copyto(out, rgb, casting="unsafe")
        return
    if raw.ndim == 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    _check_shape(raw, out, path)
    np.copyto(out, raw, casting="unsafe")
    rescale_in_place(out, plan, t)


def _wrapped(value: float, dtype: np.dtype) -> np.ndarray:
    """An integer constant as a 0-d array of ``dtype``, wrapped modulo 2**bits."""
    return np.array(int(value), dtype=np.int64).astype(dtype)


def rescale_in_place(out: np.ndarray, plan: ValuePlan, t: Transform) -> None:
    """``out = slope * out + intercept`` (then MONOCHROME1 inversion) without temporaries.

    Integer outputs use modular arithmetic: when the stored value was cast with wrap-around
    (e.g. uint16 read as int16) the final result is still exact, because the plan chose a
    dtype that holds every real value.
    """
    if plan.kind != "grey":
        return
    slope, intercept = t
    if out.dtype.kind in "iu":
        if slope != 1:
            out *= _wrapped(slope, out.dtype)
        if intercept != 0:
            out += _wrapped(intercept, out.dtype)
        if plan.monochrome1:
            lo, hi = plan.real_range(t)
            np.subtract(_wrapped(lo + hi, out.dtype), out, out=out)
        return
    if slope != 1:
        out *= out.dtype.type(slope)
    if intercept != 0:
        out += out.dtype.type(intercept)
    if plan.monochrome1:
        lo, hi = plan.real_range(t)
        np.subtract(out.dtype.type(lo + hi), out, out=out)


def fill_native(native, index: int, plan: ValuePlan, t: Transform, out: np.ndarray,
                scratch: dict) -> None:
    """Read frame ``index`` of an uncompressed file into ``out``: straight into its memory
    when the stored integers have the output's width, through a reused buffer otherwise."""
    same_width = (plan.kind == "grey" and native.dtype.kind in "iu" and out.dtype.kind in "iu"
                  and native.dtype.itemsize == out.dtype.itemsize
                  and float(t[0]).is_integer() and float(t[1]).is_integer())
    if same_width or (plan.kind == "rgb" and native.dtype == out.dtype):
        native.read(index, out=out.view(native.dtype))
        rescale_in_place(out, plan, t)
        return
    buf = scratch.get("buf")
    if buf is None or buf.dtype != native.dtype or buf.shape != native.shape:
        buf = scratch["buf"] = np.empty(native.shape, native.dtype)
    store(native.read(index, out=buf), "", plan, t, out, native.h.path)


def _check_shape(raw: np.ndarray, out: np.ndarray, path: str) -> None:
    if raw.shape != out.shape:
        raise LoadError(path, f"decoded frame has shape {raw.shape}, expected {out.shape} "
                        "(inconsistent pixel description)")


def window_of(item: Dataset | None) -> tuple[float, float] | None:
    """First (WindowCenter, WindowWidth) pair, when present and sensible."""
    if item is None:
        return None
    c, w = item.get("WindowCenter"), item.get("WindowWidth")
    if c in (None, "") or w in (None, ""):
        return None
    try:
        c = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
        w = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
    except (TypeError, ValueError, IndexError):
        return None
    if not (np.isfinite(c) and np.isfinite(w)) or w <= 0:
        return None
    return c, w


def units_of(ds: Dataset, modality: str, transforms: list[Transform]) -> str:
    """Real-world units: HU for CT, the PET Units attribute, RescaleType otherwise."""
    rtype = str(ds.get("RescaleType", "") or "").strip()
    if modality == "CT":
        return "HU"
    if modality == "PT":
        return str(ds.get("Units", "") or rtype)
    if rtype and rtype.upper() != "US":
        return rtype
    return ""
