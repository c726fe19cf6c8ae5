"""Hostile inputs for the robustness tests, generated here (never copied from ../shared).

Each function writes one file and returns its path: a Rust-decoder panic, DICOM declaring more
frames than it holds, bombs (NIfTI, gzip, 16-bit PNG, TIFF, deflated DICOM), NaN geometry,
plus truncations and seeded byte flips of real files. (No tests here.)
"""

from __future__ import annotations

import gzip
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from test_io_support import ct_dataset

ZERO_CHUNK = bytes(1 << 20)


def rle_panic_dicom(path: Path) -> Path:
    """MR_small_RLE.dcm with a frame whose first segment decodes one byte too many: the Rust
    RLE decoder (pylibjpeg-rle) panics with an index out of bounds."""
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    n = ds.Rows * ds.Columns

    def runs(count: int) -> bytes:
        return b"\x81\x07" * -(-count // 128)  # replicate runs of 128 bytes

    first, second = runs(n + 1), runs(n)
    header = struct.pack("<16I", 2, 64, 64 + len(first), *([0] * 13))
    ds.PixelData = encapsulate([header + first + second])
    ds.save_as(path)
    return Path(path)


def declared_frames_dicom(path: Path, frames: int, source: str | None = None) -> Path:
    """A small file whose NumberOfFrames says ``frames``: uncompressed (``source`` None) or a
    compressed pydicom test file."""
    if source is None:
        ds = ct_dataset(path, ipp=(0, 0, 0))
        ds.NumberOfFrames = frames
        ds.save_as(path, enforce_file_format=True)
    else:
        ds = pydicom.dcmread(get_testdata_file(source))
        ds.NumberOfFrames = frames
        ds.save_as(path)
    return Path(path)


def nifti_header(shape, dtype, affine=None) -> bytes:
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["vox_offset"] = 352
    aff = np.eye(4) if affine is None else np.asarray(affine, float)
    hdr.set_sform(aff, 1)
    try:
        hdr.set_qform(aff, 1)
    except Exception:  # noqa: BLE001 - NaN or singular: nibabel cannot decompose it; sform only
        hdr["qform_code"] = 0
    return hdr.binaryblock + b"\0" * 4  # the extension flag, then the voxels at 352


def nifti_declaring(path: Path, shape, dtype=np.int16, payload: int = 1 << 20) -> Path:
    """A .nii.gz whose header declares ``shape`` but that holds only ``payload`` zero bytes."""
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(nifti_header(shape, dtype))
        for start in range(0, payload, len(ZERO_CHUNK)):
            fh.write(ZERO_CHUNK[: min(len(ZERO_CHUNK), payload - start)])
    return Path(path)


def gzip_bomb_nifti(path: Path, shape, dtype=np.uint8) -> Path:
    """A real gzip bomb: every declared voxel is there, all zero, a thousand to one."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return nifti_declaring(path, shape, dtype, payload=n)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16_rgb_bomb(path: Path, width: int, height: int) -> Path:
    """A 16-bit RGB PNG of zeros (6 bytes a pixel), compressed row by row."""
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + width * 6)
    parts = [comp.compress(row) for _ in range(height)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
                           + _chunk(b"IEND", b""))
    return Path(path)


def tiff_bomb(path: Path, width: int, height: int) -> Path:
    """An 8-bit grey TIFF of zeros in one deflate strip (past Pillow's bomb threshold when
    ``width * height`` is above about 179 million)."""
    comp = zlib.compressobj(9)
    total = width * height
    data = b"".join(comp.compress(ZERO_CHUNK[: min(len(ZERO_CHUNK), total - s)])
                    for s in range(0, total, len(ZERO_CHUNK))) + comp.flush()
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(data))]
    ifd_size = 2 + 12 * len(entries) + 4
    data_at = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_at if tag == 273 else value
        packed = struct.pack("<H2x", value) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    ifd += struct.pack("<I", 0)
    Path(path).write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + data)
    return Path(path)


def deflated_dicom_bomb(path: Path, rows: int, cols: int, frames: int = 1) -> Path:
    """A deflated (1.2.840.10008.1.2.1.99) secondary capture whose zero pixels inflate to
    ``rows * cols * frames * 2`` bytes."""
    ds = ct_dataset(path, ipp=(0, 0, 0), rows=2, cols=2)
    del ds.PixelData
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n = rows * cols * frames * 2
    pixel_head = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, n)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [comp.compress(body.getvalue() + pixel_head)]
    out += [comp.compress(ZERO_CHUNK[: min(len(ZERO_CHUNK), n - s)])
            for s in range(0, n, len(ZERO_CHUNK))]
    out.append(comp.flush())
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    Path(path).write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(out))
    return Path(path)


def nifti_with_affine(path: Path, affine, data=None) -> Path:
    """A small float NIfTI with the given sform/qform (NaN and Inf allowed)."""
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) if data is None else data
    with gzip.open(path, "wb") as fh:
        fh.write(nifti_header(data.shape, data.dtype, affine))
        fh.write(np.asfortranarray(data).tobytes(order="F"))
    return Path(path)


def truncations(data: bytes, fractions=(0.05, 0.3, 0.5, 0.75, 0.9, 0.99)) -> list[bytes]:
    return [data[: max(1, int(len(data) * f))] for f in fractions]


def byte_flips(data: bytes, seed: int, count: int, start: int = 0) -> bytes:
    """``count`` random bits flipped at or after ``start`` (seeded: the same bytes each run)."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(count):
        i = rng.randrange(min(start, len(out) - 1), len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)
