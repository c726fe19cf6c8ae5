"""One thread policy for the process: how many threads each native runtime may start.

PyTorch (OpenMP), OpenVINO (TBB), ONNX Runtime and OpenCV each keep their own thread pool and,
left alone, size it to the machine. Two pools busy at once then fight over the same cores: an
OpenVINO decode of a click next to a background encode, or next to PyTorch's OpenMP workers,
which by default spin for a while after every parallel loop. `configure` sets the process-wide
ones once (the GUI, the CLI, batch workers and the engine server all create engines, and the
LiteMedSAM engine calls it); `inference_threads` is what every OpenVINO and ONNX Runtime model
compiled here uses.

- ``MEDPLIB_THREADS`` (an integer) overrides the count; by default it is the number of
  physical cores this process may run on (hyper-threads do not help these kernels).
- PyTorch gets that many intra-op threads and one inter-op thread. OpenMP's idle workers are
  told to sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, only when unset and only
  effective if PyTorch is not imported yet): the heavy work of the fast backends runs in
  OpenVINO, and a spinning OpenMP worker steals a core from it.
- OpenCV's pool gets the same count.
- NumPy's BLAS (OpenBLAS) gets one thread (`threadpoolctl`; ``OPENBLAS_NUM_THREADS=1`` for
  BLAS libraries loaded later): its matrices here are small (a click's ranking, 4x4
  geometry), and after each threaded call OpenBLAS's workers spin for about a tenth of a
  second, which made the OpenVINO decode right after it take 1.6x as long.

Background work (pre-encoding) does not get its own pool: it yields to foreground work instead
(see `medplib_core.engines.scheduling`), so one prompt never shares the cores with it.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()
_CONFIGURED: int | None = None

if "torch" not in __import__("sys").modules:  # OpenMP reads this when PyTorch loads it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read by OpenBLAS copies loaded from now on


def physical_cores() -> int:
    """Physical cores this process may use (its CPU affinity, without hyper-threads)."""
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        avail = os.cpu_count() or 1
    try:
        import psutil

        phys = psutil.cpu_count(logical=False) or avail
    except Exception:  # pragma: no cover - psutil is a dependency
        phys = avail
    return max(1, min(avail, phys))


def inference_threads() -> int:
    """Threads one inference may use: what `configure` set, else ``$MEDPLIB_THREADS``, else
    the physical cores."""
    if _CONFIGURED is not None:
        return _CONFIGURED
    env = os.environ.get("MEDPLIB_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return physical_cores()


def configure(threads: int | None = None) -> int:
    """Apply the policy to PyTorch, OpenCV and BLAS; returns the thread count now in force.

    ``threads`` overrides the default count (a batch worker sharing the machine with others).
    Idempotent and safe to call from any thread. Models compiled later use the same count.
    """
    global _CONFIGURED
    with _LOCK:
        n = max(1, int(threads)) if threads else (_CONFIGURED or inference_threads())
        if _CONFIGURED == n:
            return n
        try:
            import torch

            torch.set_num_threads(n)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # already set, or parallel work already ran: keep it
                pass
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        try:
            import cv2

            cv2.setNumThreads(n)
        except ImportError:  # pragma: no cover - OpenCV is a dependency
            pass
        limit_blas()
        _CONFIGURED = n
    return n


def limit_blas() -> None:
    """One thread for every BLAS library loaded in the process (NumPy's, SciPy's)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; the light app may leave it out
        return
    threadpool_limits(1, user_api="blas")


def configured() -> int | None:
    """The thread count `configure` applied, or None before the first call."""
    return _CONFIGURED
