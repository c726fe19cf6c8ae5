"""`EngineHost`: the engines a server serves, with their lanes, uploads and sessions.

Everything a server process holds lives here, behind plain methods that return futures; the
HTTP layer (`app`) only translates. One host can therefore live in a Ray Serve replica as
well as in `medplib-studio serve`; requests that touch the same image or conversation should
go to the same host (image ids and conversation ids are the affinity keys).
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from medplib_core import __version__
from medplib_core.engines.base import Capability, EngineSession, Prompt, SegmentationEngine, SegResult
from medplib_core.errors import PromptError

from . import API_VERSION
from .config import ServerConfig
from .lanes import BACKGROUND, ENCODE, INTERACTIVE, Busy, GenerationLane, SegmentationLane
from .store import PixelStore

log = logging.getLogger(__name__)
SESSION_CACHE = 16  # encoded slices kept per engine (LiteMedSAM also caches embeddings itself)


class Unknown(LookupError):
    """An id the server does not hold (never uploaded, expired, or the server restarted)."""

    def __init__(self, kind: str, ident: str, field: str):
        self.kind, self.ident, self.field = kind, ident, field
        super().__init__(f"unknown {kind} {ident!r}: upload it (again)")


@dataclass
class HostedEngine:
    key: str  # registry name: "litemedsam" or "medplib"
    engine: SegmentationEngine
    run: Callable[..., Future]  # run(fn(step), priority) on this engine's lane
    sessions: "OrderedDict[str, EngineSession]"

    @property
    def generative(self) -> bool:
        return self.engine.supports(Capability.CHAT)


class EngineHost:
    def __init__(self, config: ServerConfig, engines: dict[str, SegmentationEngine] | None = None):
        """Load ``config.engines`` (or take already-built ``engines``, keyed by registry name)."""
        self.config = config
        lim = config.limits
        self.started = time.time()
        self.seg_lane = SegmentationLane(lim.segmentation_queue, lim.retry_after_s)
        self.gen_lane = GenerationLane(lim.max_answers, yield_to=lambda: self.seg_lane.interactive_pending,
                                       retry_after=lim.retry_after_s)
        self.store = PixelStore(lim.client_memory_bytes, lim.server_memory_bytes, lim.session_ttl_s)
        self._lock = threading.Lock()
        self.engines: dict[str, HostedEngine] = {}
        for key in config.engines:
            eng = (engines or {}).get(key) or _create(key, config.engine_options.get(key, {}))
            self.engines[key] = HostedEngine(key, eng, self._runner(eng), OrderedDict())
        from .conversations import Conversations
        from .jobs import PropagationJobs

        self.conversations = Conversations(self)
        self.jobs = PropagationJobs(self)

    def _runner(self, engine: SegmentationEngine) -> Callable[..., Future]:
        if engine.supports(Capability.CHAT):
            return lambda fn, priority=INTERACTIVE, cancel=None: self.gen_lane.submit(fn, cancel)
        return lambda fn, priority=INTERACTIVE, cancel=None: self.seg_lane.submit(
            lambda: fn(cancel or _never), priority)

    # ----- engines --------------------------------------------------------------------------
    def engine(self, key: str) -> HostedEngine:
        he = self.engines.get(key)
        if he is None:
            raise Unknown("engine", key, "engine")
        return he

    def info(self) -> dict[str, Any]:
        return {
            "server": "medplib-studio", "server_version": __version__, "api_version": API_VERSION,
            "engines": [self.engine_info(k) for k in self.engines],
            "device": _device(), "python": platform.python_version(),
            "limits": dict(self.config.limits.__dict__),
            "uptime_s": round(time.time() - self.started, 1),
        }

    def engine_info(self, key: str) -> dict[str, Any]:
        eng = self.engine(key).engine
        return {"key": key, **eng.info.to_dict(),
                "capabilities": sorted(c.value for c in eng.capabilities)}

    # ----- images ---------------------------------------------------------------------------
    def put_image(self, ident: str, image: np.ndarray, client: str) -> bool:
        return self.store.put("image", ident, image, image.nbytes, client)

    def image(self, ident: str, field: str = "image") -> np.ndarray:
        img = self.store.get("image", ident)
        if img is None:
            raise Unknown("image", ident, field)
        return img

    def put_volume(self, ident: str, volume, client: str) -> bool:
        return self.store.put("volume", ident, volume, volume.array.nbytes, client)

    def volume(self, ident: str):
        vol = self.store.get("volume", ident)
        if vol is None:
            raise Unknown("volume", ident, "volume")
        return vol

    # ----- segmentation ---------------------------------------------------------------------
    def session(self, key: str, ident: str, step: Callable[[], bool]) -> EngineSession:
        """The encoded session of an uploaded image (runs on the engine's lane)."""
        he = self.engine(key)
        with self._lock:
            sess = he.sessions.get(ident)
            if sess is not None:
                he.sessions.move_to_end(ident)
                return sess
        image = self.image(ident)
        sess = he.engine.encode(image)
        with self._lock:
            he.sessions[ident] = sess
            while len(he.sessions) > SESSION_CACHE:
                he.sessions.popitem(last=False)
        return sess

    def encode(self, key: str, ident: str) -> Future:
        """Future of the image shape once encoded."""
        he = self.engine(key)
        self.image(ident)  # 404 now rather than on the lane
        return he.run(lambda step: tuple(self.session(key, ident, step).image_shape), ENCODE)

    def predict(self, key: str, ident: str, prompt: Prompt) -> Future:
        """Future of a `SegResult` for ``prompt`` on an uploaded image."""
        he = self.engine(key)
        shape = self.image(ident).shape[:2]
        for name in ("region", "mask_input"):
            m = getattr(prompt, name)
            if m is not None and m.shape != shape:
                raise PromptError(f"prompt.{name}: the mask is {list(m.shape)}, the image {list(shape)}")

        def job(step) -> SegResult:
            # Never hands its turn on (no ``step`` inside): MedPLIB's predict holds the engine's
            # model_lock, which a turn-taking job must not carry while another job runs.
            return self.session(key, ident, step).predict(prompt)

        return he.run(job, INTERACTIVE)

    def is_cached(self, key: str, ident: str) -> bool | None:
        he = self.engine(key)
        image = self.image(ident)
        with self._lock:
            if ident in he.sessions:
                return True
        if he.engine.supports(Capability.CACHE_QUERY):
            return bool(he.engine.is_cached(image))
        return False

    def preencode(self, key: str, idents: list[str], client: str) -> int:
        """Queue background encodings (replacing this client's earlier list); how many queued."""
        he = self.engine(key)
        if he.generative:
            return 0  # MedPLIB encodes when a question needs it; no background work
        tag = f"preencode:{key}:{client}"
        self.seg_lane.drop(tag)
        n = 0
        for ident in idents:
            if self.store.has("image", ident):
                self.seg_lane.submit(lambda i=ident: self.session(key, i, _never), BACKGROUND, tag)
                n += 1
        return n

    # ----- housekeeping ---------------------------------------------------------------------
    def expire(self) -> dict[str, int]:
        return {"pixels": self.store.expire(), "conversations": self.conversations.expire(),
                "jobs": self.jobs.expire()}

    def stats(self) -> dict[str, Any]:
        return {"store": self.store.stats(), "segmentation_queue": self.seg_lane.depth(),
                "segmentation_done": self.seg_lane.done_count,
                "answers_active": self.gen_lane.active, "generation_steps": self.gen_lane.steps,
                "conversations": self.conversations.count(), "jobs": self.jobs.count()}

    def close(self) -> None:
        self.jobs.cancel_all()
        self.seg_lane.close()
        self.gen_lane.close()
        for he in self.engines.values():
            try:
                he.engine.close()
            except Exception:  # closing must not hide the reason the server stops
                log.exception("closing %s", he.key)


def _never() -> bool:
    return False


def _create(key: str, options: dict[str, Any]) -> SegmentationEngine:
    from medplib_core.engines.registry import create_engine

    return create_engine({"name": key, **options})


def _device() -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


__all__ = ["EngineHost", "Unknown", "Busy"]
