"""MedPLIB end to end on tiny checkpoints (CPU): loading, VQA, region VQA, grounding, chat."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from medplib_core.errors import CancelledError, LoadError
from medplib_core.medplib.chat import ChatSession, ChatSettings
from medplib_core.medplib.generation import GenerationSettings
from medplib_core.medplib.layout import PREFIX_CLIP, PREFIX_SAM, expected_keys
from medplib_core.medplib.loader import load_medplib
from medplib_core.medplib.model import REGION_SENTINEL
from medplib_core.medplib.postprocess import logits_to_mask

from test_medplib_support import (  # noqa: F401  (fixtures)
    loaded_model, test_image, tiny, tiny_bare_paths, tiny_demo, tiny_paths, tokenizer)

SHORT = GenerationSettings(max_new_tokens=6)
SEG = GenerationSettings(forced_answer="<SEG>")


def _ckpt_tensor(paths, key):
    from safetensors import safe_open

    for f in sorted(paths.checkpoint.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            if key in sf.keys():
                return sf.get_tensor(key).float()
    raise KeyError(key)


# -- loading ----------------------------------------------------------------------------------

def test_load_report_consumes_every_key(tiny):
    rep = tiny.report
    want = expected_keys(tiny.config, tiny.model.vision_config)
    assert rep.tensors_loaded == {"checkpoint": len(want)}
    assert not rep.missing and not rep.unexpected
    assert rep.ignored and all(k.endswith("rotary_emb.inv_freq") for k in rep.ignored)
    # routers (2) and the 4.31 inv_freq buffers (2) in fp32, everything else bf16
    assert rep.file_dtypes == {"BF16": len(want) - 2, "F32": 4}
    assert rep.shard_format == "safetensors" and len(rep.shards) >= 2
    assert any(".bin" in n and "ignored" in n for n in rep.notes)  # the misleading index
    assert rep.open_questions["sam .pth pickles an optimizer"] is True
    assert rep.dtype == "float32" and "parameters" in rep.format()


def test_checkpoint_clip_and_sam_win_over_folder_and_pth(tiny, tiny_paths):
    sd = tiny.model.state_dict()
    for key in (PREFIX_CLIP + "embeddings.patch_embedding.weight",
                PREFIX_SAM + "image_encoder.pos_embed",
                PREFIX_SAM + "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"):
        assert torch.equal(sd[key], _ckpt_tensor(tiny_paths, key))
    diffs = tiny.report.comparisons
    assert all(v > 0 for d in diffs.values() for v in d.values())  # deliberately different


def test_bare_checkpoint_fills_clip_and_sam_from_folder_and_pth(tiny_bare_paths):
    from medplib_core.medplib.checkpoint_files import load_sam_pth

    loaded = load_medplib(tiny_bare_paths.checkpoint, tiny_bare_paths.clip, tiny_bare_paths.sam,
                          device="cpu")
    counts = loaded.report.tensors_loaded
    assert counts["clip_folder"] == 39 and counts["sam_pth"] > 100
    pth, _ = load_sam_pth(tiny_bare_paths.sam)
    sd = loaded.model.state_dict()
    assert torch.equal(sd[PREFIX_SAM + "image_encoder.pos_embed"],
                       pth["image_encoder.pos_embed"])
    with pytest.raises(LoadError, match="CLIP folder"):
        load_medplib(tiny_bare_paths.checkpoint, None, tiny_bare_paths.sam, device="cpu")


def test_clear_errors_for_wrong_or_incomplete_folders(tmp_path, tiny_paths):
    with pytest.raises(LoadError, match="does not exist|no config.json"):
        load_medplib(tmp_path / "nowhere", device="cpu")
    with pytest.raises(LoadError, match="no config.json"):
        load_medplib(tmp_path, device="cpu")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_paths.checkpoint, broken)
    for f in broken.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(LoadError, match="no weight files"):
        load_medplib(broken, device="cpu")
    shutil.copytree(tiny_paths.checkpoint, broken, dirs_exist_ok=True)
    sorted(broken.glob("*.safetensors"))[0].unlink()
    with pytest.raises(LoadError, match="tensors missing") as err:
        load_medplib(broken, tiny_paths.clip, tiny_paths.sam, device="cpu")
    assert str(broken) in str(err.value)


def test_bin_shards_are_a_fallback(tmp_path, tiny_paths):
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(tiny_paths.checkpoint, folder)
    for f in sorted(folder.glob("*.safetensors")):
        torch.save(load_file(str(f)), str(f.with_suffix(".bin")))
        f.unlink()
    loaded = load_medplib(folder, tiny_paths.clip, tiny_paths.sam, device="cpu")
    assert loaded.report.shard_format == "bin" and not loaded.report.missing


# -- shapes and plumbing -------------------------------------------------------------------------

def test_shapes_and_expanded_length(tiny):
    chat = ChatSession(tiny, test_image(90, 160))
    ctx = chat.context
    assert ctx.image_tokens.shape == (576, 64) and ctx.clip_features.shape == (576, 32)
    assert ctx.sam_embedding.shape == (1, 32, 16, 16) and ctx.resize_hw == (144, 256)
    ids = tiny.tokenizer.encode_prompt("USER: <im_start><image><im_end>\nWhat? <region></region> ASSISTANT:")
    vec = tiny.model.region_vectors(ctx, [np.ones((90, 160), bool)])
    emb = tiny.model.embed_ids(ids, ctx.image_tokens, vec)
    assert emb.shape[1] == len(ids) + 575  # the -300 slot holds the region vector
    pos = ids.index(REGION_SENTINEL) + 575
    assert torch.equal(emb[0, pos], vec[0])


def test_vqa_answer_streams(tiny):
    chat = ChatSession(tiny, test_image(64, 64))
    deltas: list[str] = []
    turn = chat.ask("What can you interpret from the overall image?", on_token=deltas.append,
                    generation=SHORT)
    assert turn.text and "".join(deltas) == turn.text
    assert turn.stop_reason in ("eos", "max_new_tokens", "stop_string")
    assert not turn.masks and turn.provenance["grounding"] == {"seg_tokens": 0}


def test_region_vqa_answer(tiny):
    img = test_image(80, 120)
    chat = ChatSession(tiny, img)
    turn = chat.ask("Can you describe what is seen at the area <region>?",
                    regions=[(60, 30), (10, 10, 50, 40)], generation=SHORT)
    assert turn.text and turn.provenance["model_question"].count("<region></region>") == 2
    assert [r["kind"] for r in turn.provenance["regions"]] == ["point", "box"]
    dropped = chat.with_settings(drop_regions=True).ask("Describe <region>.", regions=[(60, 30)],
                                                        generation=SHORT)
    # vqa_infer.py --eval_vqa keeps the pair; only the -300 placeholder goes (no vector)
    assert dropped.provenance["model_question"] == "Describe <region></region>."


def test_drop_region_mode_exact_id_sequence(tiny):
    """Drop-region mode (reference ``vqa_infer.py --eval_vqa``): the ``<region></region>``
    token pair stays, the -300 id between them is removed, no region vector is embedded,
    and the model is fed exactly this sequence."""
    from medplib_core.medplib.conversation import SYSTEM_HUMAN
    from medplib_core.medplib.generation import generate
    from medplib_core.medplib.llama_moe import KVCache
    from medplib_core.medplib.model import IMAGE_SENTINEL

    tok = tiny.tokenizer
    sp = tok.sp
    r0, r1 = tok.id_of("<region>"), tok.id_of("</region>")
    want = ([1] + sp.encode(SYSTEM_HUMAN + " USER:")
            + [tok.id_of("<im_start>"), IMAGE_SENTINEL, tok.id_of("<im_end>")]
            + sp.encode("Describe the area") + [r0, r1] + sp.encode(". ASSISTANT:"))
    img = test_image(80, 120)
    drop = ChatSession(tiny, img, ChatSettings(drop_regions=True))
    for question, regions in (("Describe the area <region>.", [(60, 30)]),
                              ("Describe the area <region>.", []),
                              ("Describe the area <region>mask.png</region>.", [(60, 30)])):
        assert drop.prompt_ids(question, len(regions)) == want
    inject = ChatSession(tiny, img).prompt_ids("Describe the area <region>.", 1)
    assert inject == want[:-len(sp.encode(". ASSISTANT:")) - 1] + [REGION_SENTINEL, r1] \
        + sp.encode(". ASSISTANT:")
    turn = drop.ask("Describe the area <region>.", regions=[(60, 30)], generation=SHORT)
    assert turn.provenance["prompt_tokens"] == len(want)
    emb = tiny.model.embed_ids(want, drop.context.image_tokens, [])
    assert emb.shape[1] == len(want) + 575
    ref = generate(tiny.model, tok, emb, KVCache(2), SHORT)
    assert turn.provenance["answer_ids"] == ref.ids


@pytest.mark.parametrize("hw", [(64, 64), (90, 160), (200, 70)])
def test_grounding_mask_shape_and_seg_state(tiny, hw):
    chat = ChatSession(tiny, test_image(*hw))
    turn = chat.ask("Could you segment out the liver in this image?", generation=SEG)
    assert turn.text == "<SEG>" and len(turn.masks) == 1
    mask = turn.masks[0]
    assert mask.shape == hw and mask.dtype == bool
    info = turn.provenance["grounding"]
    assert info["seg_at_prefill"] and info["seg_tokens"] == 1
    low = chat.context.extra["last_low_res_logits"]
    assert low.shape == (1, 1, 64, 64)
    assert np.array_equal(mask, logits_to_mask(low, chat.context.resize_hw, hw))


def test_seg_state_equals_full_sequence_forward(tiny):
    """The <SEG> state captured in the KV-cache loop is the prefill's last position, and a
    no-cache forward of the whole sequence gives the same vector (§11.1, §17.3)."""
    from medplib_core.medplib.conversation import Conversation
    from medplib_core.medplib.generation import generate
    from medplib_core.medplib.llama_moe import KVCache

    m, tok = tiny.model, tiny.tokenizer
    ctx = m.encode_image(test_image(64, 96))
    conv = Conversation()
    conv.add_user("Could you segment out the liver in this image?")
    ids = tok.encode_prompt(conv.open_prompt())
    emb = m.embed_ids(ids, ctx.image_tokens, [])
    res = generate(m, tok, emb, KVCache(2), SEG)
    seg = tok.id_of("<SEG>")
    assert res.ids == [seg, 2] and res.seg_steps == [0]
    full = m.forward_hidden(m.embed_ids(ids + [seg, 2], ctx.image_tokens, []))
    assert torch.allclose(res.seg_states[0], full[0, emb.shape[1] - 1], atol=1e-5)
    # greedy ids from the cache loop equal greedy ids recomputed without a cache
    res2 = generate(m, tok, emb, KVCache(2), GenerationSettings(max_new_tokens=4))
    seq = list(ids)
    for want in res2.ids:
        h = m.forward_hidden(m.embed_ids(seq, ctx.image_tokens, []))[:, -1]
        assert int(m.logits(h).argmax()) == want
        seq.append(want)


def test_seg_generated_after_text_uses_the_state_before_it(tiny_demo):
    """A naturally generated "The liver <SEG>." (demo checkpoint): the mask comes from the
    state at the position whose prediction is <SEG>, not from the prefill (§11.1)."""
    m, tok = tiny_demo.model, tiny_demo.tokenizer
    chat = ChatSession(tiny_demo, test_image(70, 110))
    deltas: list[str] = []
    turn = chat.ask("Where is the liver?", on_token=deltas.append)
    assert turn.text.startswith("The liver <SEG>") and turn.stop_reason == "eos"
    assert "".join(deltas) == turn.text and len(deltas) >= 3
    info = turn.provenance["grounding"]
    assert info["seg_tokens"] == 1 and not info["seg_at_prefill"]
    ids = tok.encode_prompt(_open(chat))
    answer = turn.provenance["answer_ids"]
    k = answer.index(tok.id_of("<SEG>"))
    full = m.forward_hidden(m.embed_ids(ids + answer, chat.context.image_tokens, []))
    state = full[0, len(ids) + 575 + k - 1]
    low, _ = m.seg_logits(chat.context, state)
    assert torch.allclose(low, chat.context.extra["last_low_res_logits"], atol=1e-4)
    assert turn.masks[0].shape == (70, 110)


def _open(chat) -> str:
    """The open prompt of the chat's first question (before its answer was appended)."""
    from medplib_core.medplib.conversation import Conversation

    conv = Conversation(chat.settings.system, chat.conv.messages[:1])
    return conv.open_prompt()


