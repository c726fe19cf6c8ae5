"""MedPLIB building blocks: tokenizer rules (§5.3), template (§5.4), regions (§8), MoE (§9.2),
decoder and cache, CLIP layer selection, SAM shapes, post-processing crops (§11.3), layout."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from medplib_core.medplib.config import SamConfig, parse_config
from medplib_core.medplib.conversation import Conversation, normalise_regions
from medplib_core.medplib.llama_moe import KVCache, LlamaMoEDecoder, MoEMLP
from medplib_core.medplib.postprocess import logits_to_mask, reference_crop
from medplib_core.medplib.region import Region, mask_to_grid, region_vector
from medplib_core.medplib.tiny import TINY_SAM, tiny_config
from medplib_core.medplib.tokenizer import IMAGE_SENTINEL, MEDPLIB_TOKENS, REGION_SENTINEL

from test_medplib_support import tiny, tiny_paths, tokenizer  # noqa: F401  (fixtures)

# -- tokenizer (§5.3, §17.3) ------------------------------------------------------------------


def test_added_token_ids_come_from_files(tokenizer):
    base = tokenizer.base_size
    assert len(tokenizer) == base + 267 == len(MEDPLIB_TOKENS) + base
    assert tokenizer.id_of("<SEG>") == base and tokenizer.id_of("<im_end>") == base + 266
    rep = tokenizer.id_report()
    assert rep["ids_in_reference_order"] and not rep["missing_medplib_tokens"]
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id, tokenizer.pad_id) == (1, 2, 0, 0)


def test_no_token_between_colon_and_im_start(tokenizer):
    ids = tokenizer.encode("USER: <im_start>")
    assert ids == [1] + tokenizer.sp.encode("USER:") + [tokenizer.id_of("<im_start>")]


def test_no_newline_token_after_im_end(tokenizer):
    ids = tokenizer.encode("<im_end>\nCould")
    assert ids == [1, tokenizer.id_of("<im_end>")] + tokenizer.sp.encode("Could")
    newline = tokenizer.sp.piece_to_id("<0x0A>")
    assert newline not in ids
    assert tokenizer.sp.id_to_piece(ids[2]).startswith("\u2581")  # dummy prefix per piece


def test_region_pair_and_space_prefixed_question_mark(tokenizer):
    ids = tokenizer.encode_prompt("<region></region>?")
    r0, r1 = tokenizer.id_of("<region>"), tokenizer.id_of("</region>")
    assert ids[:4] == [1, r0, REGION_SENTINEL, r1]
    assert ids[4:] == tokenizer.sp.encode(" ?") == tokenizer.sp.encode("?")
    assert tokenizer.sp.id_to_piece(ids[4]).startswith("\u2581")


def test_eos_text_and_plain_special_tokens(tokenizer):
    ids = tokenizer.encode("yes</s>no")
    assert 2 in ids and ids[0] == 1
    assert tokenizer.decode([tokenizer.id_of("<SEG>"), 2]) == "<SEG>"


def test_full_grounding_prompt_layout(tokenizer):
    conv = Conversation()
    conv.add_user("Could you segment out the liver in this image?")
    prompt = conv.open_prompt()
    assert prompt.endswith("USER: <im_start><image><im_end>\nCould you segment out the liver "
                           "in this image? ASSISTANT:")
    ids = tokenizer.encode_prompt(prompt)
    sp = tokenizer.sp
    i = ids.index(IMAGE_SENTINEL)
    assert ids[i - 1] == tokenizer.id_of("<im_start>") and ids[i + 1] == tokenizer.id_of("<im_end>")
    assert ids.count(1) == 1 and ids[0] == 1
    system_and_user = sp.encode(prompt.split(" <im_start>")[0])
    assert ids[1:i - 1] == system_and_user  # nothing for the space before <im_start>
    assert ids[i + 2:] == sp.encode("Could you segment out the liver in this image? ASSISTANT:")


def test_multi_turn_template():
    conv = Conversation()
    conv.add_user("Q1")
    conv.add_assistant("A1")
    conv.add_user("Q2")
    assert conv.open_prompt().endswith("USER: <im_start><image><im_end>\nQ1 ASSISTANT: A1</s>"
                                       "USER: Q2 ASSISTANT:")


def test_region_marks_are_normalised():
    assert normalise_regions("the area <region>?", 1) == "the area <region></region>?"
    assert normalise_regions("the area <region>masks/a.png</region>?", 1).count("<region></region>") == 1
    assert normalise_regions("describe", 2).endswith("<region></region> <region></region>")
    with pytest.raises(ValueError):
        normalise_regions("<region> and <region>", 1)


# -- regions (§8) -----------------------------------------------------------------------------

def test_region_masks_point_box_polygon():
    pt = Region("point", (5, 7)).to_mask(100, 120)
    assert pt.sum() == (7 + 21) * (5 + 21)  # clipped 41x41 square
    box = Region("box", (10, 20, 30, 25)).to_mask(100, 120)
    rows, cols = np.nonzero(box)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 25, 10, 30)  # rows from y
    poly = Region("polygon", [(10, 10), (50, 10), (50, 40)]).to_mask(100, 120)
    assert poly[12, 45] and not poly[38, 12]


def test_mask_to_grid_nearest_on_padded_canvas():
    m = np.zeros((336, 336), dtype=bool)
    m[28:57, 14:29] = True
    grid = mask_to_grid(m)
    assert grid.shape == (24, 24)
    assert set(map(tuple, np.argwhere(grid))) == {(r, c) for r in (2, 3, 4) for c in (1, 2)}
    # non-square: 100 x 200 -> 168 x 336 placed at top 84 on the canvas
    m2 = np.zeros((100, 200), dtype=bool)
    m2[:10, :] = True  # top rows of the image -> canvas rows 84..100
    g2 = mask_to_grid(m2)
    assert g2[6].all() and g2[7].all() and not g2[5].any() and not g2[8].any()


def test_region_vector_constant_and_ramp():
    grid = np.zeros((24, 24), dtype=np.uint8)
    grid[3:9, 5:12] = 1
    const = torch.full((576, 8), 0.75)
    assert torch.allclose(region_vector(const, grid), torch.full((8,), 0.75))
    cols = torch.arange(24, dtype=torch.float32).repeat(24)  # value = column index
    ramp = torch.stack([cols, cols.reshape(24, 24).T.reshape(-1)], dim=1)  # (col, row)
    vec = region_vector(ramp, grid)
    rr, cc = np.nonzero(grid)
    assert vec[0].item() == pytest.approx(float(np.mean(cc * 23 / 24)), abs=1e-5)
    assert vec[1].item() == pytest.approx(float(np.mean(rr * 23 / 24)), abs=1e-5)


def test_region_subsampling_only_above_512_cells():
    cols = torch.arange(24, dtype=torch.float32).repeat(24)[:, None]
    full = np.ones((24, 24), dtype=np.uint8)
    all_pts = region_vector(cols, full, max_points=None)
    assert all_pts.item() == pytest.approx(float(np.mean(np.arange(24) * 23 / 24)), abs=1e-5)
    sub1, sub2 = region_vector(cols, full), region_vector(cols, full)
    assert torch.equal(sub1, sub2) and not torch.equal(sub1, all_pts)
    small = np.zeros((24, 24), dtype=np.uint8)
    small[:20, :20] = 1  # 400 cells: no subsampling
    assert torch.equal(region_vector(cols, small), region_vector(cols, small, max_points=None))


# -- MoE (§9.2) -------------------------------------------------------------------------------

def _moe(cf: float = 2.0, seed: int = 0):
    cfg = parse_config(tiny_config(300))
    moe = copy.deepcopy(cfg.moe)
    moe.eval_capacity_factor = cf
    torch.manual_seed(seed)
    m = MoEMLP(16, 32, 2, moe)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return m


def _deepspeed_top1(m: MoEMLP, x: torch.Tensor) -> torch.Tensor:
    """A literal capacity / dispatch / combine re-implementation (DeepSpeed top1gating, C >= S)."""
    s, e = x.shape[0], m.n
    gates = torch.softmax(x.float() @ m.deepspeed_moe.gate.wg.weight.float().T, dim=1)
    capacity = max(math.ceil(s / e * m.moe.eval_capacity_factor), m.moe.min_capacity)
    idx = gates.argmax(dim=1)
    mask1 = torch.nn.functional.one_hot(idx, e)
    loc1 = torch.cumsum(mask1, dim=0) - 1
    mask1 = mask1 * (loc1 < capacity)
    loc1_s = (loc1 * mask1).sum(dim=1)
    gates = gates * mask1
    loc_sc = torch.nn.functional.one_hot(loc1_s, capacity).float()
    combine = torch.einsum("se,sc->sec", gates, loc_sc)
    dispatched = torch.einsum("sec,sm->ecm", combine.bool().float(), x)
    outs = torch.stack([m.deepspeed_moe.experts.deepspeed_experts[i](dispatched[i]) for i in range(e)])
    return torch.einsum("sec,ecm->sm", combine, outs)


def test_moe_matches_dispatch_combine_reference():
    m = _moe()
    x = torch.randn(37, 16)
    assert torch.allclose(m(x[None])[0], _deepspeed_top1(m, x), atol=1e-5)
    # one-token decode path equals the batched path
    assert torch.allclose(m(x[3:4]), m(x)[3:4], atol=1e-6)


def test_moe_one_hot_router_gives_scaled_expert_output():
    m = _moe()
    with torch.no_grad():
        m.deepspeed_moe.gate.wg.weight.zero_()
        m.deepspeed_moe.gate.wg.weight[1, 0] = 50.0
    x = torch.randn(5, 16)
    x[:, 0] = 1.0
    p = torch.softmax(torch.tensor([0.0, 50.0]), 0)[1]
    want = p * m.deepspeed_moe.experts.deepspeed_experts[1](x)
    assert torch.allclose(m(x), want, atol=1e-6)


def test_moe_capacity_drops_tokens_when_factor_is_small():
    m = _moe(cf=0.5)
    x = torch.randn(20, 16)
    out = m(x)
    cap = math.ceil(20 / 2 * 0.5)
    zero = (out.abs().sum(dim=1) == 0)
    assert zero.sum() >= 20 - 2 * cap
    assert torch.equal(out, m(x))  # seeded selection


# -- decoder, cache, CLIP, SAM ----------------------------------------------------------------

def _dense_cfg():
    raw = tiny_config(300)
    raw["moe"] = {"moe_enable": False}
    return parse_config(raw)


def test_decoder_matches_transformers_llama_model():
    from transformers import LlamaModel

    cfg = _dense_cfg()
    torch.manual_seed(0)
    ours = LlamaMoEDecoder(cfg).eval()
    ref = LlamaModel(cfg.llama_config()).eval()
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all("rotary" in k for k in missing)
    x = torch.randn(1, 9, cfg.hidden_size)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(inputs_embeds=x).last_hidden_state, atol=1e-5)


def test_kv_cache_steps_equal_full_forward():
    cfg = parse_config(tiny_config(300))
    torch.manual_seed(1)
    dec = LlamaMoEDecoder(cfg).eval()
    x = torch.randn(1, 12, cfg.hidden_size)
    with torch.no_grad():
        full = dec(x)
        cache = KVCache(cfg.num_hidden_layers, step=4)
        parts = [dec(x[:, :7], cache)] + [dec(x[:, i:i + 1], cache) for i in range(7, 9)]
        parts.append(dec(x[:, 9:], cache))  # several new tokens after a past (explicit mask)
        assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
        cache.crop(7)
        assert torch.allclose(dec(x[:, 7:], cache), full[:, 7:], atol=1e-5)


def test_clip_tower_equals_hidden_states_minus_two(tiny):
    vt = tiny.model.model.vision_tower
    pix = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        ours = vt(pix)
        ref = vt.vision_tower.vision_model(pix, output_hidden_states=True).hidden_states
    assert len(ref) == vt.vision_tower.vision_model.config.num_hidden_layers + 1
    assert ours.shape == (1, 576, 32)
    assert torch.allclose(ours, ref[-2][:, 1:], atol=1e-5)


def test_sam_med2d_shapes_and_window_roundtrip():
    from medplib_core.medplib.sam_encoder import _partition, _unpartition
    from medplib_core.medplib.sam_med2d import SamMed2D

    x = torch.randn(1, 16, 16, 8)
    win, padded = _partition(x, 14)
    assert win.shape == (4, 14, 14, 8) and padded == (28, 28)
    assert torch.equal(_unpartition(win, 14, padded, (16, 16)), x)
    sam = SamMed2D(TINY_SAM).eval()
    with torch.no_grad():
        emb = sam.embed_image(torch.randn(1, 3, 256, 256))
        low, iou = sam.decode_text(emb, torch.randn(TINY_SAM.prompt_embed_dim))
    assert emb.shape == (1, 32, 16, 16) and low.shape == (1, 1, 64, 64) and iou.shape == (1, 1)


# -- post-processing (§11.3) ------------------------------------------------------------------

@pytest.mark.parametrize("hw, rows, cols", [
    ((256, 256), (0, 63), (0, 63)),
    ((256, 150), (0, 63), (21, 63)),
    ((150, 256), (21, 63), (0, 63)),
    ((40, 256), (12, 51), (0, 63)),
])
def test_reference_crop_table(hw, rows, cols):
    r, c = reference_crop(hw)
    assert (r[0], r[-1]) == rows and (c[0], c[-1]) == cols


@pytest.mark.parametrize("image_hw", [(100, 100), (100, 200)])
def test_mask_placement(image_hw):
    from medplib_core.medplib.preprocess import longest_side_hw

    h, w = image_hw
    h2, w2 = longest_side_hw(h, w, 256)
    top, left = (256 - h2) // 2, (256 - w2) // 2
    obj = (slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4))
    canvas = torch.full((256, 256), -10.0)
    sy, sx = h2 / h, w2 / w
    canvas[top + int(obj[0].start * sy): top + int(obj[0].stop * sy),
           left + int(obj[1].start * sx): left + int(obj[1].stop * sx)] = 10.0
    low = torch.nn.functional.avg_pool2d(canvas[None, None], 4)
    want = np.zeros(image_hw, dtype=bool)
    want[obj] = True
    correct = logits_to_mask(low, (h2, w2), image_hw, "correct")
    assert correct.shape == image_hw
    iou = (correct & want).sum() / (correct | want).sum()
    assert iou > 0.9
    ref = logits_to_mask(low, (h2, w2), image_hw, "reference")
    assert ref.shape == image_hw
    if h == w:
        assert np.array_equal(ref, correct)  # square: the reference crop is the whole map


# -- layout -------------------------------------------------------------------------------------

def test_tiny_model_keys_match_expected_layout(tiny):
    from medplib_core.medplib.layout import expected_keys

    want = expected_keys(tiny.config, tiny.model.vision_config)
    have = {k: tuple(v.shape) for k, v in tiny.model.state_dict().items()}
    assert have == want


def test_sam_config_defaults_are_vit_b():
    s = SamConfig()
    assert (s.encoder_embed_dim, s.encoder_depth, s.grid, s.encoder_global_attn_indexes) == (
        768, 12, 16, (2, 5, 8, 11))
