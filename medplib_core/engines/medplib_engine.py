"""MedPLIB as a segmentation engine: a grounding text prompt or a drawn region -> mask.

`encode` runs the CLIP and SAM-Med2D branches once per slice; every `predict` asks a fresh
single-turn grounding question about that slice and decodes the ``<SEG>`` state into a mask.
`MedplibEngineSession.chat` gives the multi-turn chat API (`ChatSession`) on the same encoded
slice. `medplib_engine_for` is the one place that loads MedPLIB: the chat and segmentation
(`create_medplib_engine`, what `engines.registry.create_engine` calls) get the same engine for
the same weights, never a second copy of the model. Without weights it raises a `LoadError`
whose message says where to put them. The engine's ``model_lock`` makes the shared model serve
one call at a time (a chat answer and a segmentation from two threads take turns).
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Mapping

import numpy as np

from ..errors import LoadError, PromptError
from .base import Capability, EngineInfo, EngineSession, Prompt, SegmentationEngine, SegResult, provenance

GROUNDING_TEMPLATE = "Could you segment out the {target} in this image?"
REGION_GROUNDING_TEMPLATE = "Could you segment out the {target} at the area <region> in this image?"
DEFAULT_REGION_TARGET = "structure"


def grounding_question(text: str | None, has_region: bool) -> str:
    """The question for a prompt: a full question is kept, a bare target is templated."""
    t = (text or "").strip()
    if t and (t.endswith("?") or t.endswith(".") or "<region>" in t or len(t.split()) > 6):
        return t
    if has_region:
        return REGION_GROUNDING_TEMPLATE.format(target=t or DEFAULT_REGION_TARGET)
    if not t:
        raise PromptError("MedPLIB needs a text prompt (what to segment) or a drawn region")
    return GROUNDING_TEMPLATE.format(target=t)


class MedplibEngine(SegmentationEngine):
    """Wraps a loaded MedPLIB (`medplib_core.medplib.loader.LoadedMedplib`)."""

    name = "MedPLIB"
    capabilities = frozenset({Capability.TEXT, Capability.CHAT, Capability.PROPAGATE})

    def __init__(self, loaded, settings=None, predict_settings=None):
        """``settings``: chat sessions; ``predict_settings``: `predict` (answers capped at
        128 tokens: a grounding answer is normally just ``<SEG>``)."""
        from medplib_core import __version__
        from medplib_core.medplib.chat import ChatSettings
        from medplib_core.medplib.generation import GenerationSettings

        self.loaded = loaded
        self.model_lock = threading.RLock()  # held by every model call (encode, predict, chat)
        self.settings = settings or ChatSettings()
        self.predict_settings = predict_settings or (
            settings or ChatSettings(generation=GenerationSettings(max_new_tokens=128)))
        model = loaded.model
        self._info = EngineInfo(
            name=self.name,
            version=f"medplib-studio {__version__} (MedPLIB port)",
            weights=str(loaded.checkpoint),
            weights_sha256=loaded.fingerprint,
            device=f"{model.device} ({str(model.dtype).replace('torch.', '')})",
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    def scheduler(self, **options):
        """The model's continuous-batching decoder (`medplib.batched.DecodeScheduler`), shared
        with every chat session on the fast path; ``options`` (max_batch, max_len,
        cached_rows, cuda_graphs) apply when it is first created."""
        from medplib_core.medplib.fast_decode import shared_scheduler

        return shared_scheduler(self.loaded.model, self.loaded.tokenizer, **options)

    def encode(self, image: np.ndarray) -> "MedplibEngineSession":
        from medplib_core.medplib.chat import ChatSession
        from medplib_core.medplib.preprocess import to_rgb

        rgb = to_rgb(image)
        with self.model_lock:
            ctx = self.loaded.model.encode_image(rgb)
        chat = ChatSession(self.loaded, rgb, self.predict_settings, context=ctx)
        return MedplibEngineSession(self, chat)


class MedplibEngineSession(EngineSession):
    def __init__(self, engine: MedplibEngine, chat):
        self.engine = engine
        self._chat = chat
        self.image_shape = tuple(chat.context.image_hw)

    def chat(self, settings=None):
        """A new multi-turn `ChatSession` on this encoded slice."""
        from medplib_core.medplib.chat import ChatSession

        return ChatSession(self.engine.loaded, self._chat.image, settings or self.engine.settings,
                           context=self._chat.context)

    def predict(self, prompt: Prompt, cancel=None) -> SegResult:
        from medplib_core.medplib.region import regions_from_prompt

        started = time.perf_counter()
        regions = regions_from_prompt(prompt)
        if prompt.is_empty() or (not regions and not (prompt.text or "").strip()):
            raise PromptError("MedPLIB needs a text prompt or a drawn region")
        question = grounding_question(prompt.text, bool(regions))
        session = self.chat(self.engine.predict_settings)
        with self.engine.model_lock:
            turn = session.ask(question, regions=regions, cancel=cancel)
        h, w = self.image_shape
        if turn.masks:
            mask, score, reason = turn.masks[0], turn.scores[0], None
            if not mask.any():
                reason = "MedPLIB's mask is empty at the 0.1 threshold"
        else:
            mask, score = np.zeros((h, w), dtype=bool), 0.0
            reason = f"MedPLIB answered without <SEG>: {turn.text!r}"
        extra = {k: turn.provenance[k] for k in (
            "question", "model_question", "answer", "answer_ids", "grounding", "crop_mode",
            "threshold", "generation", "timing_s")}
        prov = provenance(self.engine.info, prompt, started, **extra)
        return SegResult(mask=mask, score=float(score), provenance=prov, reason=reason)


_SHARED: dict[tuple, "weakref.ref[MedplibEngine]"] = {}
_SHARED_LOCK = threading.Lock()


def medplib_engine_for(cfg, progress=None) -> MedplibEngine:
    """The process's `MedplibEngine` for the weights ``cfg`` (a `MedplibSettings`) names: loaded
    on first use, then shared while anyone holds it. A second caller during a load waits for it
    instead of loading another copy. Raises `LoadError` when the weights are not usable."""
    from medplib_core.medplib.loader import load_medplib

    ok, message = cfg.availability()
    if not ok:
        raise LoadError(cfg.checkpoint or "MedPLIB", message)
    key = (cfg.checkpoint, cfg.clip, cfg.sam, cfg.device)
    with _SHARED_LOCK:
        ref = _SHARED.get(key)
        engine = ref() if ref is not None else None
        if engine is None:
            loaded = load_medplib(cfg.checkpoint, cfg.clip, cfg.sam, device=cfg.device, progress=progress)
            engine = MedplibEngine(loaded)
            _SHARED[key] = weakref.ref(engine)
    return engine


def create_medplib_engine(checkpoint: str | None = None, clip: str | None = None,
                          sam: str | None = None, device: str | None = None,
                          settings: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                          **_: Any) -> MedplibEngine:
    """MedPLIB from explicit paths, else the environment, else saved settings (shared, see
    `medplib_engine_for`)."""
    from types import SimpleNamespace

    from medplib_core.medplib.selection import MedplibSettings

    args = SimpleNamespace(checkpoint=checkpoint, clip=clip, sam=sam, device=device)
    return medplib_engine_for(MedplibSettings.from_sources(settings, args, env))
