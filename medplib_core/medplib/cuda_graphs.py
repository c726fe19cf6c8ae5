"""CUDA-graph replay of the batched decode step (CUDA only; never used on a CPU).

`DecodeScheduler.decode_step(b, window)` has static shapes and reads/writes only the
scheduler's fixed device buffers (token ids, positions, step counters, the KV cache, the state
ring), so one graph per (batch bucket, attention window bucket) replays it with one launch
instead of ~20 kernel launches per layer. Graphs are captured lazily, share one memory pool,
and each new graph is checked once against the eager step (same chosen ids); any failure
(capture error, mismatch) switches graphs off for the scheduler and says why in ``disabled``.
"""

from __future__ import annotations

import torch

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128)
WINDOW_STEP = 256  # attention windows are multiples of this


class GraphRunner:
    def __init__(self, scheduler):
        self.s = scheduler
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.disabled: str | None = None

    def bucket(self, n: int, need: int) -> tuple[int, int]:
        b = next((x for x in BATCH_BUCKETS if x >= n), n)
        b = min(b, self.s.rows)
        window = min(-(-need // WINDOW_STEP) * WINDOW_STEP, self.s.cache.max_len)
        return b, window

    def run(self, n: int, need: int) -> bool:
        """Do the decode step for rows ``0..n-1`` through a graph; False: do it eagerly."""
        if self.disabled:
            return False
        key = self.bucket(n, need)
        g = self.graphs.get(key)
        if g is not None:
            g.replay()
            return True
        try:
            self.graphs[key] = self._capture_and_check(*key)
        except Exception as exc:  # noqa: BLE001 - any capture problem means "run eagerly"
            self.disabled = f"CUDA graph for batch {key[0]}, window {key[1]}: {exc}"
            self.graphs.clear()
            torch.cuda.synchronize()
            return False
        return True  # the check already performed this step (eagerly)

    def _capture_and_check(self, b: int, window: int) -> torch.cuda.CUDAGraph:
        s = self.s
        state = s._state + [s.logits_buf]
        snap = [t.clone() for t in state]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (allocator, kernel selection) off the graph
            for _ in range(2):
                s.decode_step(b, window)
        torch.cuda.current_stream().wait_stream(side)
        _restore(state, snap)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=self.pool):
            s.decode_step(b, window)
        self.pool = g.pool()
        _restore(state, snap)  # capture does not run kernels, but be exact
        g.replay()
        got = s.next_tok[:b].clone()
        _restore(state, snap)
        s.decode_step(b, window)  # the step itself, eagerly: the reference for the check
        live = s.active[:b].bool()
        if not torch.equal(got[live], s.next_tok[:b][live]):
            raise RuntimeError("graph replay chose different tokens than the eager step")
        return g


def _restore(state, snap) -> None:
    for t, v in zip(state, snap):
        t.copy_(v)
