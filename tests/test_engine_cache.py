"""Embedding cache bounds and background pre-encoding (no model needed)."""

from __future__ import annotations

import threading
import time

import numpy as np

from medplib_core.engines.cache import EmbeddingCache, image_key
from medplib_core.engines.scheduling import PreEncoder


def test_cache_is_bounded_in_bytes_and_lru():
    c = EmbeddingCache(max_bytes=3 * 4000)
    for i in range(5):
        c.put(str(i), np.zeros(1000, np.float32))
    assert len(c) == 3 and c.nbytes <= 3 * 4000
    assert c.get("0") is None and c.get("4") is not None
    c.get("2")
    c.put("5", np.zeros(1000, np.float32))
    assert "2" in c and "3" not in c


def test_key_covers_content_window_engine_and_region():
    a = np.zeros((8, 8), np.uint8)
    b = a.copy()
    b[0, 0] = 1
    assert image_key(a, "e") == image_key(a.copy(), "e")
    assert len({image_key(a, "e"), image_key(b, "e"), image_key(a, "f"),
                image_key(a, "e", window=(40, 400)), image_key(a, "e", region=(0, 0, 4, 4))}) == 5


def test_preencode_never_blocks_and_cancels_promptly():
    done, started = [], threading.Event()

    def slow_embed(img):
        started.set()
        time.sleep(0.2)
        done.append(int(img[0, 0]))

    pre = PreEncoder(slow_embed, lambda img: False)
    t = time.perf_counter()
    pre.schedule([np.full((4, 4), i, np.uint8) for i in range(20)])
    assert time.perf_counter() - t < 0.05  # returns at once
    assert started.wait(2)
    pre.cancel()
    t = time.perf_counter()
    assert pre.wait(timeout=2)
    assert time.perf_counter() - t < 0.5
    assert len(done) <= 2 and not pre.busy
    pre.schedule([np.full((4, 4), 99, np.uint8)])  # still usable after a cancel
    assert pre.wait(timeout=2) and done[-1] == 99
    pre.close()


def test_preencode_skips_cached_and_survives_errors():
    seen = []

    def embed(img):
        if img[0, 0] == 1:
            raise ValueError("bad slice")
        seen.append(int(img[0, 0]))

    pre = PreEncoder(embed, lambda img: img[0, 0] == 2)
    pre.schedule([np.full((2, 2), v, np.uint8) for v in (1, 2, 3)] + [lambda: np.full((2, 2), 4, np.uint8)])
    assert pre.wait(timeout=2)
    assert seen == [3, 4] and pre.errors and "bad slice" in pre.errors[0]
    pre.close()
