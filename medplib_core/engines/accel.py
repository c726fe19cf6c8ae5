"""Shared plumbing for the accelerated LiteMedSAM backends (encoder and mask decoder).

ONNX exports and OpenVINO's compiled-model cache live under ``$MEDPLIB_CACHE_DIR`` or
``~/.cache/medplib-studio/encoders``; each accelerated backend is compared with eager PyTorch
once per (backend, weights, library version) and the verdict is remembered in ``verified.json``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

OPSET = 17


def cache_dir() -> Path:
    root = os.environ.get("MEDPLIB_CACHE_DIR") or os.path.join(Path.home(), ".cache", "medplib-studio")
    d = Path(root) / "encoders"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cpu_threads() -> int:
    """Physical cores this process may use (hyper-threads do not help these kernels)."""
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        avail = os.cpu_count() or 1
    try:
        import psutil

        phys = psutil.cpu_count(logical=False) or avail
    except Exception:  # pragma: no cover
        phys = avail
    return max(1, min(avail, phys))


def temp_path(path: Path) -> Path:
    """A per-process, per-thread temporary sibling of ``path`` (for atomic replace)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def export_onnx_once(module, args: tuple, path: Path, min_bytes: int, **options) -> Path:
    """Export ``module`` to ONNX at ``path`` unless a plausible export is already there.

    The file is written under a temporary name and renamed, so a concurrent or interrupted
    export never leaves a truncated model behind; ``options`` go to ``torch.onnx.export``.
    """
    if path.is_file() and path.stat().st_size > min_bytes:
        return path
    import torch

    tmp = temp_path(path)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp), opset_version=OPSET, dynamo=False, **options)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def openvino_compile(onnx_path: Path, threads: int, precision_env: str, precision: str | None = None):
    """Compile an ONNX model for OpenVINO's CPU plug-in; returns (compiled model, precision).

    bf16 is used where the CPU has native bf16 (AVX512-BF16 / AMX) unless the environment
    variable ``precision_env`` (or ``precision``) says ``f32``.
    """
    import openvino as ov

    core = ov.Core()
    core.set_property({"CACHE_DIR": str(cache_dir() / "openvino")})
    precision = precision or os.environ.get(precision_env, "auto")
    if precision != "f32":
        has_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = "bf16" if has_bf16 else "f32"
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    return core.compile_model(core.read_model(str(onnx_path)), "CPU", config), precision


def remembered_check(key: str, check: Callable[[], tuple[bool, dict]]) -> bool:
    """Run ``check`` once per key; the verdict (and its details) is kept on disk."""
    record = cache_dir() / "verified.json"
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return bool(known[key]["ok"])
    ok, details = check()
    known[key] = {"ok": bool(ok), **details, "checked": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = temp_path(record)
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, record)
    return bool(ok)


def backend_version(name: str) -> str:
    """Version tag of an accelerated runtime, part of the verification key."""
    try:
        if name == "openvino":
            import openvino

            return f"ov{openvino.__version__}"
        import onnxruntime

        return f"ort{onnxruntime.__version__}"
    except Exception:  # pragma: no cover
        return "?"
