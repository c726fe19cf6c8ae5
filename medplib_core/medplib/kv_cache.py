"""A static key/value cache in rows, for the fast and the batched decode paths.

Every layer owns one key and one value buffer of shape ``[rows, kv_heads, max_len, head_dim]``,
allocated once, so their addresses never change and a decode step that reads them can be
captured in a CUDA graph. A row holds one sequence (a conversation); the decode step works
on rows ``[0, batch)``, so the scheduler keeps the active rows first (`swap_rows` moves a
row's contents). The last position of every row is a scratch column: inactive rows of a
padded batch write there, and no sequence ever uses it.
"""

from __future__ import annotations

import torch


class StaticKVCache:
    """Fixed-size K/V buffers: ``k[layer][row, head, position, :]``."""

    def __init__(self, layers: int, rows: int, kv_heads: int, max_len: int, head_dim: int,
                 device, dtype: torch.dtype):
        if max_len < 2:
            raise ValueError("a static cache needs at least two positions per row")
        shape = (rows, kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.rows, self.max_len = rows, max_len
        self.lengths = [0] * rows  # positions holding valid keys/values, per row (host side)

    @property
    def scratch(self) -> int:
        """The position padded rows write to (never part of a sequence)."""
        return self.max_len - 1

    @property
    def capacity(self) -> int:
        """Positions one sequence may occupy."""
        return self.max_len - 1

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def write(self, layer: int, row: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store ``k``/``v`` [kv_heads, n, head_dim] at positions ``start..start+n-1`` of a row."""
        n = k.shape[-2]
        self.k[layer][row, :, start:start + n] = k
        self.v[layer][row, :, start:start + n] = v

    def swap_rows(self, a: int, b: int) -> None:
        """Exchange the contents (and lengths) of two rows."""
        if a == b:
            return
        n = max(self.lengths[a], self.lengths[b])
        if n:
            for buf in self.k + self.v:
                tmp = buf[a, :, :n].clone()
                buf[a, :, :n] = buf[b, :, :n]
                buf[b, :, :n] = tmp
        self.lengths[a], self.lengths[b] = self.lengths[b], self.lengths[a]


def common_prefix(a, b) -> int:
    """How many leading items two sequences share (reusable cache positions)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
