"""The fast decode path (static KV cache, device-side top-1 routing and token choice) and the
continuous-batching scheduler give the same greedy ids as the reference loop (tiny, fp32, CPU)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from medplib_core.errors import CancelledError
from medplib_core.medplib.batched import DecodeRequest, DecodeScheduler
from medplib_core.medplib.chat import ChatSession, ChatSettings
from medplib_core.medplib.conversation import Conversation
from medplib_core.medplib.fast_decode import fast_generate
from medplib_core.medplib.fast_lm import MOE_KERNELS, FastLM, pack_layers
from medplib_core.medplib.generation import GenerationSettings, generate
from medplib_core.medplib.llama_moe import KVCache

from test_medplib_support import test_image, tiny, tiny_demo, tiny_paths  # noqa: F401

QUESTIONS = ("What can you interpret from the overall image?", "Is there a lesion?",
             "Could you segment out the liver in this image?", "Describe the kidney.",
             "What modality is this scan?")


def _prompt(loaded, question: str, seed: int = 0):
    m, tok = loaded.model, loaded.tokenizer
    ctx = m.encode_image(test_image(64, 80, seed))
    conv = Conversation()
    conv.add_user(question)
    ids = tok.encode_prompt(conv.open_prompt())
    return m.embed_ids(ids, ctx.image_tokens, [])


def _reference(loaded, emb, settings):
    return generate(loaded.model, loaded.tokenizer, emb, KVCache(len(loaded.model.model.layers)),
                    settings)


def test_fast_lm_matches_the_reference_decoder(tiny):
    m = tiny.model
    fast = FastLM.for_model(m)
    emb = _prompt(tiny, QUESTIONS[0])[0]
    ref_cache = KVCache(2)
    ref = m.forward_hidden(emb[None], ref_cache)[0]
    cache = fast.new_cache(2, 1024)
    torch.testing.assert_close(fast.prefill(cache, 1, 0, emb), ref, rtol=0, atol=1e-5)
    n = emb.shape[0]
    for s, t in enumerate((5, 17, 33)):
        want = m.forward_hidden(m.embed_ids([t], None, []), ref_cache)[0, -1]
        got = fast.decode(cache, torch.tensor([0, t]), torch.tensor([cache.scratch, n + s]),
                          torch.tensor([1, n + s + 1]), n + 8)
        torch.testing.assert_close(got[1], want, rtol=0, atol=1e-5)
    # the reference module still runs on the fused/stacked views
    torch.testing.assert_close(m.forward_hidden(emb[None], KVCache(2))[0], ref, rtol=0, atol=0)


def test_moe_kernels_agree_with_the_reference_moe(tiny):
    layer = pack_layers(tiny.model.model)[0]
    moe = tiny.model.model.layers[0].mlp
    x = torch.randn(37, layer.gate_up.shape[-1], generator=torch.Generator().manual_seed(1))
    want = moe(x)
    for name, kernel in MOE_KERNELS.items():
        torch.testing.assert_close(kernel(x, layer.router, layer.gate_up, layer.down), want,
                                   rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(kernel(x[:1], layer.router, layer.gate_up, layer.down),
                                   want[:1], rtol=1e-5, atol=1e-5, msg=name)


def test_decode_kernel_never_needs_the_host_on_a_gpu():
    from medplib_core.medplib.fast_lm import decode_kernel

    bf16, fp32 = torch.bfloat16, torch.float32
    assert decode_kernel(True, None, fp32) == "grouped" and decode_kernel(False, None, fp32) == "loop"
    assert decode_kernel(True, (9, 0), bf16) == "grouped"  # H100/H200: device-side offsets
    assert decode_kernel(True, (10, 0), bf16) == "grouped"
    assert decode_kernel(True, (8, 9), bf16) == "dense"  # e.g. L40S: grouped GEMM syncs there
    assert decode_kernel(True, (9, 0), fp32) == "dense" and decode_kernel(False, (9, 0), bf16) == "dense"


@pytest.mark.parametrize("question", QUESTIONS[:3])
def test_fast_generate_equals_reference_greedy_ids(tiny, question):
    emb = _prompt(tiny, question)
    s = GenerationSettings(max_new_tokens=24, ignore_eos=True)
    sched = DecodeScheduler(tiny.model, tiny.tokenizer, max_batch=1, max_len=1024)
    ref = _reference(tiny, emb, s)
    got = fast_generate(tiny.model, tiny.tokenizer, emb, s, scheduler=sched)
    assert got.ids == ref.ids and got.text == ref.text and got.stop_reason == ref.stop_reason


def test_host_one_step_behind_finishes_every_answer(tiny, tiny_demo):
    """As on a GPU, the host reads a step's ids while the next one runs (host_lag=1): the last
    step of an answer is still read once nothing is left to launch (it once waited forever),
    and the ids, the streamed text and the <SEG> state are those of the reference loop."""
    emb = _prompt(tiny, QUESTIONS[0])
    for s in (GenerationSettings(max_new_tokens=1, ignore_eos=True),
              GenerationSettings(max_new_tokens=9, ignore_eos=True)):
        sched = DecodeScheduler(tiny.model, tiny.tokenizer, max_batch=2, max_len=1024,
                                host_lag=1)
        handles = [sched.submit(DecodeRequest(emb, s)) for _ in range(3)]
        assert [h.result(timeout=60).ids for h in handles] == [_reference(tiny, emb, s).ids] * 3
        sched.step()  # reads the one extra step launched before the host saw the last token
        assert not sched.busy
    emb = _prompt(tiny_demo, "Where is the liver?")
    s = GenerationSettings(max_new_tokens=40)
    ref = _reference(tiny_demo, emb, s)
    sched = DecodeScheduler(tiny_demo.model, tiny_demo.tokenizer, max_batch=2, max_len=1024,
                            host_lag=1)
    deltas: list[str] = []
    got = sched.submit(DecodeRequest(emb, s, on_text=deltas.append)).result(timeout=60)
    assert got.ids == ref.ids and got.stop_reason == "eos" and "".join(deltas) == ref.text
    torch.testing.assert_close(got.seg_states[0], ref.seg_states[0], rtol=0, atol=1e-5)


def test_fast_path_seg_state_stream_and_stop_like_reference(tiny_demo):
    """The demo checkpoint answers "The liver <SEG>." by itself: same ids, text, streamed
    deltas and <SEG> state (the state that predicted it, §11.1) on both paths."""
    emb = _prompt(tiny_demo, "Where is the liver?")
    s = GenerationSettings(max_new_tokens=40)
    ref_deltas: list[str] = []
    ref = generate(tiny_demo.model, tiny_demo.tokenizer, emb, KVCache(2), s,
                   on_text=ref_deltas.append)
    deltas: list[str] = []
    sched = DecodeScheduler(tiny_demo.model, tiny_demo.tokenizer, max_batch=2, max_len=1024)
    got = fast_generate(tiny_demo.model, tiny_demo.tokenizer, emb, s, on_text=deltas.append,
                        scheduler=sched)
    assert got.ids == ref.ids and got.stop_reason == ref.stop_reason == "eos"
    assert got.text == ref.text and "".join(deltas) == got.text and len(deltas) >= 2
    assert got.seg_steps == ref.seg_steps and len(got.seg_states) == 1
    torch.testing.assert_close(got.seg_states[0], ref.seg_states[0], rtol=0, atol=1e-5)
    forced = GenerationSettings(forced_answer="<SEG>", seg_fallback=True)
    f_ref = _reference(tiny_demo, emb, forced)
    f_got = fast_generate(tiny_demo.model, tiny_demo.tokenizer, emb, forced, scheduler=sched)
    assert f_got.ids == f_ref.ids and f_got.seg_steps == [0]
    torch.testing.assert_close(f_got.seg_states[0], f_ref.seg_states[0], rtol=0, atol=1e-5)
    fb = GenerationSettings(max_new_tokens=3, seg_fallback=True, stop_strings=())
    torch.testing.assert_close(fast_generate(tiny_demo.model, tiny_demo.tokenizer, emb, fb,
                                             scheduler=sched).fallback_state,
                               _reference(tiny_demo, emb, fb).fallback_state, rtol=0, atol=1e-5)


def test_a_forced_answer_longer_than_256_tokens_on_the_fast_path(tiny):
    """Teacher-forced answers are limited by the row only (they once stopped at 256 tokens
    with a ValueError, so a long forced answer failed on every GPU server)."""
    emb = _prompt(tiny, QUESTIONS[0])
    s = GenerationSettings(forced_answer="liver " * 300)
    sched = DecodeScheduler(tiny.model, tiny.tokenizer, max_batch=2, max_len=1024)
    got = fast_generate(tiny.model, tiny.tokenizer, emb, s, scheduler=sched)
    ref = _reference(tiny, emb, s)
    assert len(got.ids) > 256 and got.ids == ref.ids and got.text == ref.text


def test_sampling_with_a_seed_matches_the_reference(tiny):
    emb = _prompt(tiny, QUESTIONS[1])
    s = GenerationSettings(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=5, ignore_eos=True)
    sched = DecodeScheduler(tiny.model, tiny.tokenizer, max_batch=2, max_len=1024)
    assert fast_generate(tiny.model, tiny.tokenizer, emb, s, scheduler=sched).ids == \
        _reference(tiny, emb, s).ids


LENGTHS = (20, 4, 12, 6, 15)


@pytest.fixture(scope="module")
def five_requests(tiny):
    """Five prompts, their settings and the reference loop's answers (computed once)."""
    prompts = [_prompt(tiny, q, seed=i) for i, q in enumerate(QUESTIONS)]
    settings = [GenerationSettings(max_new_tokens=n, ignore_eos=True) for n in LENGTHS]
    return prompts, settings, [_reference(tiny, e, s) for e, s in zip(prompts, settings)]


