"""Run a batch's cases on Ray: engine actors over a cluster, the driver alone writes the manifest.

`run_on_ray` starts one engine actor per worker (`ray_workers.EngineWorker`; a LiteMedSAM worker
asks for CPUs, a MedPLIB worker for one GPU), each loading its engine once, and streams the cases
to them through a bounded window (``window`` cases per worker), so a run of thousands of cases
never has more than a few in flight. Every worker runs `runner.run_job`, the function of the
process pool, so the outputs are the same files. Results come back to this process, which alone
appends them to the manifest: its append-only, resumable semantics are those of a local run.
A case whose worker dies (killed, out of memory, node lost) is tried again, ``attempts`` times in
all, then recorded as failed; Ray restarts the worker. A first stop request lets the running
cases finish (queued ones are cancelled); KeyboardInterrupt kills the workers at once.

Inputs and outputs must be on storage every node mounts at the same path (each worker checks
that it sees the run folder before it gets a case). Joining Ray (`ray_cluster.connect`) ships
this process's ``medplib_core`` to the workers; the nodes need the same Python packages.

Spec options (``ray:`` mapping, all optional): ``address``, ``workers`` (actors; default: as many
as the cluster's CPUs or GPUs hold), ``cpus`` and ``gpus`` per worker, ``attempts`` (3),
``window`` (2), ``start_timeout_s`` (900).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Callable

from ..errors import MedplibError
from ..ray_cluster import connect
from .spec import BatchSpec, SpecError


@dataclass
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else the cluster `ray start` left here, else a new one
    workers: int | None = None
    cpus: float | None = None
    gpus: float | None = None
    attempts: int = 3
    window: int = 2
    start_timeout_s: float = 900.0

    @classmethod
    def from_spec(cls, spec: BatchSpec, address: str | None = None, workers: int | None = None) -> "RayOptions":
        """The spec's ``ray:`` options (checked by `load_spec`), with the command line's
        address and worker count over them."""
        known = {f.name for f in fields(cls)}
        opts = cls(**{k: v for k, v in spec.ray.items() if k in known and v is not None})
        if address:
            opts.address = address
        if workers is not None:
            if int(workers) < 1:
                raise SpecError(f"{spec.source}: a batch on Ray needs at least 1 worker (got {workers})")
            opts.workers = int(workers)
        return opts


def worker_resources(engine_cfg: dict[str, Any], opts: RayOptions, ray) -> tuple[int, float, float]:
    """(workers, CPUs each, GPUs each) for this engine on this cluster; a clear error when it cannot fit."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    total = ray.cluster_resources()
    cpu_total, gpu_total = total.get("CPU", 0.0), total.get("GPU", 0.0)
    on_gpu = engine_cfg.get("name") == "medplib" and str(engine_cfg.get("device", "auto")) not in ("cpu",)
    gpus = opts.gpus if opts.gpus is not None else (1.0 if on_gpu else 0.0)
    cpus = opts.cpus if opts.cpus is not None else (1.0 if gpus else min(2.0, max(node_cpus, 1.0)))
    if gpus > 0 and gpu_total < gpus:
        raise MedplibError(f"the Ray cluster has {gpu_total:g} GPU(s); each {engine_cfg.get('name')} worker asks for "
                           f"{gpus:g} (set ray: {{gpus: 0}} in the spec to run on CPUs)")
    if cpus > node_cpus:
        raise MedplibError(f"no Ray node has {cpus:g} CPUs for a worker (the largest has {node_cpus:g}); "
                           "lower ray: {cpus: N} in the spec")
    count = opts.workers or int(gpu_total // gpus if gpus else cpu_total // cpus) or 1
    return count, cpus, gpus


def run_on_ray(jobs: list, spec: BatchSpec, record: Callable[[dict[str, Any]], None], stop,
               address: str | None = None, workers: int | None = None) -> int:
    """Run ``jobs`` on Ray, handing each finished record to ``record``; returns the worker count."""
    opts = RayOptions.from_spec(spec, address, workers)
    if not jobs:
        return 0
    from .ray_workers import WorkerSet

    ray, connected = connect(opts.address)
    token = secrets.token_hex(8)
    probe = spec.output / f".ray-probe-{token}"
    probe.write_text(token)
    try:
        count, cpus, gpus = worker_resources(spec.engine, opts, ray)
        pool = WorkerSet(ray, spec.engine, max(1, min(count, len(jobs))), cpus, gpus, probe, token)
        try:
            _drive(ray, pool, deque((job, 1) for job in jobs), record, stop, opts, (cpus, gpus))
        finally:
            pool.close()
        return pool.size
    finally:
        probe.unlink(missing_ok=True)
        if connected:
            ray.shutdown()


def _failed(job, error: str, attempt: int) -> dict[str, Any]:
    return {"kind": "result", "case": job.case.id, "input": str(job.case.path), "input_sha256": job.input_sha256,
            "status": "failed", "error": error, "attempts": attempt, "executor": "ray"}


def _drive(ray, pool, queue: deque, record, stop, opts: RayOptions, asks: tuple[float, float]) -> None:
    """The driver loop: fill each ready worker up to the window, collect results as they come."""
    from ray.exceptions import TaskCancelledError

    from .ray_workers import failure_reason, lost_worker_errors

    lost_errors = lost_worker_errors()
    inflight: dict[Any, tuple[Any, int, Any]] = {}
    started, cancelled = time.monotonic(), False
    while True:
        if stop.is_set():
            if not cancelled:
                pool.cancel_queued()
                cancelled = True
        else:
            for slot in pool.with_room(opts.window):
                while queue and len(slot.refs) < opts.window:
                    job, attempt = queue.popleft()
                    ref = slot.actor.run.remote(job)
                    slot.refs.append(ref)
                    inflight[ref] = (job, attempt, slot)
        if not inflight and (not queue or stop.is_set()):
            return
        gone = pool.all_gone()
        if gone and not inflight:
            raise MedplibError(f"no Ray worker is left ({gone}); finished cases are in the manifest, re-run to resume")
        if not pool.ever_ready and time.monotonic() - started > opts.start_timeout_s:
            raise MedplibError(f"no Ray worker started within {opts.start_timeout_s:g} s (each asks for "
                               f"{asks[0]:g} CPU(s) and {asks[1]:g} GPU(s); is the cluster short of them?)")
        waitable = list(inflight) + pool.pending_probes()
        if not waitable:
            time.sleep(0.2)
            continue
        done, _ = ray.wait(waitable, num_returns=1, timeout=0.5)
        for ref in done:
            if pool.answer(ref):
                continue
            job, attempt, slot = inflight.pop(ref)
            slot.refs.remove(ref)
            try:
                rec = ray.get(ref)
            except TaskCancelledError:
                continue  # stopped before it started: the case stays not done
            except lost_errors as exc:  # the worker died under the case: killed, out of memory, node lost
                pool.lost(slot)
                if stop.is_set():
                    continue  # stopping: the case stays not done, a re-run does it
                if attempt < opts.attempts:
                    queue.appendleft((job, attempt + 1))
                    continue
                rec = _failed(job, f"the Ray worker was lost running this case ({attempt} attempt(s)): "
                                   f"{failure_reason(exc)}", attempt)
            except Exception as exc:  # noqa: BLE001 - the worker raised outside run_case (e.g. a job that did not unpickle)
                rec = _failed(job, f"worker failed: {failure_reason(exc)}", attempt)
            rec.update(attempts=attempt, executor="ray")
            record(rec)