def test_determinism_greedy_and_seeded_sampling(tiny):
    img = test_image(70, 90)
    a = ChatSession(tiny, img).ask("What is this?", generation=GenerationSettings(max_new_tokens=5))
    b = ChatSession(tiny, img).ask("What is this?", generation=GenerationSettings(max_new_tokens=5))
    assert a.provenance["answer_ids"] == b.provenance["answer_ids"]
    s = GenerationSettings(max_new_tokens=5, temperature=0.9, top_p=0.9, seed=3)
    c = ChatSession(tiny, img).ask("What is this?", generation=s)
    d = ChatSession(tiny, img).ask("What is this?", generation=s)
    assert c.provenance["answer_ids"] == d.provenance["answer_ids"]
    m1 = ChatSession(tiny, img).ask("Segment the liver.", generation=SEG).masks[0]
    m2 = ChatSession(tiny, img).ask("Segment the liver.", generation=SEG).masks[0]
    assert np.array_equal(m1, m2)


def test_multi_turn_reuses_cache_and_matches_fresh_prefill(tiny):
    img = test_image(64, 64)
    chat = ChatSession(tiny, img)
    chat.ask("What is this?", generation=SHORT)
    before = list(chat.conv.messages)
    t2 = chat.ask("Describe <region>.", regions=[(20, 20)], generation=SHORT)
    assert t2.provenance["prompt_positions_reused"] > 576
    fresh = ChatSession(tiny, img)
    fresh.conv.messages = before
    fresh._regions = []
    t2b = fresh.ask("Describe <region>.", regions=[(20, 20)], generation=SHORT)
    if t2b.provenance["decoder"] == "reference":  # a new session's own cache starts empty
        assert t2b.provenance["prompt_positions_reused"] == 0
    else:  # the fast path's rows are shared: at most the text before the (new) image is reused
        assert t2b.provenance["prompt_positions_reused"] < 576
    assert t2b.provenance["answer_ids"] == t2.provenance["answer_ids"]
    t3 = chat.ask("Could you segment it?", generation=SEG)  # a corrected mask can be a region
    t4 = chat.ask("And here <region>?", regions=[t3.masks[0] | True], generation=SHORT)
    assert len(chat.turns) == 4 and t4.provenance["turn"] == 3


