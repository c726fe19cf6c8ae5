"""3D propagation on the server: a job per request, with progress, cancel and a result.

The job runs `engines.propagation.propagate_in_view` (the one propagation entry point) on
its own thread; the engine it is given sends every slice through the engine's lane at
background priority, so clicks of any client overtake a running propagation.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medplib_core.engines.base import EngineSession, Prompt, SegmentationEngine
from medplib_core.errors import CancelledError, MedplibError, PromptError

from .lanes import BACKGROUND, Busy

MAX_RUNNING = 4


class _LaneEngine(SegmentationEngine):
    """A hosted engine whose every call waits its turn on the lane (background priority)."""

    def __init__(self, hosted, cancel: threading.Event):
        self._he, self._cancel = hosted, cancel
        self.capabilities = hosted.engine.capabilities

    @property
    def info(self):
        return self._he.engine.info

    def _call(self, fn):
        return self._he.run(lambda step: fn(), BACKGROUND, self._cancel.is_set).result()

    def encode(self, image: np.ndarray) -> EngineSession:
        return _LaneSession(self, self._call(lambda: self._he.engine.encode(image)))


class _LaneSession(EngineSession):
    def __init__(self, owner: _LaneEngine, inner: EngineSession):
        self._owner, self._inner = owner, inner
        self.image_shape = inner.image_shape

    def predict(self, prompt: Prompt):
        return self._owner._call(lambda: self._inner.predict(prompt))

    def predict_views(self, prompt: Prompt):
        return self._owner._call(lambda: self._inner.predict_views(prompt))


@dataclass
class Job:
    id: str
    client: str
    state: str = "running"  # running, done, failed, cancelled
    done: int = 0
    total: int = 0
    error: str | None = None
    result: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)
    used: float = field(default_factory=time.monotonic)

    def describe(self) -> dict[str, Any]:
        return {"job": self.id, "state": self.state, "done": self.done, "total": self.total,
                "error": self.error}


class PropagationJobs:
    def __init__(self, host):
        self.host = host
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=MAX_RUNNING, thread_name_prefix="propagation")

    def start(self, client: str, key: str, volume_id: str, orientation: str, index: int,
              seed: np.ndarray, window: tuple[float, float] | None) -> Job:
        from medplib_core.slicing import slice_geometry

        he = self.host.engine(key)
        vol = self.host.volume(volume_id)
        try:
            geom = slice_geometry(vol, orientation, index)
        except (ValueError, IndexError) as exc:
            raise PromptError(f"index: {exc}") from exc
        if tuple(seed.shape) != tuple(geom.shape):
            raise PromptError(f"seed: the mask is {list(seed.shape)}, the {orientation} slice "
                              f"{list(geom.shape)}")
        if int(seed.sum()) < 4:
            raise PromptError("seed: the mask is empty: segment the object on one slice first")
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.state == "running")
            if running >= MAX_RUNNING:
                raise Busy(503, f"{running} propagations are running (limit {MAX_RUNNING})",
                           self.host.config.limits.retry_after_s)
            job = Job(uuid.uuid4().hex, client)
            self._jobs[job.id] = job
        engine = _LaneEngine(he, job.cancel)
        self._pool.submit(self._run, job, engine, vol, orientation, index, seed, window)
        return job

    def _run(self, job: Job, engine, vol, orientation, index, seed, window) -> None:
        from medplib_core.engines.propagation import propagate_in_view

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            job.result = propagate_in_view(engine, vol, orientation, index, seed, window=window,
                                           progress=progress, cancel=job.cancel.is_set)
            job.state = "done"
        except CancelledError:
            job.state = "cancelled"
        except MedplibError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # reported to the client; the server keeps running
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.used = time.monotonic()

    def get(self, ident: str, client: str | None = None) -> Job:
        from .host import Unknown

        with self._lock:
            job = self._jobs.get(ident)
        if job is None:
            raise Unknown("job", ident, "job")
        job.used = time.monotonic()
        return job

    def cancel(self, ident: str) -> Job:
        job = self.get(ident)
        job.cancel.set()
        return job

    def cancel_all(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def count(self) -> int:
        with self._lock:
            return len(self._jobs)

    def expire(self) -> int:
        ttl, now = self.host.config.limits.session_ttl_s, time.monotonic()
        with self._lock:
            old = [k for k, j in self._jobs.items() if j.state != "running" and now - j.used > ttl]
            for k in old:
                del self._jobs[k]
        return len(old)
