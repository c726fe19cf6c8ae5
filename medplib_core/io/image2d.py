"""2D images (PNG, JPEG, TIFF, BMP) as one-slice volumes: shape (1, H, W) or (1, H, W, 3).

Pixels are kept as stored (no EXIF rotation, no flips), spacing 1 mm, identity direction,
modality "OT". Grey stays grey (uint8/uint16/float32), RGBA and palettes become RGB (or grey
when the palette is grey), 16-bit colour PNG/TIFF is read with OpenCV to keep 16 bits.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..errors import LoadError
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
        arr = _read_cv2(path)
        notes.append("16-bit colour read with OpenCV")
    else:
        try:
            with Image.open(path) as im:
                n_frames = getattr(im, "n_frames", 1)
                if n_frames > 1:
                    notes.append(f"multi-page image: loaded page 1 of {n_frames}")
                im.load()
                arr = _from_pillow(im, notes)
        except UnidentifiedImageError:
            raise LoadError(path, "not a recognised image format") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            if fmt == "TIFF" and "truncated" not in str(exc).lower():
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
    return Volume(arr, modality="OT", source=source)
