"""Accelerated LiteMedSAM image encoder, chosen automatically, with eager PyTorch as fallback.

Order of preference for ``backend="auto"``: CUDA (eager PyTorch on the GPU) when a GPU is
available; otherwise OpenVINO when installed, in bf16 on CPUs with native bf16 (AVX512-BF16 /
AMX; on dev2d: 4.5x eager, tight-box mean Dice +0.0002 vs eager, median mask IoU 0.99) and fp32
elsewhere or with ``MEDPLIB_ENCODER_PRECISION=f32`` (bit-close to eager, 2.6x); otherwise ONNX
Runtime (fp32, full graph optimisation, 2.4x); otherwise eager PyTorch on the CPU.
``MEDPLIB_ENCODER`` (``auto``, ``eager``, ``onnxruntime``, ``openvino``, ``cuda``) overrides it.

The ONNX export is cached under the user cache directory (``$MEDPLIB_CACHE_DIR`` or
``~/.cache/medplib-studio/encoders``), keyed by the weights' SHA-256, and every accelerated
backend is checked once against eager PyTorch on a fixed probe image before it is trusted.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .litemedsam_model import EMBED_SHAPE, MODEL_INPUT

log = logging.getLogger(__name__)
OPSET = 17
MAX_REL_ERROR = 0.06  # mean |fast - eager| / mean |eager| accepted on the probe image


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


class Encoder:
    """Maps a ``(1, 3, 256, 256)`` float32 input to a ``(1, 256, 64, 64)`` float32 embedding."""

    name = "encoder"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self._run(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(out, dtype=np.float32).reshape(EMBED_SHAPE)

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class TorchEncoder(Encoder):
    def __init__(self, module: torch.nn.Module, device: str = "cpu", threads: int | None = None):
        super().__init__()
        self.module, self.device = module, device
        self.name = f"torch-{device}"
        if device == "cpu" and threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(x).to(self.device)).float().cpu().numpy()


class OrtEncoder(Encoder):
    def __init__(self, onnx_path: Path, threads: int):
        super().__init__()
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = "onnxruntime-fp32"

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class OpenVinoEncoder(Encoder):
    def __init__(self, onnx_path: Path, threads: int, precision: str | None = None):
        super().__init__()
        import openvino as ov

        core = ov.Core()
        core.set_property({"CACHE_DIR": str(cache_dir() / "openvino")})
        precision = precision or os.environ.get("MEDPLIB_ENCODER_PRECISION", "auto")
        if precision != "f32":
            has_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            precision = "bf16" if has_bf16 else "f32"
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        self.request = compiled.create_infer_request()
        self.name = f"openvino-{precision}"

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x})[0]


def export_onnx(image_encoder: torch.nn.Module, weights_sha256: str) -> Path:
    """Export the image encoder to ONNX once per weights checksum; returns the cached path."""
    path = cache_dir() / f"lite_medsam_encoder_{weights_sha256[:16]}_op{OPSET}.onnx"
    if path.is_file() and path.stat().st_size > 1_000_000:
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    dummy = torch.zeros(1, 3, MODEL_INPUT, MODEL_INPUT)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                image_encoder, (dummy,), str(tmp), input_names=["image"],
                output_names=["embedding"], opset_version=OPSET, dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def probe_image() -> np.ndarray:
    """A fixed structured test input (shapes, gradients and texture) for backend checks."""
    yy, xx = np.mgrid[0:MODEL_INPUT, 0:MODEL_INPUT].astype(np.float32) / MODEL_INPUT
    img = 0.3 + 0.2 * np.sin(9 * xx) * np.cos(7 * yy)
    img += 0.4 * (((xx - 0.4) ** 2 + (yy - 0.5) ** 2) < 0.05)
    img += 0.05 * np.random.default_rng(0).standard_normal(img.shape).astype(np.float32)
    img = (img - img.min()) / (img.max() - img.min())
    return np.repeat(img[None, None], 3, axis=1).astype(np.float32)


def _verified(enc: Encoder, eager: Callable[[np.ndarray], np.ndarray], key: str) -> bool:
    """Check ``enc`` against eager PyTorch once per key; the verdict is remembered on disk."""
    record = cache_dir() / "verified.json"
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return bool(known[key]["ok"])
    x = probe_image()
    ref = eager(x)
    got = enc(x)
    rel = float(np.abs(got - ref).mean() / max(np.abs(ref).mean(), 1e-12))
    ok = bool(np.isfinite(got).all() and rel < MAX_REL_ERROR)
    known[key] = {"ok": ok, "rel_error": rel, "checked": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = record.with_name(f".verified.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, record)
    return ok


def make_encoder(
    image_encoder: torch.nn.Module, weights_sha256: str, device: str = "cpu", backend: str = "auto"
) -> Encoder:
    """The fastest trustworthy encoder for this machine (see the module docstring)."""
    backend = (os.environ.get("MEDPLIB_ENCODER") or backend or "auto").lower()
    threads = cpu_threads()
    eager = TorchEncoder(image_encoder, "cpu" if device == "cpu" else device, threads)
    if backend == "eager" or (backend == "auto" and device != "cpu"):
        return eager
    if backend == "cuda":
        if not torch.cuda.is_available():
            log.warning("MEDPLIB_ENCODER=cuda but no GPU is available; using the CPU")
        return eager
    candidates = ["openvino", "onnxruntime"] if backend == "auto" else [backend]
    for name in candidates:
        try:
            onnx_path = export_onnx(image_encoder, weights_sha256)
            if name == "openvino":
                enc: Encoder = OpenVinoEncoder(onnx_path, threads)
            elif name == "onnxruntime":
                enc = OrtEncoder(onnx_path, threads)
            else:
                raise ValueError(f"unknown encoder backend {name!r}")
            key = f"{enc.name}:{weights_sha256[:16]}:{_versions(name)}"
            if _verified(enc, eager, key):
                return enc
            log.warning("encoder backend %s disagrees with eager PyTorch; not used", enc.name)
        except ImportError:
            log.info("encoder backend %s is not installed", name)
        except Exception as exc:  # any export/runtime failure falls back to the next backend
            log.warning("encoder backend %s unavailable: %s", name, exc)
    return eager


def _versions(name: str) -> str:
    try:
        if name == "openvino":
            import openvino

            return f"ov{openvino.__version__}"
        import onnxruntime

        return f"ort{onnxruntime.__version__}"
    except Exception:  # pragma: no cover
        return "?"
