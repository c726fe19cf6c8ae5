"""Run calls in a child process with a wall-clock limit per call and a memory budget.

``run_bounded(jobs)`` returns one `Outcome` per job; a job that runs past ``timeout_s`` kills
the child (the outcome says ``hung``) and the remaining jobs continue in a fresh child, so a
regression to a hang or a memory blow-up is one failed assertion, never a stuck test run.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GB = 10**9


@dataclass
class Outcome:
    id: str
    ok: bool = False
    hung: bool = False
    crashed: bool = False
    type: str = ""
    module: str = ""
    family: bool = False
    message: str = ""
    seconds: float = 0.0
    peak_bytes: int = 0
    raw: dict = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Loaded, or refused with the project's own error; never hung, crashed or escaped."""
        return not self.hung and not self.crashed and (self.ok or self.family)

    def __str__(self) -> str:
        what = "hung" if self.hung else "crashed" if self.crashed else "ok" if self.ok else \
            f"{self.module}.{self.type}: {self.message[:300]}"
        return f"{self.id}: {what} ({self.seconds:.2f} s, {self.peak_bytes / 1e6:.0f} MB)"


def run_bounded(jobs: list[dict], *, timeout_s: float = 30.0, mem_bytes: int = 2 * GB,
                env: dict[str, str] | None = None, preload=("medplib_core.io.loader",)
                ) -> list[Outcome]:
    """Run ``jobs`` (dicts with ``id``, ``call`` = "module:function" and ``args``)."""
    outcomes: list[Outcome] = []
    pending = [dict(j, id=str(j.get("id", i))) for i, j in enumerate(jobs)]
    while pending:
        done = _run_child(pending, timeout_s, mem_bytes, env or {}, list(preload))
        outcomes.extend(done)
        pending = pending[len(done):]
    return outcomes


def _run_child(jobs, timeout_s, mem_bytes, env, preload) -> list[Outcome]:
    child_env = dict(os.environ, PYTHONPATH=str(REPO), MALLOC_ARENA_MAX="2",
                     OMP_NUM_THREADS="1", RUST_BACKTRACE="0", **env)
    proc = subprocess.Popen([sys.executable, "-m", "tests.harness.child"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env)
    proc.stdin.write(json.dumps({"jobs": jobs, "mem_bytes": mem_bytes,
                                 "preload": preload}).encode())
    proc.stdin.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    out: list[Outcome] = []
    buf, err = b"", b""
    # the first job also pays for the child's start and imports
    deadline = time.monotonic() + timeout_s + 60
    try:
        while len(out) < len(jobs):
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                out.append(Outcome(jobs[len(out)]["id"], hung=True, seconds=timeout_s))
                return out
            ready = [key.fileobj for key, _ in sel.select(timeout=left)]
            if proc.stderr in ready:  # drained so that a chatty decoder never blocks the child
                more = proc.stderr.read1(65536)
                if not more:
                    sel.unregister(proc.stderr)
                err = (err + more)[-4000:]
            if proc.stdout not in ready:
                continue
            chunk = proc.stdout.read1(65536)
            if not chunk:  # the child died
                proc.wait()
                out.append(Outcome(jobs[len(out)]["id"], crashed=True,
                                   message=f"exit {proc.returncode}: "
                                   f"{err.decode(errors='replace')[-2000:]}"))
                return out
            buf += chunk
            while b"\n" in buf and len(out) < len(jobs):
                line, buf = buf.split(b"\n", 1)
                d = json.loads(line)
                out.append(Outcome(d["id"], ok=d["ok"], type=d.get("type", ""),
                                   module=d.get("module", ""), family=d.get("family", False),
                                   message=d.get("message", ""), seconds=d["seconds"],
                                   peak_bytes=d["peak_bytes"], raw=d))
                deadline = time.monotonic() + timeout_s
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    return out
