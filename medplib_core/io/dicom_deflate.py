"""Deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99): measure before pydicom inflates.

pydicom inflates the whole dataset into memory in one call, so a file of a few megabytes can
become gigabytes. `check_inflated_size` streams the deflate data through zlib in small pieces,
keeping nothing, and refuses the file as soon as it grows past the voxel limit.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import LoadError
from ..limits import human_bytes, max_voxel_bytes

DEFLATED = "1.2.840.10008.1.2.1.99"
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
_CHUNK = 1 << 20


def _meta_end(fh) -> tuple[int, str] | None:
    """(offset where the dataset starts, transfer syntax) of a Part-10 file, or None."""
    fh.seek(0)
    head = fh.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    pos, ts = 132, ""
    while True:
        fh.seek(pos)
        elem = fh.read(8)
        if len(elem) < 8:
            return None
        group, number = struct.unpack("<HH", elem[:4])
        if group != 0x0002:
            return pos, ts
        vr = elem[4:6]
        if vr in _LONG_VRS:
            more = fh.read(4)
            if len(more) < 4:
                return None
            length, start = struct.unpack("<I", more)[0], pos + 12
        else:
            length, start = struct.unpack("<H", elem[6:8])[0], pos + 8
        if length == 0xFFFFFFFF:
            return None
        if number == 0x0010:
            fh.seek(start)
            ts = fh.read(length).rstrip(b"\0 ").decode("ascii", "replace")
        pos = start + length


def check_inflated_size(path: str) -> None:
    """Raise LoadError when a deflated file inflates to more than the voxel limit."""
    cap = max_voxel_bytes()
    with open(path, "rb") as fh:
        found = _meta_end(fh)
        if found is None or found[1] != DEFLATED:
            return
        fh.seek(found[0])
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while not inflater.eof:
            data = fh.read(_CHUNK)
            if not data:
                return  # truncated: pydicom explains it
            while data:
                try:
                    total += len(inflater.decompress(data, _CHUNK))
                except zlib.error:
                    return  # corrupt: pydicom explains it
                if total > cap:
                    raise LoadError(path, f"the deflated dataset inflates to more than "
                                    f"{human_bytes(cap)} (the limit; the file has "
                                    f"{human_bytes(fh.seek(0, 2))})",
                                    hint="set MEDPLIB_MAX_VOXEL_BYTES to raise it")
                data = inflater.unconsumed_tail
