"""2D images (PNG, JPEG, TIFF, BMP) as one-slice volumes: shape (1, H, W) or (1, H, W, 3).

Pixels are kept as stored (no EXIF rotation, no flips), spacing 1 (not physical: no
millimetres, so no millilitres), identity direction, modality "OT". Every decoder sees the
declared size checked against the voxel limit first, OpenCV included. Grey stays grey (uint8/uint16/float32), RGBA and palettes become RGB (or grey
when the palette is grey), 16-bit colour PNG/TIFF is read with OpenCV to keep 16 bits.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..errors import LoadError
from ..limits import voxel_excess
from ..volume import SourceInfo, Volume

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def sniff_image(path: str) -> str | None:
    """Return "PNG", "JPEG", "TIFF" or "BMP" from the file's first bytes, else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return None
    for magic, name in _MAGIC:
        if head.startswith(magic):
            if name == "BMP" and (len(head) < 18 or struct.unpack("<I", head[14:18])[0]
                                  not in (12, 40, 52, 56, 64, 108, 124)):
                return None
            return name
    return None


def _png_is_16bit_colour(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(26)
    return len(head) >= 26 and head[24] == 16 and head[25] in (2, 6)


def _png_size(path: str) -> tuple[int, int, int]:
    """(height, width, channels) from a PNG's IHDR chunk."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    width, height = struct.unpack(">II", head[16:24])
    return height, width, 4 if head[25] == 6 else 3


def _tiff_size(path: str) -> tuple[int, int, int] | None:
    """(height, width, samples per pixel) from the first directory of a TIFF, or None."""
    try:
        return _tiff_ifd0(path)
    except (OSError, struct.error, ValueError):
        return None


def _tiff_ifd0(path: str) -> tuple[int, int, int] | None:
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) < 8:
            return None
        e = "<" if head[:2] == b"II" else ">"
        big = struct.unpack(e + "H", head[2:4])[0] == 43
        offset = struct.unpack(e + "Q", head[8:16])[0] if big else struct.unpack(e + "I", head[4:8])[0]
        fh.seek(offset)
        raw = fh.read(8 if big else 2)
        if len(raw) < (8 if big else 2):
            return None
        count = struct.unpack(e + ("Q" if big else "H"), raw)[0]
        entry, fmt = (20, "HHQ8s") if big else (12, "HHI4s")
        table = fh.read(entry * min(count, 4096))
    found: dict[int, int] = {}
    for m in range(len(table) // entry):
        tag, kind, _, value = struct.unpack(e + fmt, table[m * entry:(m + 1) * entry])
        if tag in (256, 257, 277):
            code = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if code is not None:
                found[tag] = struct.unpack_from(e + code, value)[0]
    if 256 not in found or 257 not in found:
        return None
    return found[257], found[256], found.get(277, 1)


def _check_size(path: str, shape: tuple, itemsize: int) -> None:
    excess = voxel_excess(shape, itemsize, "pixels")
    if excess:
        raise LoadError(path, excess)


def _pillow_shape(im) -> tuple[tuple[int, ...], int]:
    """The shape and item size of the array a Pillow image will decode to."""
    width, height = im.size
    mode = im.mode
    bands = 3 if mode in ("P", "PA") else len(im.getbands())
    itemsize = 4 if mode in ("I", "F") else 2 if mode.startswith("I;16") else 1
    return (height, width, bands), itemsize


def _read_cv2(path: str) -> np.ndarray:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise LoadError(path, "the image data cannot be decoded (corrupt or truncated)")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return arr


def _from_pillow(im, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("L", "F"):
        return np.asarray(im)
    if mode == "LA":
        notes.append("alpha channel dropped")
        return np.asarray(im.convert("L"))
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        a = np.asarray(im)
        if a.size and a.min() >= 0 and a.max() <= 65535:
            return a.astype(np.uint16)
        return a.astype(np.int32)
    if mode in ("RGBA", "PA", "P"):
        rgba = "A" in mode or "transparency" in im.info
        if rgba:
            notes.append("alpha channel dropped")
        rgb = np.asarray(im.convert("RGB"))
        if mode in ("P", "PA") and np.array_equal(rgb[..., 0], rgb[..., 1]) and \
                np.array_equal(rgb[..., 1], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0])
        return rgb
    if mode != "RGB":
        notes.append(f"{mode} converted to RGB")
        im = im.convert("RGB")
    return np.asarray(im)


def load_image(path: str, report=None) -> Volume:
    """Read a 2D image file into a one-slice `Volume`."""
    from PIL import Image, UnidentifiedImageError

    fmt = sniff_image(path)
    notes: list[str] = []
    if report is not None:
        report(0, 1)
    if fmt == "PNG" and _png_is_16bit_colour(path):
        _check_size(path, _png_size(path), 2)  # OpenCV has no decompression-bomb guard
        arr = _read_cv2(path)
        notes.append("16-bit colour read with OpenCV")
    else:
        try:
            with Image.open(path, formats=[fmt] if fmt else None) as im:
                shape, itemsize = _pillow_shape(im)
                _check_size(path, shape, itemsize)
                n_frames = getattr(im, "n_frames", 1)
                if n_frames > 1:
                    notes.append(f"multi-page image: loaded page 1 of {n_frames}")
                im.load()
                arr = _from_pillow(im, notes)
        except UnidentifiedImageError:
            raise LoadError(path, "not a recognised image format") from None
        except Image.DecompressionBombError as exc:
            raise LoadError(path, f"refused as a decompression bomb ({exc})",
                            hint="set MEDPLIB_MAX_VOXEL_BYTES to raise the limit") from None
        except (OSError, ValueError, SyntaxError, struct.error) as exc:
            tiff = _tiff_size(path) if fmt == "TIFF" else None
            if tiff is not None and "truncated" not in str(exc).lower():
                _check_size(path, tiff, 2)  # at most 16 bits a sample through OpenCV
                arr = _read_cv2(path)  # e.g. 16-bit RGB TIFF that Pillow cannot unpack
            else:
                reason = "truncated image data" if "truncated" in str(exc).lower() else \
                    f"the image cannot be decoded ({exc})"
                raise LoadError(path, reason) from None
    if arr.ndim == 3 and arr.shape[2] not in (3,):
        raise LoadError(path, f"unsupported image layout {arr.shape}")
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise LoadError(path, f"unsupported image layout {arr.shape}")
    arr = np.ascontiguousarray(arr[np.newaxis])
    if report is not None:
        report(1, 1)
    source = SourceInfo(path=os.fspath(path), kind="image", files=[os.fspath(path)],
                        notes=notes)
    return Volume(arr, modality="OT", source=source, physical_spacing=False)
