"""Chat about one image: VQA, region VQA and grounding in a multi-turn conversation.

    loaded = load_medplib(checkpoint, clip, sam)
    chat = ChatSession(loaded, image)
    turn = chat.ask("Can you describe the area <region>?", regions=[(120, 88)],
                    on_token=print_delta, cancel=stop_requested)
    turn.text, turn.masks, turn.provenance

The image is encoded once per session. Every turn renders the whole conversation with the
training template and tokenizer rules; the KV cache of the longest shared prefix (image and
earlier turns) is reused, so a follow-up question only prefills its new tokens.

``ask`` blocks; a GUI runs it on a worker thread, and ``on_token`` / ``cancel`` are then called
on that thread (marshal the text to the GUI thread). One session is not thread-safe.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medplib_core import __version__
from medplib_core.errors import CancelledError, PromptError

from .turn import ChatTurn  # noqa: F401 (re-exported: chat.ChatTurn)
from .conversation import SYSTEM_HUMAN, Conversation, count_region_marks, normalise_regions
from .fast_decode import fast_generate, fits, resolve_decoder
from .generation import GenerationSettings, generate
from .kv_cache import common_prefix
from .llama_moe import KVCache
from .model import IMAGE_SENTINEL, REGION_SENTINEL, ImageContext
from .postprocess import DEFAULT_THRESHOLD, logits_to_mask
from .region import as_region, region_mask

ENGINE_NAME = "MedPLIB"
_UIDS = itertools.count(1)  # identities of images and sessions in prefix-cache keys


@dataclass
class ChatSettings:
    """Per-session behaviour; defaults reproduce the reference (spec §15)."""

    generation: GenerationSettings = field(default_factory=GenerationSettings)
    crop_mode: str = "reference"  # or "correct" (§11.3)
    threshold: float = DEFAULT_THRESHOLD
    system: str = SYSTEM_HUMAN  # conversation.SYSTEM_USER reproduces vqa_infer.py
    region_max_points: int | None = 512  # None: sample every cell (§8.3)
    region_seed: int = 42
    region_largest_component: bool = False  # evaluation-dataset variant (§8.2)
    # Reproduce vqa_infer.py --eval_vqa, which passes no region masks: the question keeps its
    # <region></region> pairs, only the placeholder id -300 between them is removed and no
    # region vector is inserted (the reference filters input_ids != REGION_TOKEN_INDEX).
    drop_regions: bool = False
    # "fast": static KV cache, device-side routing and token choice, shared batched scheduler
    # (fast_decode); "reference": the step-by-step loop of generation.generate; "auto": fast
    # on a GPU, reference on a CPU. Both give the same greedy ids (tests/test_medplib_fast.py).
    # $MEDPLIB_CHAT_DECODER sets the default (e.g. "fast" for a CPU server with many users).
    decoder: str = field(default_factory=lambda: os.environ.get("MEDPLIB_CHAT_DECODER", "auto"))


class ChatSession:
    """A conversation about one image (one slice)."""

    def __init__(self, loaded, image: np.ndarray, settings: ChatSettings | None = None,
                 context: ImageContext | None = None):
        self.loaded = loaded
        self.model = loaded.model
        self.tok = loaded.tokenizer
        self.image = image
        self.settings = settings or ChatSettings()
        self._ctx = context
        self._uid = next(_UIDS)
        self.turns: list[ChatTurn] = []
        self.reset()

    @property
    def context(self) -> ImageContext:
        """Per-image tensors (CLIP, projector, SAM embedding), computed on first use."""
        if self._ctx is None:
            self._ctx = self.model.encode_image(self.image)
        return self._ctx

    def reset(self) -> None:
        """Forget the conversation (the image encoding is kept)."""
        self.conv = Conversation(self.settings.system)
        self.turns = []
        self._regions: list[torch.Tensor] = []
        self._cache = KVCache(len(self.model.model.layers))
        self._cached: list[Any] = []  # items whose keys/values the cache holds

    def ask(self, text: str, regions: Sequence[Any] | None = None,
            on_token: Callable[[str], None] | None = None,
            cancel: Callable[[], bool] | None = None,
            generation: GenerationSettings | None = None) -> ChatTurn:
        """Ask one question; stream the answer through ``on_token``; return the turn.

        ``regions``: points (x, y), boxes (x0, y0, x1, y1), polygons [(x, y), ...], bool masks
        or `Region` objects, referenced in order by ``<region>`` marks in ``text`` (missing
        marks are appended). Raises `CancelledError` when ``cancel()`` returns True; the
        conversation is then left as it was before the question."""
        started = time.perf_counter()
        s = self.settings
        gen_settings = generation or s.generation
        text_in, text = text, text.replace("<image>", " ").strip()  # one image, first turn only
        regs = [as_region(r) for r in (regions or [])]
        ctx = self.context
        h, w = ctx.image_hw
        question = self._model_question(text, len(regs))
        if s.drop_regions:
            vectors: list[torch.Tensor] = []
        else:
            masks_in = [region_mask(r, h, w) for r in regs]
            vectors = self.model.region_vectors(ctx, masks_in, s.region_max_points,
                                                s.region_seed, s.region_largest_component)
        n_before = len(self.conv.messages)
        self.conv.add_user(question)
        ids = self.tok.encode_prompt(self.conv.open_prompt(), not s.drop_regions)
        all_regions = self._regions + vectors
        items = _items(ids)
        total = _expanded(items, ctx)
        if total >= self.model.config.max_position_embeddings:
            del self.conv.messages[n_before:]
            raise PromptError(f"the conversation is too long ({total} positions, the model "
                              f"takes {self.model.config.max_position_embeddings}); start a new chat")
        keep = common_prefix(self._cached, items)
        if keep == len(items):
            keep -= 1  # always feed at least one position
        self._cache.crop(_expanded(items[:keep], ctx))
        fast = (resolve_decoder(s.decoder, self.model.device) == "fast"
                and fits(self.model, self.tok, total, gen_settings))
        try:
            if fast:  # the whole prompt; the scheduler reuses what its rows still hold
                full = self.model.embed_ids(ids, ctx.image_tokens, all_regions)
                result = fast_generate(self.model, self.tok, full, gen_settings, on_token, cancel,
                                       self._position_keys(items, ctx))
                keep_positions = result.reused_positions
            else:
                rest = ids[keep:]
                first = sum(1 for it in items[:keep] if isinstance(it, tuple) and it[0] == "reg")
                n_rest = sum(1 for t in rest if t == REGION_SENTINEL)
                embeds = self.model.embed_ids(rest, ctx.image_tokens,
                                              all_regions[first:first + n_rest])
                result = generate(self.model, self.tok, embeds, self._cache, gen_settings,
                                  on_text=on_token, cancel=cancel)
                keep_positions = _expanded(items[:keep], ctx)
        except BaseException:
            self._rollback(n_before, items[:keep])
            raise
        if result.stop_reason == "cancelled":
            self._rollback(n_before, items[:keep])
            err = CancelledError("the answer was cancelled")
            err.partial_text = result.text  # type: ignore[attr-defined]
            raise err
        # the reference loop's own cache holds this turn; the fast path's rows are the
        # scheduler's (a later reference turn then prefills from scratch)
        self._cached = [] if fast else items + list(result.fed_ids)
        if fast:
            self._cache.crop(0)
        self._regions = all_regions
        self.conv.add_assistant(result.text)
        masks, scores, seg_info = self._masks(result)
        prov = self._provenance(text_in, question, regs, ids, result, gen_settings, seg_info,
                                reused=keep_positions, started=started)
        prov["decoder"] = "fast" if fast else "reference"
        turn = ChatTurn(text_in, result.text, masks, scores, prov, result.stop_reason)
        self.turns.append(turn)
        return turn

    def _position_keys(self, items: list[Any], ctx: ImageContext) -> list[Any]:
        """One key per prompt position for the fast path's prefix cache: token ids, the
        image's positions (unique per encoded image) and this session's region vectors."""
        img = ctx.extra.setdefault("uid", next(_UIDS))
        keys: list[Any] = []
        for it in items:
            if it == ("img",):
                keys.extend(("img", img, j) for j in range(ctx.image_tokens.shape[0]))
            elif isinstance(it, tuple):
                keys.append(("reg", self._uid, it[1]))
            else:
                keys.append(it)
        return keys

    def _model_question(self, text: str, n_regions: int) -> str:
        """The question as the model sees it: ``<region></region>`` pairs for the regions."""
        if self.settings.drop_regions:  # marks without a drawn region are kept as pairs too
            n_regions = max(n_regions, count_region_marks(text))
        try:
            return normalise_regions(text, n_regions)
        except ValueError as exc:
            raise PromptError(str(exc)) from exc

    def prompt_ids(self, text: str, n_regions: int = 0) -> list[int]:
        """The ids `ask` would feed for this question now (the conversation is not changed)."""
        conv = Conversation(self.conv.system, list(self.conv.messages))
        conv.add_user(self._model_question(text.replace("<image>", " ").strip(), n_regions))
        return self.tok.encode_prompt(conv.open_prompt(), not self.settings.drop_regions)

    def _rollback(self, n_messages: int, kept: list[Any]) -> None:
        del self.conv.messages[n_messages:]
        self._cache.crop(_expanded(kept, self.context))
        self._cached = kept

    def _masks(self, result):
        state, source = None, None
        if result.seg_states:
            state, source = result.seg_states[0], "first <SEG>"
        elif result.fallback_state is not None:
            state, source = result.fallback_state, "fallback: hidden state at index -2"
        if state is None:
            return [], [], {"seg_tokens": 0}
        ctx = self.context
        low, iou = self.model.seg_logits(ctx, state)
        mask = logits_to_mask(low, ctx.resize_hw, ctx.image_hw, self.settings.crop_mode,
                              self.settings.threshold)
        ctx.extra["last_low_res_logits"] = low
        info = {"seg_tokens": len(result.seg_states), "seg_state": source,
                "seg_at_prefill": bool(result.seg_steps and result.seg_steps[0] == 0),
                "mask_pixels": int(mask.sum()), "iou_prediction": float(iou.reshape(-1)[0])}
        return [mask], [float(iou.reshape(-1)[0])], info

    def _provenance(self, text, question, regs, ids, result, gen, seg_info, reused, started):
        L = self.loaded
        return {
            "engine": ENGINE_NAME,
            "engine_version": __version__,
            "weights": str(L.checkpoint),
            "weights_sha256": L.fingerprint,
            "device": f"{self.model.device} ({str(self.model.dtype).replace('torch.', '')})",
            "question": text,
            "model_question": question,
            "regions": [r.describe() for r in regs],
            "answer": result.text,
            "answer_ids": list(result.ids),
            "stop_reason": result.stop_reason,
            "turn": len(self.turns),
            "prompt_tokens": len(ids),
            "prompt_positions_reused": reused,
            "generation": {k: v for k, v in gen.__dict__.items()},
            "crop_mode": self.settings.crop_mode,
            "threshold": self.settings.threshold,
            "grounding": seg_info,
            "timing_s": {"prefill": round(result.prefill_s, 4), "decode": round(result.decode_s, 4),
                         "total": round(time.perf_counter() - started, 4)},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def with_settings(self, **changes) -> "ChatSession":
        """A fresh conversation on the same encoded image with changed settings."""
        return ChatSession(self.loaded, self.image, replace(self.settings, **changes), self.context)


def _items(ids: list[int]) -> list[Any]:
    """Token ids with sentinels made unique (the n-th region is ("reg", n))."""
    out: list[Any] = []
    n = 0
    for t in ids:
        if t == REGION_SENTINEL:
            out.append(("reg", n))
            n += 1
        elif t == IMAGE_SENTINEL:
            out.append(("img",))
        else:
            out.append(t)
    return out


def _expanded(items: list[Any], ctx: ImageContext) -> int:
    """Sequence positions of ``items`` once the image is expanded to its tokens."""
    n_img = ctx.image_tokens.shape[0]
    return sum(n_img if it == ("img",) else 1 for it in items)
