"""Fast path for compressed greyscale frames: read the fragments straight from the file and
call the codec (OpenJPEG, libjpeg, CharLS) directly, skipping a second full parse of the file
and pydicom's decoding pipeline. Anything unusual returns None / raises `Fallback`, and the
caller then decodes with pydicom as usual.
"""

from __future__ import annotations

import importlib
import struct

import numpy as np
from pydicom import uid as U

from ..errors import FATAL
from .dicom_series import Header, transfer_syntax

_ITEM, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)


def _openjpeg(data: bytes) -> np.ndarray:
    return importlib.import_module("openjpeg").decode(data)


def _libjpeg(data: bytes) -> np.ndarray:
    return importlib.import_module("libjpeg").decode(data)


def _charls(data: bytes) -> np.ndarray:
    return importlib.import_module("jpeg_ls").decode(np.frombuffer(data, np.uint8))


CODECS = {
    U.JPEG2000Lossless: ("openjpeg", _openjpeg),
    U.JPEG2000: ("openjpeg", _openjpeg),
    U.JPEGLossless: ("libjpeg", _libjpeg),
    U.JPEGLosslessSV1: ("libjpeg", _libjpeg),
    U.JPEGLSLossless: ("jpeg_ls", _charls),
    U.JPEGLSNearLossless: ("jpeg_ls", _charls),
}


class Fallback(Exception):
    """The fast path cannot handle this frame; decode it with pydicom instead."""


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:
        return False


class EncapsulatedFrames:
    """The compressed frames of one file, decoded one at a time with a direct codec call."""

    def __init__(self, h: Header, codec, fragments: list[bytes], offsets: list[int] | None,
                 expected: np.dtype):
        self.h, self.codec, self.expected = h, codec, expected
        self.shape = (int(h.ds.Rows), int(h.ds.Columns))
        n = h.n_frames
        if n == 1:
            self.frames = [b"".join(fragments)]
        elif offsets and len(offsets) == n:
            self.frames = _split_by_offsets(fragments, offsets)
        elif len(fragments) == n:
            self.frames = fragments
        else:
            raise Fallback("cannot tell frames apart without an offset table")

    def decode(self, index: int) -> np.ndarray:
        try:
            arr = self.codec(self.frames[index])
        except FATAL:
            raise
        except BaseException as exc:  # the caller retries with pydicom for a precise reason
            raise Fallback(str(exc)) from None
        if arr.shape != self.shape or arr.dtype.itemsize != self.expected.itemsize or \
                (arr.dtype.kind == "i") != (self.expected.kind == "i"):
            raise Fallback(f"codec returned {arr.dtype}{arr.shape}")
        return arr


def _split_by_offsets(fragments: list[bytes], offsets: list[int]) -> list[bytes]:
    starts, pos = [], 0
    for frag in fragments:
        starts.append(pos)
        pos += 8 + len(frag)
    frames = []
    for i, off in enumerate(offsets):
        end = offsets[i + 1] if i + 1 < len(offsets) else pos
        frames.append(b"".join(f for f, s in zip(fragments, starts) if off <= s < end))
    if any(not f for f in frames):
        raise Fallback("offset table does not match the fragments")
    return frames


def open_encapsulated(h: Header) -> EncapsulatedFrames | None:
    """An `EncapsulatedFrames` reader for greyscale frames under a supported syntax."""
    ts = transfer_syntax(h)
    ds = h.ds
    if ts not in CODECS or h.pixel_offset is None or h.pixel_tag != (0x7FE0, 0x0010):
        return None
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or int(ds.get("BitsAllocated", 0) or 0) \
            not in (8, 16):
        return None
    pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if pi not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    module, codec = CODECS[ts]
    if not _available(module):
        return None
    head = h.pixel_head
    if len(head) < 12 or head[4:6] != b"OB" or struct.unpack("<I", head[8:12])[0] != 0xFFFFFFFF:
        return None
    try:
        with open(h.path, "rb") as fh:
            fh.seek(h.pixel_offset + 12)
            data = fh.read()
        offsets, fragments = _parse_items(data)
        ba = int(ds.BitsAllocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        expected = np.dtype(f"{'i' if signed else 'u'}{ba // 8}")
        return EncapsulatedFrames(h, codec, fragments, offsets, expected)
    except (Fallback, OSError, struct.error, ValueError, AttributeError):
        return None


def count_fragments(path: str, start: int, stop_at: int) -> int:
    """Non-empty fragments of the encapsulated pixel data starting at ``start`` (after the
    element header), counted from the item headers alone; stops at ``stop_at`` or at the
    first malformed or truncated item."""
    found = 0
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        pos, first = start, True
        while found < stop_at and pos + 8 <= size:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                break
            g, e, length = struct.unpack("<HHI", head)
            if (g, e) != _ITEM or length == 0xFFFFFFFF or pos + 8 + length > size:
                break
            if not first and length:
                found += 1
            first = False  # the first item is the basic offset table
            pos += 8 + length
    return found


def _parse_items(data: bytes) -> tuple[list[int], list[bytes]]:
    """(basic offset table, fragments) of an encapsulated pixel data value."""
    pos, items = 0, []
    while pos + 8 <= len(data):
        g, e, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if (g, e) == _SEQ_END:
            break
        if (g, e) != _ITEM or length == 0xFFFFFFFF or pos + length > len(data):
            raise Fallback("malformed or truncated fragment")
        items.append(data[pos:pos + length])
        pos += length
    else:
        raise Fallback("no sequence delimiter: truncated pixel data")
    if not items:
        raise Fallback("no basic offset table")
    bot = items[0]
    offsets = list(struct.unpack(f"<{len(bot) // 4}I", bot)) if bot else []
    if len(items) < 2:
        raise Fallback("no fragments")
    return offsets, items[1:]
