"""What travels between the engine server and its clients: content ids, pixels and masks.

Everything is JSON. Arrays travel as ``base64(zlib(raw bytes))`` next to their shape; masks
are bit-packed first (``numpy.packbits``, row-major), so a 512x512 mask is a few hundred
bytes. Slices and volumes are named by a SHA-256 of their bytes, shape and dtype (and, for
volumes, their geometry), so a client asks whether the server has them before sending them.

Only numpy and the standard library: the thin client imports this module.
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from typing import Any, Sequence

import numpy as np

from medplib_core.errors import MedplibError

MASK_ENCODING = "zlib-packbits"
ARRAY_ENCODING = "zlib"
VOLUME_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")


class WireError(MedplibError):
    """A payload does not decode; ``field`` names the part of the request that is wrong."""

    def __init__(self, field: str, reason: str, status: int = 400):
        self.field = field
        self.reason = reason
        self.status = status  # 413 when the payload is larger than the server takes
        super().__init__(f"{field}: {reason}")


def _digest(*parts: bytes | memoryview) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _header(kind: str, dtype: str, shape: Sequence[int]) -> bytes:
    return f"medplib-{kind}-v1|{dtype}|{','.join(str(int(n)) for n in shape)}|".encode()


def as_slice(image: np.ndarray) -> np.ndarray:
    """A displayed slice as the server receives it: ``uint8`` (H, W) or (H, W, 3), contiguous.

    uint8 slices pass unchanged (the engines normalise them identically on either side);
    anything else goes through the engines' own check first, so both sides see one array.
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        return np.ascontiguousarray(arr)
    from medplib_core.engines.prompts import check_image

    return check_image(arr)[0]


def image_id(image: np.ndarray) -> str:
    """The content id of a slice (see `as_slice`)."""
    arr = np.ascontiguousarray(image)
    return _digest(_header("image", str(arr.dtype), arr.shape), memoryview(arr).cast("B"))


def pack_array(arr: np.ndarray, level: int = 1) -> str:
    return base64.b64encode(zlib.compress(memoryview(np.ascontiguousarray(arr)).cast("B"), level)).decode()


def unpack_array(data: str, shape: Sequence[int], dtype: str, field: str, max_bytes: int) -> np.ndarray:
    """Decode ``pack_array`` output; never inflates more than ``max_bytes`` (zip bombs)."""
    try:
        shape = tuple(int(n) for n in shape)
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise WireError(field, f"bad shape or dtype ({exc})") from exc
    if any(n <= 0 for n in shape):
        raise WireError(field, f"every dimension must be positive, got {list(shape)}")
    want = math.prod(shape) * dt.itemsize
    if want > max_bytes:
        raise WireError(field, f"{want} bytes exceed the limit of {max_bytes}", status=413)
    raw = _inflate(data, want, field)
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


def _inflate(data: str, want: int, field: str) -> bytes:
    try:
        packed = base64.b64decode(data, validate=True)
        d = zlib.decompressobj()
        raw = d.decompress(packed, want + 1)
    except (ValueError, zlib.error) as exc:
        raise WireError(field, f"not base64-encoded zlib data ({exc})") from exc
    if len(raw) != want or not d.eof:
        raise WireError(field, f"decodes to {len(raw)}{'+' if not d.eof else ''} bytes, "
                               f"the shape needs {want}")
    return raw


# ----- slices -------------------------------------------------------------------------------
def image_payload(image: np.ndarray) -> dict[str, Any]:
    """Upload body of a slice already passed through `as_slice`."""
    return {"id": image_id(image), "shape": list(image.shape), "data": pack_array(image)}


def image_from_payload(body: dict[str, Any], max_bytes: int) -> np.ndarray:
    shape = list(body.get("shape") or [])
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
        raise WireError("shape", f"a slice is [H, W] or [H, W, 3], got {shape}")
    if min(shape[:2]) < 2:
        raise WireError("shape", f"a slice needs at least 2x2 pixels, got {shape}")
    arr = unpack_array(body.get("data", ""), shape, "uint8", "data", max_bytes)
    if image_id(arr) != body.get("id"):
        raise WireError("id", "does not match the SHA-256 of the pixels (see medplib_core.server.wire)")
    return arr


