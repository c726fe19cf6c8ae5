"""The child side of `bounded.run_bounded`: run calls one by one, report each as a JSON line.

Reads ``{"jobs": [{"call": "module:function", "args": [...]}, ...]}`` on stdin. Before the
first job it caps the address space (RLIMIT_AS) at its current size plus the memory budget,
so a runaway allocation fails here instead of eating the machine. Before each job it resets
the peak resident size (``/proc/self/clear_refs``) so every job reports its own peak.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time

from bench.load import _reset_peak, _status_kb  # the peak-RSS counter the load benchmark uses


def _status(key: str) -> int:
    return _status_kb(key) * 1024


def _resolve(call: str):
    module, name = call.split(":")
    return getattr(importlib.import_module(module), name)


def main() -> None:
    request = json.loads(sys.stdin.read())
    for module in request.get("preload", []):
        importlib.import_module(module)
    budget = int(request["mem_bytes"])
    soft = _status("VmSize") + budget + 256 * 2**20  # room for the job's own imports
    resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
    from medplib_core.errors import MedplibError

    for job in request["jobs"]:
        fn = _resolve(job["call"])
        exact = _reset_peak()
        before = _status("VmRSS")
        t0 = time.perf_counter()
        out = {"id": job.get("id"), "ok": True}
        try:
            result = fn(*job.get("args", []))
            out["result"] = type(result).__name__
        except BaseException as exc:  # noqa: BLE001 - what escapes is the point of the test
            out.update(ok=False, type=type(exc).__name__, module=type(exc).__module__,
                       family=isinstance(exc, MedplibError), message=str(exc)[:2000])
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        out["seconds"] = round(time.perf_counter() - t0, 3)
        peak = _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["peak_bytes"] = max(peak - before, 0)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    main()
