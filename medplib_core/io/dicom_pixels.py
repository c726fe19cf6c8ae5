"""DICOM pixel decoding: frame readers (a fast native path, pydicom's plug-ins otherwise)."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator

import numpy as np
import pydicom
from pydicom import uid as U
from pydicom.dataset import Dataset

from ..errors import FATAL, LoadError
from ..limits import human_bytes, voxel_excess
from .dicom_encaps import count_fragments
from .dicom_series import Header, transfer_syntax

NATIVE = {U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian, U.ExplicitVRBigEndian}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UT", b"SQ", b"UC", b"UR"}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_FLOAT_TAGS = {(0x7FE0, 0x0008): np.float32, (0x7FE0, 0x0009): np.float64}

_LIBJPEG = "pylibjpeg + pylibjpeg-libjpeg"
_OPENJPEG = "pylibjpeg + pylibjpeg-openjpeg"
PLUGIN_HINTS = {
    U.JPEGBaseline8Bit: f"{_LIBJPEG}, Pillow or python-gdcm",
    U.JPEGExtended12Bit: f"{_LIBJPEG} or python-gdcm",
    U.JPEGLossless: f"{_LIBJPEG} or python-gdcm",
    U.JPEGLosslessSV1: f"{_LIBJPEG} or python-gdcm",
    U.JPEGLSLossless: f"pyjpegls, {_LIBJPEG} or python-gdcm",
    U.JPEGLSNearLossless: f"pyjpegls, {_LIBJPEG} or python-gdcm",
    U.JPEG2000Lossless: f"{_OPENJPEG}, Pillow or python-gdcm",
    U.JPEG2000: f"{_OPENJPEG}, Pillow or python-gdcm",
    U.HTJ2KLossless: f"{_OPENJPEG} >= 2.2",
    U.HTJ2KLosslessRPCL: f"{_OPENJPEG} >= 2.2",
    U.HTJ2K: f"{_OPENJPEG} >= 2.2",
    U.RLELossless: "pydicom itself or pylibjpeg-rle",
}


def _ts_label(ts) -> str:
    return f"{ts.name} ({ts})" if ts is not None and ts.name != str(ts) else str(ts)


def check_decodable(path: str, ts) -> None:
    """Raise LoadError naming the plug-in that would decode ``ts`` when none is usable."""
    if ts is None or ts in NATIVE or ts.is_deflated:
        return
    try:
        dec = pydicom.pixels.get_decoder(ts)
    except NotImplementedError:
        what = "video" if ts in U.MPEGTransferSyntaxes or "HEVC" in str(ts.name) else "it"
        raise LoadError(path, f"unsupported transfer syntax {_ts_label(ts)}: no pydicom "
                        f"plug-in decodes {what}",
                        hint="convert the file (e.g. with dcmtk's dcmdjpeg/ffmpeg) or export "
                        "it uncompressed") from None
    if not dec.is_available:
        raise LoadError(path, f"transfer syntax {_ts_label(ts)} needs a decoder plug-in that "
                        "is not installed",
                        hint="install " + PLUGIN_HINTS.get(ts, "one of: " + "; ".join(
                            dec.missing_dependencies)))


def stored_dtype(ds: Dataset, path: str) -> np.dtype:
    """NumPy dtype of the stored grey values (native byte order)."""
    ba = int(ds.get("BitsAllocated", 0) or 0)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if ba == 1:
        return np.dtype(np.uint8)
    if ba not in (8, 16, 32, 64):
        raise LoadError(path, f"unsupported Bits Allocated {ba} in the pixel description")
    return np.dtype(f"{'i' if signed else 'u'}{ba // 8}")


def stored_range(ds: Dataset, dtype: np.dtype) -> tuple[float, float]:
    """Smallest and largest storable value given Bits Stored."""
    if dtype.kind == "f":
        return float(np.finfo(dtype).min), float(np.finfo(dtype).max)
    bs = int(ds.get("BitsStored", 0) or 0) or dtype.itemsize * 8
    bs = min(bs, dtype.itemsize * 8)
    if dtype.kind == "i":
        return float(-(2 ** (bs - 1))), float(2 ** (bs - 1) - 1)
    return 0.0, float(2**bs - 1)


class NativeFrames:
    """Reads uncompressed frames straight from the file (no pydicom parse of the pixels).

    Use as a context manager; ``read(index)`` returns one frame as stored (native byte
    order, sign-extended / masked to Bits Stored). `open_native` decides if it applies.
    """

    def __init__(self, h: Header, dtype: np.dtype, shape: tuple, start: int, big: bool):
        self.h, self.dtype, self.shape, self.start, self.big = h, dtype, shape, start, big
        self.frame_bytes = int(np.prod(shape)) * dtype.itemsize
        self.fh = None
        bs = int(h.ds.get("BitsStored", 0) or 0)
        self.shift = dtype.itemsize * 8 - bs if dtype.kind in "iu" and 0 < bs < dtype.itemsize * 8 \
            else 0

    def __enter__(self) -> "NativeFrames":
        self.fh = open(self.h.path, "rb")
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        buf = out if out is not None else np.empty(self.shape, self.dtype)
        self.fh.seek(self.start + index * self.frame_bytes)
        got = self.fh.readinto(memoryview(buf).cast("B"))
        if got != self.frame_bytes:
            raise LoadError(self.h.path, f"truncated pixel data: frame {index + 1} has {got} of "
                            f"{self.frame_bytes} bytes")
        if self.big and self.dtype.itemsize > 1:
            buf.byteswap(inplace=True)
        if self.shift:
            if self.dtype.kind == "i":
                np.left_shift(buf, self.shift, out=buf)
                np.right_shift(buf, self.shift, out=buf)
            else:
                np.bitwise_and(buf, (1 << (self.dtype.itemsize * 8 - self.shift)) - 1, out=buf)
        return buf


def open_native(h: Header) -> NativeFrames | None:
    """A `NativeFrames` reader when the file's pixels are plain uncompressed samples."""
    ts = transfer_syntax(h)
    ds = h.ds
    if ts not in NATIVE or h.pixel_offset is None:
        return None
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    ba = int(ds.get("BitsAllocated", 0) or 0)
    if ba not in (8, 16, 32) or spp not in (1, 3):
        return None
    if spp == 3 and (pi != "RGB" or int(ds.get("PlanarConfiguration", 0) or 0) != 0):
        return None
    if spp == 1 and pi not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"):
        return None
    big = ts == U.ExplicitVRBigEndian
    length, hdr = pixel_element_length(h)
    if length == 0xFFFFFFFF:
        return None  # encapsulated data under a native syntax: let pydicom complain
    if h.pixel_tag in _FLOAT_TAGS:
        dtype = np.dtype(_FLOAT_TAGS[h.pixel_tag])
    else:
        dtype = stored_dtype(ds, h.path)
    rows, cols = int(ds.Rows), int(ds.Columns)
    shape = (rows, cols, 3) if spp == 3 else (rows, cols)
    need = rows * cols * spp * dtype.itemsize * h.n_frames
    have = min(length, h.size - h.pixel_offset - hdr)
    if have < need:
        raise LoadError(h.path, f"truncated pixel data: {have} of {need} bytes present")
    return NativeFrames(h, dtype, shape, h.pixel_offset + hdr, big)


