"""Engine workers on Ray: one actor per worker slot, its engine loaded once, its state tracked.

`EngineWorker` is a plain class made a Ray actor by `WorkerSet` (Ray is imported only when a
batch asks for it). Each actor loads its engine in its constructor and then runs case after case
with `runner.run_job`, the function the process pool runs. `WorkerSet` knows, for every actor,
whether it is ready (its ``ready`` probe answered), restarting (Ray brings a killed actor back;
probes are sent again until it answers) or gone for good, and which cases it holds in order.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


RESTARTS = 3  # Ray restarts a dead worker this many times (each restart loads the engine again)
PROBE_AGAIN_S = 1.0  # a restarting worker is probed again after this long


class EngineWorker:
    """The body of a Ray actor: one engine, many cases."""

    def __init__(self, engine_cfg: dict[str, Any], threads: int):
        import torch

        from ..engines.registry import create_engine

        torch.set_num_threads(max(1, int(threads)))
        self.engine = create_engine(engine_cfg)
        self.host = socket.gethostname()

    def ready(self, probe: str, token: str) -> dict[str, Any]:
        """Who and where this worker is, and whether it sees the run folder the driver sees."""
        try:
            sees = Path(probe).read_text() == token
        except OSError:
            sees = False
        return {"pid": os.getpid(), "host": self.host, "sees_run_dir": sees}

    def run(self, job) -> dict[str, Any]:
        from .runner import run_job

        rec = run_job(job, self.engine)
        rec["worker_host"] = self.host
        return rec


@dataclass
class Slot:
    """One actor as the driver sees it."""

    index: int
    actor: Any
    probe: Any = None  # the ObjectRef of the pending ready probe, if any
    ready: bool = False
    gone: str | None = None  # why the actor is gone for good
    probe_at: float = 0.0  # when to probe a restarting actor again
    refs: list = field(default_factory=list)  # its cases' ObjectRefs, oldest (running) first
    info: dict[str, Any] = field(default_factory=dict)


class WorkerSet:
    """Creates the actors and follows their life; the driver loop asks it where cases can go."""

    def __init__(self, ray, engine_cfg: dict[str, Any], count: int, cpus: float, gpus: float,
                 probe: Path, token: str):
        self.ray = ray
        self.probe_args = (str(probe), token)
        cls = ray.remote(EngineWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=RESTARTS,
                                               max_task_retries=0, max_concurrency=1)
        threads = max(1, int(round(cpus)))
        self.slots = [Slot(i, cls.remote(dict(engine_cfg), threads)) for i in range(count)]
        for slot in self.slots:
            self._probe(slot)
        self.ever_ready = False

    @property
    def size(self) -> int:
        return len(self.slots)

    def _probe(self, slot: Slot) -> None:
        slot.probe = slot.actor.ready.remote(*self.probe_args)

    def with_room(self, window: int) -> list[Slot]:
        return [s for s in self.slots if s.ready and s.gone is None and len(s.refs) < window]

    def pending_probes(self) -> list:
        now = time.monotonic()
        for s in self.slots:
            if s.probe is None and not s.ready and s.gone is None and s.probe_at <= now:
                self._probe(s)
        return [s.probe for s in self.slots if s.probe is not None]

    def answer(self, ref) -> bool:
        """Handle a finished ready probe (False when ``ref`` is not one)."""
        slot = next((s for s in self.slots if s.probe is not None and s.probe == ref), None)
        if slot is None:
            return False
        slot.probe = None
        from ray.exceptions import ActorUnavailableError

        try:
            info = self.ray.get(ref)
        except ActorUnavailableError:  # restarting: ask again in a moment
            slot.probe_at = time.monotonic() + PROBE_AGAIN_S
            return True
        except Exception as exc:  # noqa: BLE001 - restarts used up, or the engine could not be created
            slot.gone = failure_reason(exc)
            return True
        if not info["sees_run_dir"]:
            slot.gone = (f"the Ray worker on {info['host']} cannot see the run folder {Path(self.probe_args[0]).parent}: "
                         "inputs and outputs must be on storage every node mounts at the same path")
            self.ray.kill(slot.actor, no_restart=True)
            return True
        slot.ready, slot.info = True, info
        self.ever_ready = True
        return True

    def lost(self, slot: Slot) -> None:
        """A case of ``slot`` failed because its actor died: wait until Ray has restarted it."""
        if slot.ready:
            slot.ready = False
            slot.probe_at = time.monotonic() + PROBE_AGAIN_S

    def all_gone(self) -> str | None:
        """Why no worker is left, or None while one is (or may come back)."""
        if all(s.gone for s in self.slots):
            reasons = sorted({s.gone for s in self.slots})
            return "; ".join(reasons)
        return None

    def cancel_queued(self) -> None:
        """Cancel every case an actor has not started (all but its oldest); the running ones finish."""
        for s in self.slots:
            for ref in s.refs[1:]:
                self.ray.cancel(ref)

    def close(self) -> None:
        for s in self.slots:
            try:
                self.ray.kill(s.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


def lost_worker_errors() -> tuple[type, ...]:
    """The Ray errors that mean the worker (or its node) went away under a case: worth a retry."""
    from ray import exceptions as rex

    return (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError,
            rex.OutOfMemoryError, rex.LocalRayletDiedError)


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b[^:]*:")


def failure_reason(exc: BaseException) -> str:
    """A one-line reason from a Ray error: the original exception's line of the traceback Ray
    carries (errors that do not unpickle, such as the project's, arrive only as that text)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXC_LINE.match(line) and not line.startswith(("ray.exceptions.", "Ray")):
            return re.sub(r"^medplib_core\.errors\.\w+: ", "", line)[:400]  # the project's errors say it all
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:400]
