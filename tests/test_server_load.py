"""A bounded load test against a real server: 8 concurrent clients x 50 prompts, no errors,
and every client gets the very masks the others get for the same prompts."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from medplib_core.engines.base import Prompt

from test_server_support import ct_slice, demo_paths, engine_server, remote  # noqa: F401

CLIENTS, PROMPTS = 8, 50


def _prompts(seed: int = 0) -> list[Prompt]:
    """Boxes large enough for the whole-slice path (small ones would encode zoomed crops) and
    corrective clicks inside them."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(PROMPTS):
        x0, y0 = rng.uniform(5, 40, 2)
        box = (x0, y0, x0 + rng.uniform(40, 80), y0 + rng.uniform(40, 80))
        if n % 5 == 4:
            out.append(Prompt(box=box, points=[(box[0] + 5, box[1] + 5)], point_labels=[0]))
        else:
            out.append(Prompt(box=box))
    return out


def test_eight_clients_fifty_prompts_each(engine_server, pydicom_ct_path):
    images = [ct_slice(pydicom_ct_path), np.ascontiguousarray(ct_slice(pydicom_ct_path)[:, ::-1])]
    prompts = _prompts()
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            eng = remote(engine_server)
            sess = eng.encode(images[n % 2])
            results[n] = [sess.predict(p).mask for p in prompts]
            eng.close()
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors[:3]
    assert sorted(results) == list(range(CLIENTS))
    for n in range(2, CLIENTS):
        same = results[n % 2]
        assert all(np.array_equal(a, b) for a, b in zip(results[n], same)), f"client {n} differs"
    assert sum(m.any() for m in results[0]) > PROMPTS // 2