def pixel_element_length(h: Header) -> tuple[int, int]:
    """(value length, header bytes) of the pixel data element; length 0xFFFFFFFF when
    encapsulated (undefined length)."""
    ts = transfer_syntax(h)
    head = h.pixel_head
    if len(head) < 8:
        raise LoadError(h.path, "truncated pixel data: the file ends in the pixel data header")
    e = ">" if ts == U.ExplicitVRBigEndian else "<"
    if ts == U.ImplicitVRLittleEndian:
        return struct.unpack("<I", head[4:8])[0], 8
    if head[4:6] in _LONG_VRS:
        if len(head) < 12:
            raise LoadError(h.path, "truncated pixel data: the file ends in the pixel data header")
        return struct.unpack(e + "I", head[8:12])[0], 12
    return struct.unpack(e + "H", head[6:8])[0], 8


def check_declared_frames(h: Header) -> None:
    """Before any per-frame work, compare what the header declares with what the file holds:
    the decoded frames must fit the voxel limit, an uncompressed file must hold every frame's
    bytes and a compressed one at least one fragment per frame. (A 2 kB file that declares
    2**31 - 1 frames is refused here instead of being walked frame by frame.)"""
    ds = h.ds
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 0) or 0)
    except (AttributeError, TypeError, ValueError):
        return  # make_plan names the problem
    n = h.n_frames
    if h.pixel_offset is not None and n > 1:  # (deflated files were measured when read)
        length, hdr = pixel_element_length(h)
        start = h.pixel_offset + hdr
        if length == 0xFFFFFFFF:
            found = count_fragments(h.path, start, n)
            if found < n:
                raise LoadError(h.path, f"truncated pixel data: the header declares {n} frames "
                                f"but the pixel data holds only {found} compressed fragment(s)")
        else:
            need = rows * cols * spp * n * bits // 8 if bits != 1 else -(-rows * cols * n // 8)
            have = min(length, max(h.size - start, 0))
            if have < need:
                raise LoadError(h.path, f"truncated pixel data: the header declares {n} frames "
                                f"of {rows}×{cols} ({human_bytes(need)}) but the file holds "
                                f"{human_bytes(have)} of pixel data")
    itemsize = np.dtype(h.float_dtype).itemsize if h.float_dtype else max(bits // 8, 1)
    shape = (n, rows, cols) + ((spp,) if spp > 1 else ())
    excess = voxel_excess(shape, itemsize, "samples")
    if excess:
        raise LoadError(h.path, excess)


def _decode_error(path: str, ts, exc: BaseException) -> LoadError:
    msg = str(exc)
    low = msg.lower()
    if any(w in low for w in ("less than expected", "truncat", "insufficient", "end of file",
                              "unexpected end", "not enough")):
        return LoadError(path, f"truncated pixel data ({msg})")
    hint = None
    if ts is not None and ts in PLUGIN_HINTS:
        hint = "decoders for this syntax: " + PLUGIN_HINTS[ts]
    return LoadError(path, f"could not decode the pixel data ({_ts_label(ts)}): "
                     f"{type(exc).__name__}: {msg}", hint=hint)


def iter_decoded(path: str, force: bool, indices: list[int] | None = None,
                 dataset: Dataset | None = None) -> Iterator[tuple[int, np.ndarray, str]]:
    """Decode frames with pydicom's plug-ins: yields (frame index, array, photometric).

    Colour comes back as RGB (YBR converted); grey/palette frames as stored values.
    ``dataset``: the file already read with its pixel data (a deflated file), else it is read.
    Whatever a plug-in raises, a native panic included, becomes a LoadError.
    """
    if dataset is not None and any(k in dataset for k in _PIXEL_KEYWORDS):
        ds = dataset
    else:
        try:
            ds = pydicom.dcmread(path, force=force)
        except FATAL:
            raise
        except BaseException as exc:
            raise LoadError(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})") from None
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    ts = U.UID(str(ts)) if ts else U.ImplicitVRLittleEndian
    check_decodable(path, ts)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise LoadError(path, "truncated pixel data: the pixel data element is incomplete")
    try:
        decoder = pydicom.pixels.get_decoder(ts)
    except NotImplementedError as exc:
        raise _decode_error(path, ts, exc) from None
    try:
        it = decoder.iter_array(ds, indices=indices, as_rgb=True)
    except FATAL:
        raise
    except BaseException as exc:
        raise _decode_error(path, ts, exc) from None
    n = 0
    order = list(indices) if indices is not None else None
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr, info = next(it)
        except StopIteration:
            return
        except (LoadError, *FATAL):
            raise
        except BaseException as exc:  # a Rust plug-in's panic is no Exception
            raise _decode_error(path, ts, exc) from None
        idx = order[n] if order is not None else n
        n += 1
        yield idx, arr, str(info.get("photometric_interpretation", "") or "")