# ----- masks --------------------------------------------------------------------------------
def mask_payload(mask: np.ndarray) -> dict[str, Any]:
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    return {"shape": list(m.shape), "encoding": MASK_ENCODING, "data": pack_array(np.packbits(m))}


def mask_from_payload(body: dict[str, Any], field: str, max_bytes: int = 2**31) -> np.ndarray:
    """A bool mask from `mask_payload` output."""
    shape = tuple(int(n) for n in body.get("shape") or [])
    if len(shape) not in (2, 3) or any(n <= 0 for n in shape):
        raise WireError(f"{field}.shape", f"a mask is [H, W] or [K, H, W], got {list(shape)}")
    if body.get("encoding", MASK_ENCODING) != MASK_ENCODING:
        raise WireError(f"{field}.encoding", f"only {MASK_ENCODING!r} is understood")
    n = math.prod(shape)
    if n > max_bytes * 8:
        raise WireError(field, f"{n} pixels exceed the limit", status=413)
    raw = _inflate(body.get("data", ""), (n + 7) // 8, f"{field}.data")
    return np.unpackbits(np.frombuffer(raw, np.uint8), count=n).reshape(shape).astype(bool)


# ----- volumes ------------------------------------------------------------------------------
def _geometry(volume) -> tuple[list[float], list[float], list[float]]:
    return ([float(v) for v in volume.spacing], [float(v) for v in volume.origin],
            [float(v) for v in np.asarray(volume.direction, float).reshape(-1)])


def volume_id(volume) -> str:
    """Content id of a `Volume`: voxels, dtype, shape and geometry (not the window)."""
    arr = np.ascontiguousarray(volume.array)
    geo = repr(_geometry(volume)).encode()
    return _digest(_header("volume", str(arr.dtype), arr.shape), geo, memoryview(arr).cast("B"))


def volume_payload(volume) -> dict[str, Any]:
    arr = np.ascontiguousarray(volume.array)
    if arr.ndim != 3 or str(arr.dtype) not in VOLUME_DTYPES:
        raise WireError("volume", f"only grey [K, J, I] volumes of {', '.join(VOLUME_DTYPES)} "
                                  f"are sent to a server, got {arr.dtype} {list(arr.shape)}")
    spacing, origin, direction = _geometry(volume)
    return {"id": volume_id(volume), "shape": list(arr.shape), "dtype": str(arr.dtype),
            "spacing": spacing, "origin": origin, "direction": direction,
            "window": list(volume.window) if volume.window else None, "data": pack_array(arr)}


def volume_from_payload(body: dict[str, Any], max_bytes: int):
    from medplib_core.volume import Volume

    shape = list(body.get("shape") or [])
    if len(shape) != 3:
        raise WireError("shape", f"a volume is [K, J, I], got {shape}")
    if body.get("dtype") not in VOLUME_DTYPES:
        raise WireError("dtype", f"one of {', '.join(VOLUME_DTYPES)}")
    arr = unpack_array(body.get("data", ""), shape, body["dtype"], "data", max_bytes)
    direction = np.asarray(body.get("direction"), float)
    if direction.size != 9 or not np.isfinite(direction).all() or abs(np.linalg.det(direction.reshape(3, 3))) < 1e-6:
        raise WireError("direction", "nine finite numbers forming an invertible matrix")
    spacing = [float(v) for v in body.get("spacing") or []]
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise WireError("spacing", "three positive numbers")
    window = body.get("window")
    vol = Volume(arr, spacing=tuple(spacing), origin=tuple(body.get("origin") or (0, 0, 0)),
                 direction=direction.reshape(3, 3), window=tuple(window) if window else None)
    if volume_id(vol) != body.get("id"):
        raise WireError("id", "does not match the SHA-256 of the voxels and geometry")
    return vol