@pytest.mark.timeout(180)  # a step the host never reads would loop forever
@pytest.mark.parametrize("kernel,host_lag", [("grouped", 0), ("loop", 0), ("dense", 0),
                                             ("grouped", 1)])
def test_continuous_batching_equals_one_at_a_time(tiny, five_requests, kernel, host_lag):
    """Five requests of different lengths through three rows: each joins when a row frees,
    leaves when done, and gets exactly its own greedy ids; one is cancelled midway."""
    prompts, settings, refs = five_requests
    lengths = LENGTHS
    sched = DecodeScheduler(tiny.model, tiny.tokenizer, max_batch=3, max_len=1024,
                            moe_kernel=kernel, host_lag=host_lag)
    handles = [sched.submit(DecodeRequest(e, s)) for e, s in zip(prompts, settings)]
    victim = sched.submit(DecodeRequest(prompts[0], GenerationSettings(max_new_tokens=50)))
    batch_sizes = []
    while sched.busy:
        sched.step()
        batch_sizes.append(sched.n_active)
        if any(sl is not None and sl.handle is victim and len(sl.res.ids) >= 3
               for sl in sched._slots):
            victim.cancel()
    for h, ref in zip(handles, refs):
        assert h.result().ids == ref.ids and h.result().text == ref.text
    assert victim.result().stop_reason == "cancelled"
    assert max(batch_sizes) == 3  # decoded together
    assert sched.stats["steps"] < sum(lengths)  # shared steps, not one request after another
    assert sched.stats["prefills"] == 6


