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
# mean |fast - eager| / mean |eager| an accelerated encoder may show against eager PyTorch: every
# backend is held to it (the float ones on the probe image, int8 as the median of its check inputs)
MAX_REL_ERROR = 0.06


def cache_dir() -> Path:
    root = os.environ.get("MEDPLIB_CACHE_DIR") or os.path.join(Path.home(), ".cache", "medplib-studio")
    d = Path(root) / "encoders"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cpu_threads() -> int:
    """Threads one inference may use: `medplib_core.threads.inference_threads` (kept under
    this name for the callers that predate the process-wide thread policy)."""
    from ..threads import inference_threads

    return inference_threads()


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


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU's feature flags as /proc/cpuinfo names them (``cpuinfo``: its text, read when
    None); None where the system does not say (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):  # x86 / ARM
            return set(value.split())
    return None


def openvino_precision(precision_env: str, precision: str | None = None) -> str:
    """``bf16`` where the CPU has native bf16 (AVX512-BF16 / AMX), else ``f32``; the environment
    variable ``precision_env`` (or ``precision``) saying ``f32`` keeps fp32."""
    precision = (precision or os.environ.get(precision_env, "auto")).lower()
    if precision in ("f32", "fp32"):
        return "f32"
    import openvino as ov

    return "bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f32"


def openvino_compile(model_path: Path, threads: int, precision_env: str, precision: str | None = None):
    """Compile an ONNX model or OpenVINO IR for OpenVINO's CPU plug-in; returns (compiled model,
    precision), the precision as `openvino_precision` chooses it (fp32 if bf16 fails to compile)."""
    import openvino as ov

    core = ov.Core()
    precision = openvino_precision(precision_env, precision)
    core.set_property({"CACHE_DIR": openvino_cache(precision)})
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    model = core.read_model(str(model_path))
    try:
        return core.compile_model(model, "CPU", config), precision
    except RuntimeError:
        if precision == "f32":
            raise
        config["INFERENCE_PRECISION_HINT"] = "f32"  # bf16 kernels unavailable after all
        core.set_property({"CACHE_DIR": openvino_cache("f32")})
        return core.compile_model(model, "CPU", config), "f32"


def openvino_cache(precision: str) -> str:
    """OpenVINO's compiled-model cache, one folder per inference precision.

    OpenVINO 2026.4 on a CPU with AMX crashed (a segfault at the first inference) when one
    process compiled a model in f32 and then in bf16 with the same cache folder; with a folder
    per precision both run. The app compiles one precision, but the model-folder build, the
    backend checks and the benchmarks compile both. Blobs of the earlier one-folder layout are
    removed when a precision's folder is first made (one of them was such a crashing model).
    """
    root = cache_dir() / "openvino"
    d = root / precision
    if not d.is_dir():
        d.mkdir(parents=True, exist_ok=True)
        for old in root.glob("*.blob"):  # the one-folder layout's models: never read again
            try:
                old.unlink()
            except OSError:  # in use elsewhere (Windows) or gone already
                pass
    return str(d)


def remembered(key: str) -> dict | None:
    """The verdict stored for ``key``, if any."""
    try:
        return json.loads((cache_dir() / "verified.json").read_text()).get(key)
    except (OSError, ValueError):
        return None


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
