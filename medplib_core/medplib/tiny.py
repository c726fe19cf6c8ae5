"""Tiny MedPLIB checkpoint set for tests and demos (spec §17): the real folder layout and
config schema at tiny sizes.

`make_tiny(out)` writes::

    out/tiny-medplib/      config.json (every §4 field, per-layer moe lists, bogus CLIP path,
                           plus a non-standard "sam_config"), 2+ safetensors shards with a
                           misleading pytorch_model.bin.index.json, tokenizer.model (a tiny
                           SentencePiece BPE), tokenizer_config.json, special_tokens_map.json,
                           added_tokens.json (the 267 MedPLIB tokens after the base vocab)
    out/tiny-clip/         a tiny full CLIPModel (text + vision) and preprocessor_config.json
    out/tiny-sam-med2d.pth {'model': SAM state dict, 'optimizer': a pickled Adam object}

CLIP and SAM tensors in the checkpoint deliberately differ from the folder / .pth copies.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import SamConfig, parse_config, released_config
from .tokenizer import MEDPLIB_TOKENS

TINY_SAM = SamConfig(
    encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
    window_size=14, prompt_embed_dim=32, mask_in_chans=16, decoder_depth=2, decoder_num_heads=2,
    decoder_mlp_dim=64, iou_head_hidden_dim=32, adapter_ratio=0.25)
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 2, "image_size": 336, "patch_size": 14,
               "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 16}

_CORPUS_WORDS = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the human's questions. USER: ASSISTANT: "
    "Could you segment out the liver in this image? Please generate a mask that segments the "
    "bladder kidney spleen lung heart brain tumor lesion nodule fracture. Can you describe what "
    "is seen at the area? What can you interpret from the overall image? Please provide an "
    "interpretation from this image. CT MRI X-ray ultrasound dermoscopy pathology scan slice "
    "left right upper lower normal abnormal shows there is no evidence of a mass 1 2 3 4 5 6 7 8 9 0"
)


@dataclass
class TinyPaths:
    checkpoint: Path
    clip: Path
    sam: Path


def tiny_config(vocab_size: int) -> dict:
    """config.json of the tiny checkpoint: the released schema with tiny dimensions."""
    cfg = released_config()
    cfg.update({
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": vocab_size,
        "max_position_embeddings": 4096, "mm_hidden_size": TINY_VISION["hidden_size"],
        "out_dim": TINY_SAM.prompt_embed_dim,
        "mm_vision_tower": "/nonexistent/author/clip-vit-large-patch14-336",
        "vision_tower": "/nonexistent/author/clip-vit-large-patch14-336",
        "sam_config": TINY_SAM.to_dict(),
        "mm_vision_config": {"num_attention_heads": TINY_VISION["num_attention_heads"]},
    })
    cfg["moe"] = copy.deepcopy(cfg["moe"])
    cfg["moe"].update({"moe_layers_idx": [0, 1], "num_experts": [2, 2]})
    return cfg


def train_sentencepiece(vocab_size: int = 600) -> bytes:
    """A tiny LLaMA-like SentencePiece BPE model (unk/bos/eos 0/1/2, byte fallback)."""
    import sentencepiece as spm

    lines = [_CORPUS_WORDS] + _CORPUS_WORDS.split(". ") + [w for w in _CORPUS_WORDS.split()]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4), model_writer=buf, vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=1.0, num_threads=1, hard_vocab_limit=False, add_dummy_prefix=True,
        split_digits=True, minloglevel=2)
    return buf.getvalue()


def write_tokenizer(folder: Path, sp_model: bytes) -> int:
    """Tokenizer files as a transformers-4.31 slow-tokenizer save; returns the vocab size."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(sp_model)
    base = spm.SentencePieceProcessor(model_proto=sp_model).get_piece_size()
    added = {t: base + i for i, t in enumerate(MEDPLIB_TOKENS)}
    (folder / "added_tokens.json").write_text(json.dumps(added, indent=2))

    def tok(s):
        return {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}

    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": tok("<s>"),
        "eos_token": tok("</s>"), "unk_token": tok("<unk>"), "pad_token": None,
        "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 2048,
        "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
    }, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": tok("<s>"), "eos_token": tok("</s>"), "unk_token": tok("<unk>"),
        "pad_token": "<unk>"}, indent=2))
    return base + len(MEDPLIB_TOKENS)


