"""The rewritten LiteMedSAM mask decoder and its accelerated backend agree with the original."""

import numpy as np
import pytest
import torch

from medplib_core.engines.fast_decoder import DecoderCore


@pytest.fixture(scope="module")
def net():
    from medplib_core.engines.litemedsam_model import build_network

    return build_network()


def _original(net, emb, sparse, dense):
    md = net.mask_decoder
    with torch.no_grad():
        return md.predict_masks(emb, net.prompt_encoder.get_dense_pe(), sparse, dense)


def _prompts(net):
    with torch.no_grad():
        boxes = torch.tensor([[[60.0, 60, 140, 150]], [[10.0, 20, 200, 220]], [[100.0, 100, 120, 130]]])
        sb, db = net.prompt_encoder(points=None, boxes=boxes, masks=None)
        pts = (torch.tensor([[[100.0, 120], [30, 30]]]), torch.tensor([[1.0, 0]]))
        mask = torch.zeros(1, 1, 256, 256)
        mask[..., 80:160, 90:170] = 3.0
        sp, dp = net.prompt_encoder(points=pts, boxes=None, masks=mask)
    return [(sb, db), (sb, db[:1]), (sp, dp)]


@pytest.mark.parametrize("fold", [True, False], ids=["folded-projections", "projected"])
def test_rewritten_decoder_matches_original(net, fold):
    from medplib_core.engines.fast_encoder import probe_image

    with torch.no_grad():
        emb = net.image_encoder(torch.from_numpy(probe_image()))
        core = DecoderCore(net, fold=fold).eval()
        for sparse, dense in _prompts(net):
            m_ref, s_ref = _original(net, emb, sparse, dense)
            m, s = core(emb, sparse, dense, torch.arange(64), torch.arange(64))
            assert m.shape == m_ref.shape == (len(sparse), 4, 256, 256)
            assert torch.allclose(m, m_ref, atol=1e-4, rtol=1e-4)
            assert torch.allclose(s, s_ref, atol=1e-5)
            assert (m_ref[:, 0] > 0).any()  # the probe prompts give real, non-empty masks
            # a window of token rows 10..29 and columns 5..39 gives the same logits there
            mw, sw = core(emb, sparse, dense, torch.arange(10, 30), torch.arange(5, 40))
            assert mw.shape == (len(sparse), 4, 80, 140)
            assert torch.allclose(mw, m_ref[:, :, 40:120, 20:160], atol=1e-4, rtol=1e-4)
            assert torch.equal(sw, s)


@pytest.fixture(scope="module")
def split(net):
    pytest.importorskip("openvino")
    from medplib_core.engines.litemedsam_model import file_sha256, weights_path
    from medplib_core.engines.split_decoder import SplitOpenVinoDecoder, export_split_onnx

    return SplitOpenVinoDecoder(*export_split_onnx(DecoderCore(net).eval(), file_sha256(weights_path())), 2, "f32")


def test_split_graphs_equal_the_original_decoder(net, split):
    """OpenVINO fp32, image side + prompt side (with a cached state for boxes; both graphs in one
    call for a mask prompt) against SAM's own ``predict_masks``, whole grid and a window."""
    from medplib_core.engines.fast_encoder import probe_image

    with torch.no_grad():
        emb = net.image_encoder(torch.from_numpy(probe_image()))
        _, (sb, db), (sp, dp) = _prompts(net)
        state = split.image_state(emb, db)
        for sparse, dense, kept in ((sb, db, state), (sp, dp, None)):
            m_ref, s_ref = _original(net, emb, sparse, dense)
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


def test_prompt_decoder_window_fills_background(net):
    from medplib_core.engines.fast_decoder import EagerDecoder
    from medplib_core.engines.fast_encoder import probe_image
    from medplib_core.engines.litemedsam_model import OUTSIDE, PromptDecoder

    dec = PromptDecoder(net, EagerDecoder(DecoderCore(net).eval()))
    with torch.no_grad():
        emb = net.image_encoder(torch.from_numpy(probe_image())).numpy()
    box = np.array([[70.0, 80, 150, 170]])
    full = dec(emb, box)
    part = dec(emb, box, window=(70, 181, 60, 161))  # rows 68..183, cols 60..163 on the token grid
    inside = (slice(None), slice(None), slice(68, 184), slice(60, 164))
    np.testing.assert_allclose(part.logits[inside], full.logits[inside], atol=1e-4)
    assert (part.logits[:, :, :68] == OUTSIDE).all() and (part.logits[:, :, :, 164:] == OUTSIDE).all()
    np.testing.assert_array_equal(part.iou, full.iou)


def test_engine_decoder_backend_agrees_with_eager(engine_decoder_pair):
    fast, eager, net = engine_decoder_pair
    if fast.name.startswith("torch"):
        pytest.skip("no accelerated decoder backend on this machine (eager is in use)")
    from medplib_core.engines.fast_decoder import _agrees

    ok, details = _agrees(fast, eager, net)
    print("accelerated decoder vs eager:", details)
    assert ok, details


