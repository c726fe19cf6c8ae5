"""The folded mask decoder in two OpenVINO graphs: an image side computed once per embedding,
and a prompt side that every box or click on that embedding runs.

`DecoderCore.image_side` is everything before the first prompt token meets the image: the image
tokens (embedding plus the no-mask dense embedding) and the first layer's image-side key, value
and query projections. Its result (the decoder *state*, one flat float32 array of about 10.5 MB)
is cached with the embedding by the engine (`LiteMedSAMEngine.decoder_state`), so a click's four
candidate boxes run only `DecoderCore.prompt_side`. Mask prompts (a dense embedding per prompt)
run both graphs in one call. The two graphs together compute exactly what the single folded graph
does (same operations, split), up to float rounding.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from .accel import OPSET, cache_dir, export_onnx_once, openvino_compile
from .fast_decoder import CORE_VERSION, FULL, DecoderCore

TOKENS = 64 * 64
CHANNELS, INNER, HEADS = 256, 128, 8  # LiteMedSAM's decoder: width, cross-attention width, heads
# the state: image tokens (1, HW, C), then the first layer's k, v, q in head layout (1, h, HW, d)
STATE_SHAPES = ((1, TOKENS, CHANNELS),) + ((1, HEADS, TOKENS, INNER // HEADS),) * 3
STATE_SIZES = tuple(int(np.prod(s)) for s in STATE_SHAPES)
STATE_FLOATS = sum(STATE_SIZES)


def state_views(state: np.ndarray) -> list[np.ndarray]:
    """The four arrays a flat decoder state holds (views, no copy)."""
    if state.dtype != np.float32 or state.size != STATE_FLOATS:
        raise ValueError(f"not a decoder state: {state.dtype} x {state.size} (expected float32 x {STATE_FLOATS})")
    out, at = [], 0
    for shape, size in zip(STATE_SHAPES, STATE_SIZES):
        out.append(state[at:at + size].reshape(shape))
        at += size
    return out


class ImageSide(torch.nn.Module):
    """``(embedding (1, 256, 64, 64), dense (B, 256, 64, 64))`` -> `DecoderCore.image_side`."""

    def __init__(self, core: DecoderCore):
        super().__init__()
        self.core = core

    def forward(self, embedding, dense):
        return self.core.image_side(embedding, dense)


class PromptSide(torch.nn.Module):
    """``(keys, k0, v0, q0, sparse, rows, cols)`` -> `DecoderCore.prompt_side` (masks, iou)."""

    def __init__(self, core: DecoderCore):
        super().__init__()
        self.core = core

    def forward(self, keys, k0, v0, q0, sparse, rows, cols):
        return self.core.prompt_side(keys, k0, v0, q0, sparse, rows, cols)


def export_split_onnx(core: DecoderCore, weights_sha256: str) -> tuple[Path, Path]:
    """Export the image side and the prompt side once per weights checksum and graph version."""
    if not core.fold:
        raise ValueError("only the folded decoder graph is split")
    stem = f"lite_medsam_decoder_v{core.version}_{weights_sha256[:16]}_op{OPSET}"
    emb, dense = torch.zeros(1, 256, 64, 64), torch.zeros(1, 256, 64, 64)
    image = export_onnx_once(
        ImageSide(core).cpu(), (emb, dense), cache_dir() / f"{stem}_image.onnx", 100_000,
        input_names=["embedding", "dense"], output_names=["keys", "k0", "v0", "q0"],
        dynamic_axes={"dense": {0: "b"}, "keys": {0: "b"}, "k0": {0: "b"}, "v0": {0: "b"}, "q0": {0: "b"}})
    with torch.no_grad():
        state = core.image_side(emb, dense)
    prompt = export_onnx_once(
        PromptSide(core).cpu(), (*state, torch.zeros(2, 2, 256), torch.arange(10, 30), torch.arange(5, 40)),
        cache_dir() / f"{stem}_prompt.onnx", 100_000,
        input_names=["keys", "k0", "v0", "q0", "sparse", "rows", "cols"], output_names=["masks", "iou"],
        dynamic_axes={"keys": {0: "b"}, "k0": {0: "b"}, "v0": {0: "b"}, "q0": {0: "b"},
                      "sparse": {0: "n", 1: "tokens"}, "rows": {0: "r"}, "cols": {0: "k"},
                      "masks": {0: "n", 2: "height", 3: "width"}, "iou": {0: "n"}})
    return image, prompt


def _f32(t) -> np.ndarray:
    return np.ascontiguousarray(t if isinstance(t, np.ndarray) else t.detach().cpu().numpy(), dtype=np.float32)


class SplitOpenVinoDecoder:
    """The mask-decoder backend (same call as `fast_decoder.OpenVinoDecoder`) on the two graphs;
    ``image_state`` computes a state that later calls take as ``state=`` (boxes and clicks)."""

    def __init__(self, image_onnx: Path, prompt_onnx: Path, threads: int, precision: str | None = None):
        image, precision = openvino_compile(image_onnx, threads, "MEDPLIB_DECODER_PRECISION", precision)
        prompt, _ = openvino_compile(prompt_onnx, threads, "MEDPLIB_DECODER_PRECISION", precision)
        self.image_request, self.prompt_request = image.create_infer_request(), prompt.create_infer_request()
        self._image_lock = threading.Lock()  # image_state may run on a pre-encoding thread
        self.name = f"openvino-{precision}"
        self.state_tag = f"decoder-state-v{CORE_VERSION}-{self.name}"
        zeros = torch.zeros(1, 256, 64, 64)  # set up the kernels for dynamic shapes while loading
        self(zeros, torch.zeros(1, 2, 256), zeros, FULL, FULL, state=self.image_state(zeros, zeros))

    def image_state(self, embedding, dense) -> np.ndarray:
        """The flat decoder state (`state_views`) of one embedding and a batch-1 dense embedding."""
        emb, dense = _f32(embedding), _f32(dense)
        if dense.shape[0] != 1:
            raise ValueError("a cached decoder state needs one dense embedding for all prompts")
        state = np.empty(STATE_FLOATS, np.float32)
        with self._image_lock:
            out = self.image_request.infer({0: emb, 1: dense})
            for view, i in zip(state_views(state), range(4)):
                view[...] = out[i]
        return state

    def __call__(self, embedding, sparse, dense, rows, cols, state: np.ndarray | None = None):
        if state is None:  # mask prompts (a dense embedding each): both graphs, nothing kept
            with self._image_lock:
                out = self.image_request.infer({0: _f32(embedding), 1: _f32(dense)})
                parts = [out[i] for i in range(4)]  # copies (infer does not share its outputs)
        else:
            parts = state_views(state)
        inputs = dict(enumerate(parts + [_f32(sparse)] +
                                [np.ascontiguousarray(t.cpu().numpy(), dtype=np.int64) for t in (rows, cols)]))
        out = self.prompt_request.infer(inputs, share_inputs=True)
        return np.asarray(out[0], np.float32), np.asarray(out[1], np.float32)
