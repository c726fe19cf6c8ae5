"""SAM's prompt encoder for boxes and clicks, in numpy, with LiteMedSAM's weights.

A box or a click becomes two or three 256-d tokens: a random-Fourier positional encoding of
each corner or point plus a learned embedding of its kind. That is a few microseconds of
arithmetic, but run as a dozen tiny PyTorch operations each one pays PyTorch's dispatch and,
with more than one intra-op thread, its OpenMP fork and join: about 13 ms of CPU per prompt on
this project's 2-core machine, with the OpenMP workers spinning next to OpenVINO's threads
afterwards. Mask inputs (corrective clicks) still go through PyTorch's convolutions.
Equal to the original to float rounding (tested).
"""

from __future__ import annotations

import numpy as np


class PromptEmbedder:
    """``(boxes (N, 4) | points (N, P, 2) + labels (N, P))`` -> sparse tokens ``(N, T, 256)``
    in model-input pixel coordinates; ``dense`` is the constant "no mask" embedding."""

    def __init__(self, prompt_encoder):
        pe = prompt_encoder
        self.gauss = pe.pe_layer.positional_encoding_gaussian_matrix.detach().cpu().numpy().astype(np.float32)
        self.kinds = [e.weight.detach().cpu().numpy()[0].astype(np.float32) for e in pe.point_embeddings]
        self.not_a_point = pe.not_a_point_embed.weight.detach().cpu().numpy()[0].astype(np.float32)
        h, w = pe.input_image_size
        self.scale = np.array([1.0 / w, 1.0 / h], np.float32)
        eh, ew = pe.image_embedding_size
        no_mask = pe.no_mask_embed.weight.detach().cpu().numpy().reshape(1, -1, 1, 1).astype(np.float32)
        self.dense = np.ascontiguousarray(np.broadcast_to(no_mask, (1, no_mask.shape[1], eh, ew)))

    def _fourier(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2), already shifted to pixel centres -> (..., 256)."""
        c = 2.0 * (xy.astype(np.float32) * self.scale) - 1.0
        c = (2.0 * np.pi) * (c @ self.gauss)
        return np.concatenate([np.sin(c), np.cos(c)], axis=-1).astype(np.float32)

    def __call__(self, boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                 labels: np.ndarray | None = None) -> np.ndarray:
        parts = []
        if points is not None:
            pts = np.asarray(points, np.float32).reshape(len(points), -1, 2) + 0.5
            labs = np.asarray(labels, np.float32).reshape(len(points), -1)
            if boxes is None:  # SAM pads clicks without a box with one "not a point"
                pts = np.concatenate([pts, np.zeros((len(pts), 1, 2), np.float32)], axis=1)
                labs = np.concatenate([labs, -np.ones((len(labs), 1), np.float32)], axis=1)
            emb = self._fourier(pts)
            emb[labs == -1] = self.not_a_point
            emb[labs == 0] += self.kinds[0]
            emb[labs == 1] += self.kinds[1]
            parts.append(emb)
        if boxes is not None:
            corners = np.asarray(boxes, np.float32).reshape(-1, 2, 2) + 0.5
            emb = self._fourier(corners)
            emb[:, 0] += self.kinds[2]
            emb[:, 1] += self.kinds[3]
            parts.append(emb)
        if not parts:
            raise ValueError("a prompt needs boxes or points")
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
