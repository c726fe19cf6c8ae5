"""Run a batch: resumable, one bad case never stops it, parallel over CPU cores or GPUs.

Cases whose manifest record says "ok" for the same input checksum, with an intact output,
are skipped; failed and missing ones are (re)run. Workers are processes, each with its own
engine (image encoding is the bottleneck and is CPU/GPU bound), or Ray actors over a cluster
(`ray_executor`); either way only this process writes the manifest. A first stop request lets the
running cases finish and writes their records; nothing half-written is ever left behind,
because every output is written atomically and every manifest record is one fsynced line.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import MedplibError
from .case import CaseJob, run_case
from .manifest import Manifest, input_checksum
from .spec import BatchSpec, load_spec

ProgressFn = Callable[["BatchProgress"], None]


@dataclass
class BatchProgress:
    total: int
    done: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.perf_counter)
    last: dict[str, Any] | None = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def eta_s(self) -> float | None:
        ran = self.done - self.skipped
        left = self.total - self.done
        if ran <= 0:
            return None
        return self.elapsed / ran * left


def format_duration(seconds: float | None) -> str:
    """``mm:ss`` (``h:mm:ss`` from an hour on); ``--:--`` when unknown (progress displays)."""
    if seconds is None:
        return "--:--"
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def default_workers(engine_cfg: dict[str, Any]) -> int:
    device = str(engine_cfg.get("device", "auto"))
    try:
        import torch

        if device in ("auto", "cuda") and torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:
        pass
    # The fast CPU encoders are multi-threaded themselves: measured with bench/batch.py on 2
    # cores, one process with 2 threads beats two with 1 thread each (62 vs 53 cases/min).
    return max(1, (os.cpu_count() or 1) // 2)


# ----- worker process side ---------------------------------------------------------------------
_ENGINE = None


def _init_worker(engine_cfg: dict[str, Any], threads: int, index_queue) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    from .. import threads as thread_policy  # before PyTorch loads (its OpenMP wait policy)

    thread_policy.configure(max(1, threads))  # PyTorch (if installed), OpenCV and the models compiled here
    cfg = dict(engine_cfg)
    try:
        import torch
    except ImportError:  # the light install: LiteMedSAM from OpenVINO model files
        torch = None
    if torch is not None and cfg.get("device") in (None, "auto") and torch.cuda.is_available():
        cfg["device"] = f"cuda:{index_queue.get() % torch.cuda.device_count()}"
    global _ENGINE
    from ..engines.registry import create_engine

    _ENGINE = create_engine(cfg)


def run_job(job: CaseJob, engine) -> dict[str, Any]:
    """One case on a worker's engine: what every worker runs (a pool process, a Ray actor)."""
    from ..engines.registry import propagation_function

    rec = run_case(job, engine, propagation_function(engine))
    rec["worker_pid"] = os.getpid()
    return rec


def _work(job: CaseJob) -> dict[str, Any]:
    return run_job(job, _ENGINE)


# ----- parent side -----------------------------------------------------------------------------
def run_batch(spec: BatchSpec | str | dict, workers: int | None = None, progress: ProgressFn | None = None,
              stop: threading.Event | None = None, engine=None, ray: str | bool | None = None) -> dict[str, Any]:
    """Run every case of ``spec`` that is not already done; return a summary.

    ``engine`` (an engine instance) runs everything in this process instead of a pool — what
    the GUI does when it already has an engine loaded, and what a single worker does.
    ``ray`` runs the cases on Ray (`ray_executor`): True, or the cluster's address ("auto",
    "local", "HOST:PORT", "ray://HOST:10001"); None follows the spec's ``executor``.
    """
    if not isinstance(spec, BatchSpec):
        spec = load_spec(spec)
    spec.output.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(spec.output)
    stop = stop or threading.Event()
    prog = BatchProgress(total=len(spec.cases))
    jobs: list[CaseJob] = []
    for case in spec.cases:
        try:
            checksum = input_checksum(case.path)
        except (OSError, MedplibError) as exc:  # MedplibError: a PACS series that cannot be listed
            error = str(exc) if isinstance(exc, MedplibError) else f"{case.path}: cannot read the input ({exc.strerror or exc})"
            rec = manifest.append({"kind": "result", "case": case.id, "input": str(case.path), "status": "failed",
                                   "error": error})
            _count(prog, rec, progress)
            continue
        if manifest.is_done(case.id, checksum, spec.output):
            prog.done += 1
            prog.skipped += 1
            if progress:
                progress(prog)
            continue
        jobs.append(CaseJob.from_spec(spec, case, checksum))
    wants_ray = spec.executor == "ray" if ray is None else ray is not False
    executor = "ray" if wants_ray and engine is None else "pool"
    if executor == "ray":
        from .ray_executor import run_on_ray

        if workers is None and isinstance(spec.workers, int):
            workers = spec.workers
        workers = run_on_ray(jobs, spec, lambda rec: _count(prog, manifest.append(rec), progress), stop,
                             address=ray if isinstance(ray, str) else None, workers=workers)
    else:
        if workers is None:
            workers = spec.workers if isinstance(spec.workers, int) else default_workers(spec.engine)
        workers = max(1, min(int(workers), len(jobs) or 1))
        if engine is not None or workers == 1:
            _run_inline(jobs, spec, manifest, prog, progress, stop, engine)
        else:
            _run_pool(jobs, spec, manifest, prog, progress, stop, workers)
    return {"executor": executor, "total": prog.total, "ok": prog.ok, "failed": prog.failed, "skipped": prog.skipped,
            "stopped": stop.is_set() and prog.done < prog.total, "elapsed_s": round(prog.elapsed, 2),
            "workers": workers, "manifest": str(manifest.path)}


def _count(prog: BatchProgress, rec: dict[str, Any], progress: ProgressFn | None) -> None:
    prog.done += 1
    prog.ok += rec.get("status") == "ok"
    prog.failed += rec.get("status") != "ok"
    prog.last = rec
    if progress:
        progress(prog)


def _run_inline(jobs, spec, manifest, prog, progress, stop, engine) -> None:
    from ..engines.registry import create_engine, propagation_function

    if not jobs:
        return
    engine = engine or create_engine(spec.engine)
    prop = propagation_function(engine)
    for job in jobs:
        if stop.is_set():
            break
        _count(prog, manifest.append(run_case(job, engine, prop)), progress)


def _run_pool(jobs, spec, manifest, prog, progress, stop, workers) -> None:
    ctx = mp.get_context("spawn")
    ids = ctx.Queue()
    for i in range(workers):
        ids.put(i)
    threads = max(1, (os.cpu_count() or 1) // workers)
    pending = list(jobs)
    running: dict[Future, CaseJob] = {}
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(spec.engine, threads, ids))
    try:
        while pending or running:
            while pending and len(running) < workers and not stop.is_set():
                job = pending.pop(0)
                running[pool.submit(_work, job)] = job
            if not running:
                break
            done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                job = running.pop(fut)
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker fails its case only
                    rec = {"kind": "result", "case": job.case.id, "input": str(job.case.path),
                           "input_sha256": job.input_sha256, "status": "failed",
                           "error": f"worker failed: {type(exc).__name__}: {exc}"}
                _count(prog, manifest.append(rec), progress)
    except KeyboardInterrupt:
        # a second Ctrl+C: stop the workers now; their cases simply stay not-done
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
