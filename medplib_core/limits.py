"""Resource limits for untrusted input, in one place; each can be raised from the environment.

A file declares its own size (rows × columns × frames, NIfTI dimensions, PNG width × height)
long before its data is read. Every reader compares what a file declares with these limits
*before* allocating, so a small file that claims terabytes is refused at once with a message
that says how large it is and which variable raises the limit.

=========================== ============ ==================================================
variable                    default      what it bounds
=========================== ============ ==================================================
MEDPLIB_MAX_VOXEL_BYTES     4G           one decoded image or volume (and a label map)
MEDPLIB_MAX_SPEC_BYTES      16M          a batch spec or prompts/cases CSV file
MEDPLIB_MAX_SPEC_NODES      200000       values in a batch spec once YAML aliases expand
=========================== ============ ==================================================

Sizes accept plain bytes or a K/M/G/T suffix (powers of 1000; KiB/MiB/GiB/TiB for 1024).
"""

from __future__ import annotations

import math
import os
import re

DEFAULTS = {
    "MEDPLIB_MAX_VOXEL_BYTES": 4 * 10**9,
    "MEDPLIB_MAX_SPEC_BYTES": 16 * 10**6,
    "MEDPLIB_MAX_SPEC_NODES": 200_000,
}
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([KMGT]I?)?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """``"2G"`` -> 2_000_000_000, ``"512MiB"`` -> 536_870_912, ``"100"`` -> 100; None if unusable."""
    m = _SIZE_RE.match(str(text))
    if not m:
        return None
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
    return int(value) if value >= 1 and math.isfinite(value) else None


def limit(name: str) -> int:
    """The current value of a limit: the environment variable when set and valid, else the default."""
    raw = os.environ.get(name)
    if raw:
        value = parse_size(raw)
        if value is not None:
            return value
    return DEFAULTS[name]


def max_voxel_bytes() -> int:
    return limit("MEDPLIB_MAX_VOXEL_BYTES")


def human_bytes(n: float) -> str:
    """Bytes in decimal units with three significant digits: ``16 GB``, ``4.29 GB``, ``512 kB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def shape_text(shape) -> str:
    return "×".join(str(int(s)) for s in shape)


def voxel_excess(shape, itemsize: int, what: str = "voxels") -> str | None:
    """None when an array of ``shape`` × ``itemsize`` bytes fits the voxel limit; otherwise the
    reason to give (how large, the limit, and how to raise it)."""
    n_bytes = int(itemsize)
    for s in shape:
        n_bytes *= max(int(s), 0)
    cap = max_voxel_bytes()
    if n_bytes <= cap:
        return None
    return (f"declares {shape_text(shape)} {what} ({human_bytes(n_bytes)}), more than the limit of "
            f"{human_bytes(cap)}; set MEDPLIB_MAX_VOXEL_BYTES to raise it "
            f"(e.g. MEDPLIB_MAX_VOXEL_BYTES={_suggest(n_bytes)})")


def _suggest(n_bytes: int) -> str:
    return f"{math.ceil(n_bytes / 1e9 * 1.1)}G"