def test_engine_decoder_runs_at_the_preferred_precision(engine_decoder_pair):
    """The graph compiles in the precision `decoder_precision` names for this CPU (a failed bf16
    compile falls back to fp32 silently: an earlier folded graph did, for want of a constant
    channel count)."""
    fast, _, _ = engine_decoder_pair
    if fast.name.startswith("torch"):
        pytest.skip("no accelerated decoder backend on this machine (eager is in use)")
    import os

    from medplib_core.engines.fast_decoder import decoder_precision

    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        pytest.skip("oneDNN is limited by ONEDNN_MAX_CPU_ISA: OpenVINO still announces the CPU's bf16")
    assert fast.name == f"openvino-{decoder_precision()}"


ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512vl avx512_vnni\n"
SAPPHIRE_RAPIDS = ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni amx_bf16"
                   " amx_tile amx_int8\n")


def test_decoder_runs_bf16_only_with_matrix_units(monkeypatch):
    """Lines as /proc/cpuinfo writes them: with native bf16 the decoder runs bf16 where AMX is
    there (or the system does not say), the split fp32 graph on a Zen 4; the variable wins."""
    import medplib_core.engines.fast_decoder as fd

    monkeypatch.delenv("MEDPLIB_DECODER_PRECISION", raising=False)
    monkeypatch.setattr(fd, "openvino_precision", lambda env, precision=None: "f32" if precision == "f32" else "bf16")
    assert fd.decoder_precision(cpuinfo=ZEN4) == "f32"
    assert fd.decoder_precision(cpuinfo=SAPPHIRE_RAPIDS) == "bf16"
    assert fd.decoder_precision(cpuinfo="model name : unknown\n") == "bf16"
    assert fd.decoder_precision("bf16", cpuinfo=ZEN4) == "bf16"
    assert fd.decoder_precision("f32", cpuinfo=SAPPHIRE_RAPIDS) == "f32"
    monkeypatch.setenv("MEDPLIB_DECODER_PRECISION", "bf16")
    assert fd.decoder_precision(cpuinfo=ZEN4) == "bf16"
    monkeypatch.setattr(fd, "openvino_precision", lambda env, precision=None: "f32")  # no native bf16
    monkeypatch.delenv("MEDPLIB_DECODER_PRECISION")
    assert fd.decoder_precision(cpuinfo=SAPPHIRE_RAPIDS) == "f32"


def test_folded_graph_only_where_the_decoder_runs_fp32(net, engine_decoder_pair, monkeypatch):
    """fp32 (CPUs without native bf16) gets the folded graph; bf16 keeps the graph before."""
    from medplib_core.engines.fast_decoder import CORE_VERSION, UNFOLDED_VERSION, make_decoder
    from medplib_core.engines.litemedsam_model import file_sha256, weights_path

    fast, _, _ = engine_decoder_pair
    if fast.name.startswith("torch"):
        pytest.skip("no accelerated decoder backend on this machine (eager is in use)")
    assert fast.core_version == (CORE_VERSION if fast.name == "openvino-f32" else UNFOLDED_VERSION)
    monkeypatch.setenv("MEDPLIB_DECODER_PRECISION", "f32")
    f32 = make_decoder(net, file_sha256(weights_path()))
    assert f32.name == "openvino-f32" and f32.core_version == CORE_VERSION


@pytest.fixture(scope="module")
def engine_decoder_pair(net):
    from medplib_core.engines.fast_decoder import EagerDecoder, make_decoder
    from medplib_core.engines.litemedsam_model import file_sha256, weights_path

    fast = make_decoder(net, file_sha256(weights_path()))
    return fast, EagerDecoder(DecoderCore(net).eval()), net


def test_numpy_prompt_embedding_equals_sam_prompt_encoder():
    """Boxes, clicks with and without a box: the numpy tokens equal SAM's prompt encoder's."""
    import torch

    from medplib_core.engines.litemedsam_model import build_network
    from medplib_core.engines.prompt_embedding import PromptEmbedder

    net = build_network("cpu")
    pe = net.prompt_encoder
    emb = PromptEmbedder(pe)
    rng = np.random.default_rng(1)
    boxes = np.sort(rng.uniform(0, 255, (3, 2, 2)), axis=1).reshape(3, 4).astype(np.float32)
    points = rng.uniform(0, 255, (3, 2, 2)).astype(np.float32)
    labels = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    with torch.no_grad():
        for b, p in ((boxes, None), (None, points), (boxes, points)):
            pts = None if p is None else (torch.from_numpy(p), torch.from_numpy(labels))
            ref, dense = pe(points=pts, boxes=None if b is None else torch.from_numpy(b).reshape(-1, 1, 4), masks=None)
            got = emb(b, p, None if p is None else labels)
            assert got.shape == tuple(ref.shape)
            assert np.abs(got - ref.numpy()).max() < 1e-4
    assert np.array_equal(emb.dense, dense[:1].numpy())