def test_cancel_leaves_the_conversation_unchanged(tiny):
    chat = ChatSession(tiny, test_image(64, 64))
    chat.ask("What is this?", generation=SHORT)
    n = len(chat.conv.messages)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(CancelledError):
        chat.ask("And now?", cancel=cancel, generation=GenerationSettings(max_new_tokens=20))
    assert len(chat.conv.messages) == n and len(chat.turns) == 1
    again = chat.ask("And now?", generation=SHORT)
    fresh = ChatSession(tiny, test_image(64, 64))
    fresh.ask("What is this?", generation=SHORT)
    assert fresh.ask("And now?", generation=SHORT).provenance["answer_ids"] == \
        again.provenance["answer_ids"]


def test_bf16_on_cpu_runs(tiny_paths):
    loaded = loaded_model(tiny_paths, torch.bfloat16)
    assert loaded.model.dtype == torch.bfloat16
    turn = ChatSession(loaded, test_image(48, 64)).ask("Segment the liver.", generation=SEG)
    assert turn.masks[0].shape == (48, 64)


def test_correct_crop_option(tiny):
    chat = ChatSession(tiny, test_image(90, 160), ChatSettings(crop_mode="correct", threshold=0.5))
    turn = chat.ask("Segment the liver.", generation=SEG)
    assert turn.provenance["crop_mode"] == "correct" and turn.masks[0].shape == (90, 160)


def test_cli_ask_saves_mask(tiny_paths, tmp_path, capsys):
    from PIL import Image

    from medplib_core.cli.main import main

    img = tmp_path / "slice.png"
    Image.fromarray(test_image(60, 80)).save(img)
    out = tmp_path / "mask.png"
    rc = main(["medplib", "ask", "--checkpoint", str(tiny_paths.checkpoint), "--clip",
               str(tiny_paths.clip), "--sam", str(tiny_paths.sam), "--forced-answer", "<SEG>",
               "--mask-out", str(out), "--json", str(img), "Segment the liver."])
    assert rc == 0 and out.is_file()
    assert np.array(Image.open(out)).shape == (60, 80)
    prov = json.loads(capsys.readouterr().out)
    assert prov["answer"] == "<SEG>"