def write_tiny_clip(folder: Path, seed: int = 1) -> None:
    """A tiny full CLIPModel folder plus its image-processor config (no download)."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 64, "max_position_embeddings": 16,
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    cfg = CLIPConfig(text_config=text, vision_config=dict(TINY_VISION), projection_dim=16)
    CLIPModel(cfg).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 336, "width": 336}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336}}, indent=2))


def write_tiny_sam_pth(path: Path, sam: SamConfig = TINY_SAM, seed: int = 2) -> None:
    """``{'model': state_dict, 'optimizer': Adam}`` like SAM-Med2D's training script saves."""
    from .layout import sam_keys
    from .writer import init_tensor

    gen = torch.Generator().manual_seed(seed)
    sd = {k: init_tensor(k, shape, gen) for k, shape in sam_keys(sam).items()}
    dummy = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([dummy], lr=1e-4)
    dummy.grad = torch.ones(3)
    opt.step()
    torch.save({"model": sd, "optimizer": opt, "epoch": 7}, str(path))


DEMO_ANSWER = "The liver <SEG>."


def demo_chain(folder: Path, answer: str = DEMO_ANSWER) -> list[int]:
    """Token chain [last prompt token, answer tokens..., EOS] for a ``demo`` checkpoint."""
    from .conversation import Conversation
    from .tokenizer import MedplibTokenizer

    tok = MedplibTokenizer.from_folder(folder)
    conv = Conversation()
    conv.add_user("Any question?")
    chain = [tok.encode_prompt(conv.open_prompt())[-1]]
    for t in tok.encode(answer, add_bos=False) + [tok.eos_id]:
        if t in chain:  # a bigram chain cannot revisit a token
            break
        chain.append(t)
    return chain


def _demo_patch(tensors, chain: list[int]):
    """Make the model a bigram chain: the hidden state at a chain token is dominated by its
    own embedding direction e_i, and ``lm_head`` maps e_i to the next chain token, so every
    greedy answer is `DEMO_ANSWER` (text, then ``<SEG>``, then EOS)."""
    for name, t in tensors:
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            t = t.float().clone()
            for i, tok in enumerate(chain[:-1]):
                if name == "lm_head.weight":
                    t[chain[i + 1], i] = 4.0
                else:
                    t[tok, i] = 30.0
            t = t.to(torch.bfloat16)
        yield name, t


def make_tiny(out: str | Path, seed: int = 0, include_clip: bool = True,
              include_sam: bool = True, shards: int = 3, demo: bool = False) -> TinyPaths:
    """Write the tiny checkpoint, CLIP folder and SAM .pth under ``out``.

    ``demo``: random weights except that every greedy answer is `DEMO_ANSWER`, so a GUI shows
    streamed text and a grounded mask without real weights."""
    from .config import clip_vision_config
    from .layout import expected_keys, numel
    from .writer import random_checkpoint_tensors, write_shards

    out = Path(out)
    ckpt, clip, sam = out / "tiny-medplib", out / "tiny-clip", out / "tiny-sam-med2d.pth"
    ckpt.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(ckpt, train_sentencepiece())
    raw = tiny_config(vocab)
    (ckpt / "config.json").write_text(json.dumps(raw, indent=2))
    write_tiny_clip(clip)
    cfg = parse_config(raw)
    vision = clip_vision_config(clip)
    total = sum(numel(s) for s in expected_keys(cfg, vision).values()) * 2
    tensors = random_checkpoint_tensors(cfg, vision, seed, include_clip=include_clip,
                                        include_sam=include_sam)
    if demo:
        tensors = _demo_patch(tensors, demo_chain(ckpt))
    write_shards(ckpt, tensors, shard_bytes=max(1, total // shards + 1))
    write_tiny_sam_pth(sam)
    return TinyPaths(ckpt, clip, sam)
