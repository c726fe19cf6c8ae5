"""Reading safetensors shards one tensor at a time, straight into the target device.

The header of each shard gives every tensor's byte range; each tensor is read with plain
file reads (no memory map, so the process never maps a whole 5-10 GB shard) into its final
CPU tensor, or, for a GPU, into one of two pinned staging buffers that are copied to the device
asynchronously while the next tensor is read. Host memory stays bounded by about twice the
largest tensor (lm_head, ~264 MB in bf16 for MedPLIB-7b) whatever the checkpoint size, so the
24 GB checkpoint loads with a host footprint far under 8 GB.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator

import torch

from medplib_core.errors import LoadError

from .checkpoint_files import _ST_DTYPES


def tensor_ranges(path: Path) -> tuple[int, dict[str, tuple[torch.dtype, tuple, int, int]]]:
    """(data start, {name: (dtype, shape, begin, end)}) from a safetensors header."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as exc:
        raise LoadError(path, f"not a readable safetensors file: {exc}") from exc
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        if v["dtype"] not in _ST_DTYPES:
            raise LoadError(path, f"tensor {k} has unsupported dtype {v['dtype']}")
        b, e = v["data_offsets"]
        out[k] = (_ST_DTYPES[v["dtype"]], tuple(v["shape"]), int(b), int(e))
    return 8 + n, out


class _Staging:
    """Two pinned host buffers used alternately for host -> GPU copies."""

    def __init__(self, device: torch.device):
        self.device = device
        self.bufs: list[torch.Tensor | None] = [None, None]
        self.events: list[torch.cuda.Event | None] = [None, None]
        self.i = 0

    def buffer(self, nbytes: int) -> torch.Tensor:
        self.i ^= 1
        ev = self.events[self.i]
        if ev is not None:
            ev.synchronize()  # the copy that last used this buffer is done
        buf = self.bufs[self.i]
        if buf is None or buf.numel() < nbytes:
            self.bufs[self.i] = buf = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        return buf[:nbytes]

    def copied(self) -> None:
        ev = torch.cuda.Event()
        ev.record()
        self.events[self.i] = ev


def _read_into(f, dst: torch.Tensor, nbytes: int, path: Path, name: str) -> None:
    view = memoryview(dst.numpy()).cast("B")
    got = 0
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise LoadError(path, f"file ends inside tensor {name}")
        got += n


def stream_safetensors(files: list[Path], keys: set[str] | None, device: torch.device | str
                       ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor on ``device`` in its file dtype), one tensor at a time."""
    device = torch.device(device)
    staging = _Staging(device) if device.type == "cuda" else None
    for path in files:
        start, ranges = tensor_ranges(path)
        todo = sorted((r[2], k) for k, r in ranges.items() if keys is None or k in keys)
        with open(path, "rb", buffering=0) as f:
            for _, name in todo:
                dtype, shape, b, e = ranges[name]
                nbytes = e - b
                f.seek(start + b)
                if staging is None:
                    t = torch.empty(shape, dtype=dtype)
                    if nbytes:
                        _read_into(f, t.reshape(-1).view(torch.uint8), nbytes, path, name)
                    yield name, t
                    continue
                buf = staging.buffer(nbytes)
                if nbytes:
                    _read_into(f, buf, nbytes, path, name)
                t = torch.empty(shape, dtype=dtype, device=device)
                t.reshape(-1).view(torch.uint8).copy_(buf, non_blocking=True)
                staging.copied()
                yield name, t
    if staging is not None:
        torch.cuda.current_stream(device).synchronize()


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM) in bytes, 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