def test_background_loop_serves_threads_and_reuses_prefixes(tiny):
    sched = DecodeScheduler(tiny.model, tiny.tokenizer, max_batch=4, max_len=1024, cached_rows=2)
    s = GenerationSettings(max_new_tokens=10, ignore_eos=True)
    prompts = [_prompt(tiny, q) for q in QUESTIONS[:3]]
    refs = [_reference(tiny, e, s).ids for e in prompts]
    out: dict[int, list[int]] = {}
    sched.start()
    try:
        def ask(i):
            keys = list(range(prompts[i].shape[1]))  # position keys of a shared prefix
            keys[-40:] = [("q", i, j) for j in range(40)]
            h = sched.submit(DecodeRequest(prompts[i], s, prefix_keys=keys))
            out[i] = h.result(timeout=120).ids

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [out[i] for i in range(3)] == refs
        # a follow-up sharing the first request's prompt + answer reuses those positions
        first = prompts[0][0]
        follow = torch.cat([first, tiny.model.embed_ids(refs[0][:-1] + [7, 8], None, [])[0]])
        keys = list(range(first.shape[0]))
        keys[-40:] = [("q", 0, j) for j in range(40)]
        keys += refs[0][:-1] + [7, 8]
        h = sched.submit(DecodeRequest(follow, s, prefix_keys=keys))
        assert h.result(timeout=120).ids == _reference(tiny, follow[None], s).ids
        assert h.result().reused_positions == first.shape[0] + len(refs[0]) - 1
    finally:
        sched.stop()


def test_chat_session_fast_decoder_equals_reference(tiny):
    img = test_image(64, 64)
    fast = ChatSession(tiny, img, ChatSettings(decoder="fast"))
    ref = ChatSession(tiny, img, ChatSettings(decoder="reference"))
    short = GenerationSettings(max_new_tokens=8)
    for q, regions, gen in (("What is this?", None, short),
                            ("Describe <region>.", [(20, 20)], short),
                            ("Could you segment it?", None, GenerationSettings(forced_answer="<SEG>"))):
        deltas: list[str] = []
        a = fast.ask(q, regions=regions, generation=gen, on_token=deltas.append)
        b = ref.ask(q, regions=regions, generation=gen)
        assert a.provenance["answer_ids"] == b.provenance["answer_ids"]
        assert a.text == b.text == "".join(deltas) and a.provenance["decoder"] == "fast"
        assert len(a.masks) == len(b.masks)
        for ma, mb in zip(a.masks, b.masks):
            assert np.array_equal(ma, mb)
    assert fast.turns[1].provenance["prompt_positions_reused"] > 576  # prefix reused
    mixed = ChatSession(tiny, img, ChatSettings(decoder="fast"))  # e.g. a turn too long for a row
    mixed.ask("What is this?", generation=short)
    mixed.settings.decoder = "reference"
    t = mixed.ask("Describe <region>.", regions=[(20, 20)], generation=short)
    assert t.provenance["answer_ids"] == ref.turns[1].provenance["answer_ids"]
    assert t.provenance["prompt_positions_reused"] == 0 and t.provenance["decoder"] == "reference"
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 2

    n = len(fast.conv.messages)
    with pytest.raises(CancelledError):
        fast.ask("And now?", cancel=cancel, generation=GenerationSettings(max_new_tokens=200,
                                                                          ignore_eos=True))
    assert len(fast.conv.messages) == n and len(fast.turns) == 3
