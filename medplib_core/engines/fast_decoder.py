"""Accelerated LiteMedSAM mask decoder (OpenVINO), with eager PyTorch as fallback.

The prompt encoder stays in PyTorch (it is a handful of small ops); the mask decoder, where a
prompt's time goes (two-way transformer over 64x64 image tokens, then upscaling), is rewritten
for one image and many prompts (``DecoderCore``) and runs through OpenVINO with dynamic batch,
token counts and mask window, in bf16 on CPUs with native bf16 and AMX (`decoder_precision`).
On this project's 2-core dev machine, one / eight box prompts: original eager 65 / 737 ms,
OpenVINO bf16 of the original graph 32 / 237 ms, of ``DecoderCore`` 23-30 / 153-180 ms; four
prompts with a 30x30-token window about 60 ms. In fp32 (CPUs without native bf16 or without
AMX) the folded graph (attention without projecting the image tokens after the first layer;
0.72x the CPU time of the one before) runs split in two (`split_decoder`): its image side is
computed once per embedding and cached with it, so boxes and clicks run only the prompt side.
``MEDPLIB_DECODER`` (``auto``, ``eager``, ``openvino``) overrides the
choice and ``MEDPLIB_DECODER_PRECISION=f32`` keeps fp32. Like the encoder, the backend is
compared with eager PyTorch once before it is trusted.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from .accel import (OPSET, backend_version, cache_dir, cpu_flags, export_onnx_once, openvino_compile,
                    openvino_precision, remembered_check)
from .fast_encoder import probe_image
from ..threads import inference_threads

log = logging.getLogger(__name__)
MIN_MASK_IOU = 0.95  # agreement with eager demanded on every probe prompt
MAX_SCORE_ERROR = 0.05  # largest |predicted IoU difference| accepted
CORE_VERSION = 4  # bump when DecoderCore changes: names the ONNX export and the verdict
UNFOLDED_VERSION = 2  # DecoderCore(fold=False): the graph before, used where OpenVINO runs bf16
FULL = torch.arange(64)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _attend(att: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SAM's ``Attention`` with batch broadcasting: q, k and v may have batch 1 or N."""
    h = att.num_heads
    q, k, v = _heads(att.q_proj(q), h), _heads(att.k_proj(k), h), _heads(att.v_proj(v), h)
    w = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
    out = w @ v
    b, _, n, _ = out.shape
    return att.out_proj(out.transpose(1, 2).reshape(b, n, -1))


def _attend_projected(att: torch.nn.Module, q: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """``_attend`` with keys and values already projected, in head layout (1 or N, heads, HW, d)."""
    qh = _heads(att.q_proj(q), att.num_heads)
    w = torch.softmax((qh @ kh.transpose(-1, -2)) / math.sqrt(qh.shape[-1]), dim=-1)
    out = w @ vh
    b, _, n, _ = out.shape
    return att.out_proj(out.transpose(1, 2).reshape(b, n, -1))


def _per_head(linear: torch.nn.Linear, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A projection's weight as (heads, head dim, in) and its bias as (heads, 1, head dim)."""
    w = linear.weight
    return w.reshape(heads, -1, w.shape[-1]), linear.bias.reshape(heads, 1, -1)


def _tokens_to_image(att: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``_attend`` for a few prompt tokens ``q`` (N, T, C) over N prompt-specific image grids
    ``k``, ``v`` (N, HW, C), without projecting the HW image tokens.

    Each head's query is mapped back through the key projection (q Wk) and scored against the
    raw image tokens; the key bias adds the same amount to every score of a query and cancels
    in the softmax. The value projection is applied after the weighted sum (the weights sum to
    one, so the bias passes through). That is two (N, heads*T, C) x (C, HW) products instead of
    projecting 2 x HW tokens: about 2.3x fewer multiply-adds per prompt for a box (T = 7).
    """
    h, n, t = att.num_heads, q.shape[0], q.shape[1]
    qh = _heads(att.q_proj(q), h)  # (N, h, T, d)
    wk, _ = _per_head(att.k_proj, h)
    wv, bv = _per_head(att.v_proj, h)
    scores = (qh @ wk).reshape(n, h * t, wk.shape[-1]) @ k.transpose(1, 2)  # (N, h*T, HW)
    w = torch.softmax(scores.reshape(n, h, t, -1) / math.sqrt(qh.shape[-1]), dim=-1)
    out = (w.reshape(n, h * t, -1) @ v).reshape(n, h, t, -1) @ wv.transpose(1, 2) + bv  # (N, h, T, d)
    return att.out_proj(out.transpose(1, 2).reshape(n, t, -1))


def _image_to_tokens(att: torch.nn.Module, q: torch.Tensor | None, k: torch.Tensor, v: torch.Tensor,
                     projected_queries: torch.Tensor | None = None) -> torch.Tensor:
    """``_attend`` for image tokens ``q`` (1 or N, HW, C) over a few prompt tokens ``k``, ``v``
    (N, T, C), without projecting the HW image tokens' attention output back.

    Each head's values are pushed through its slice of the output projection first (T x C per
    head), so the output is one (HW, heads*T) x (heads*T, C) product. Unless
    ``projected_queries`` (the first layer: one image grid for all prompts, its query projection
    done once, (1, heads, HW, d)), the keys are likewise mapped back through the query projection and the image tokens are scored
    raw; here the query bias does not cancel (it depends on the key) and is added.
    """
    h, n, t = att.num_heads, k.shape[0], k.shape[1]
    c = att.out_proj.weight.shape[0]  # a constant in the graph: OpenVINO's bf16 kernels need it
    kh = _heads(att.k_proj(k), h)  # (N, h, T, d)
    d = kh.shape[-1]
    # scores as (N, h, T, HW): the softmax over the T prompt tokens then runs along a long inner
    # axis (0.83x the time of a softmax over a last axis of T = 7 in OpenVINO fp32)
    if projected_queries is not None:
        scores = kh @ projected_queries.transpose(-1, -2)  # (N, h, T, HW)
    else:
        wq, bq = _per_head(att.q_proj, h)
        bias = (kh * bq.unsqueeze(0)).sum(-1).reshape(n, h * t, 1)  # (N, h*T, 1)
        scores = ((kh @ wq).reshape(n, h * t, c) @ q.transpose(1, 2) + bias).reshape(n, h, t, -1)
    w = torch.softmax(scores / math.sqrt(d), dim=2)
    wo = att.out_proj.weight.reshape(c, h, d).permute(1, 2, 0)  # (h, d, C)
    vo = (_heads(att.v_proj(v), h) @ wo).reshape(n, h * t, c)  # (N, h*T, C)
    return w.reshape(n, h * t, -1).transpose(1, 2) @ vo + att.out_proj.bias


class DecoderCore(torch.nn.Module):
    """LiteMedSAM's mask decoder rewritten for one image and N prompts, same weights.

    ``(embedding (1, 256, 64, 64), sparse (N, T, 256), dense (1 or N, 256, 64, 64), rows (R,),
    cols (K,))`` -> ``(mask logits (N, 4, 4R, 4K), predicted IoU (N, 4))``.

    The original repeats the image embedding and its positional encoding N times before the
    two-way transformer; here the image tokens stay a single broadcast copy until the first
    image-to-token attention makes them prompt-specific, so the first layer's image-side
    projections and the layout changes of the 64x64 grid are done once, not N times. The
    upscaling to mask logits is local (each token becomes its own 4x4 block of pixels), so it
    runs only on the token rows and columns asked for: a window around the prompt, or all 64.
    After the first layer the attention between the few prompt tokens and the 4096
    prompt-specific image tokens is computed without projecting the image tokens
    (`_tokens_to_image`, `_image_to_tokens`): a click's four boxes took 0.72x the CPU time of
    the version before through OpenVINO fp32 under AVX2, 0.73x in bf16 (bench/single_click.py,
    all of dev2d).
    ``image_side`` (what does not depend on the prompt) and ``prompt_side`` are the two halves
    of ``forward`` that `split_decoder` runs as separate graphs (``CORE_VERSION`` 4; 3 was one
    graph, with the image-to-token softmax over a last axis of T tokens).
    ``fold=False`` keeps the projections (the version before): OpenVINO uses it in bf16, where
    folding moves the rounding (same probe agreement with eager, but a propagated MR spleen
    stopped early: 3D Dice 0.67 instead of 0.80). Results match the original to float
    rounding in fp32 (tested).
    """

    def __init__(self, net: torch.nn.Module, fold: bool = True):
        super().__init__()
        self.md = net.mask_decoder
        self.fold = fold
        self.version = CORE_VERSION if fold else UNFOLDED_VERSION  # names its ONNX export
        with torch.no_grad():
            pe = net.prompt_encoder.get_dense_pe()
        self.register_buffer("pos", pe.flatten(2).transpose(1, 2).contiguous())
        up1, self.norm, _, up2, _ = self.md.output_upscaling
        for i, conv in ((1, up1), (2, up2)):  # (in, out, 2, 2) -> (in, 2 * 2 * out) in (a, b, out) order
            w = conv.weight.detach()
            self.register_buffer(f"w{i}", w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).contiguous())
            self.register_buffer(f"b{i}", conv.bias.detach().repeat(4))

    def _upscale(self, grid: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """Tokens (N, R, K, C) -> mask logits (N, M, 4R, 4K), given hypernetwork weights (N, 32, M).

        The two stride-2, 2x2 transposed convolutions do not overlap, so each is a linear map of
        one position to its 2x2 sub-pixels; done as matrix products on the token layout, the
        mask logits are formed before the (small) final rearrangement into image order.
        """
        n, r, k, _ = grid.shape
        x = (grid @ self.w1 + self.b1).reshape(n, r, k, 2, 2, -1)  # (.., a, b, 64)
        u = x.mean(-1, keepdim=True)  # LayerNorm2d over the channels of each sub-pixel
        x = (x - u) / torch.sqrt((x - u).pow(2).mean(-1, keepdim=True) + self.norm.eps)
        x = torch.nn.functional.gelu(self.norm.weight * x + self.norm.bias)
        x = torch.nn.functional.gelu(x @ self.w2 + self.b2)  # (.., a, b, 2 * 2 * 32)
        x = x.reshape(n, r * k * 16, -1) @ hyper  # (N, R*K*a*b*a2*b2, M)
        x = x.reshape(n, r, k, 2, 2, 2, 2, -1).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return x.reshape(n, -1, 4 * r, 4 * k)

    def image_side(self, embedding: torch.Tensor, dense: torch.Tensor):
        """The prompt-independent start: image tokens ``keys`` (B, HW, C) and the first layer's
        image-side projections in head layout (B, heads, HW, d): token-to-image keys (with the
        positional encoding) and values, image-to-token queries. B = 1 for boxes and clicks."""
        keys = (embedding + dense).flatten(2).transpose(1, 2)
        k = keys + self.pos
        layer = self.md.transformer.layers[0]
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        return (keys, _heads(t2i.k_proj(k), t2i.num_heads), _heads(t2i.v_proj(keys), t2i.num_heads),
                _heads(i2t.q_proj(k), i2t.num_heads))

    def forward(self, embedding, sparse, dense, rows, cols):
        if self.fold:
            return self.prompt_side(*self.image_side(embedding, dense), sparse, rows, cols)
        keys = (embedding + dense).flatten(2).transpose(1, 2)  # (1 or N, HW, C)
        return self.prompt_side(keys, None, None, None, sparse, rows, cols)

    def prompt_side(self, keys, k0, v0, q0, sparse, rows, cols):
        """The rest, from ``image_side``'s output (``k0`` etc. None: the graph before, v2)."""
        md, tf = self.md, self.md.transformer
        n = sparse.shape[0]
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], 0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(n, -1, -1), sparse], 1)
        h = w = int(round(math.sqrt(self.pos.shape[1])))
        c = self.pos.shape[2]
        queries = tokens
        for i, layer in enumerate(tf.layers):
            if layer.skip_first_layer_pe:
                queries = _attend(layer.self_attn, queries, queries, queries)
            else:
                q = queries + tokens
                queries = queries + _attend(layer.self_attn, q, q, queries)
            queries = layer.norm1(queries)
            att = layer.cross_attn_token_to_image
            if i == 0 and k0 is not None:  # image side projected by image_side, once per image
                to_image = _attend_projected(att, queries + tokens, k0, v0)
            else:
                k = keys + self.pos
                attend = _tokens_to_image if self.fold else _attend
                to_image = attend(att, queries + tokens, k, keys)
            queries = layer.norm2(queries + to_image)
            queries = layer.norm3(queries + layer.mlp(queries))
            att = layer.cross_attn_image_to_token
            if i == 0 and q0 is not None:
                to_tokens = _image_to_tokens(att, None, queries + tokens, queries, projected_queries=q0)
            elif self.fold:
                to_tokens = _image_to_tokens(att, k, queries + tokens, queries)
            else:
                to_tokens = _attend(att, k, queries + tokens, queries)
            keys = layer.norm4(keys + to_tokens)
        attend = _tokens_to_image if self.fold else _attend
        final = attend(tf.final_attn_token_to_image, queries + tokens, keys + self.pos, keys)
        queries = tf.norm_final_attn(queries + final)
        # keys are per prompt by now; ``expand`` (the version before) copies them in ONNX graphs
        grid = (keys.reshape(n, h, w, c) if self.fold else keys.expand(n, -1, -1).reshape(n, h, w, c))
        grid = grid[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # rows/cols: consecutive
        mlps = md.output_hypernetworks_mlps
        hyper = torch.stack([mlp(queries[:, 1 + j]) for j, mlp in enumerate(mlps)], 2)
        masks = self._upscale(grid, hyper)
        return masks, md.iou_prediction_head(queries[:, 0])


class EagerDecoder:
    def __init__(self, core: DecoderCore, device: str = "cpu"):
        self.core, self.device = core.to(device), device
        self.name = f"torch-{device}"

    @torch.no_grad()
    def __call__(self, embedding, sparse, dense, rows, cols):
        emb, sparse, dense = (t.to(self.device) if isinstance(t, torch.Tensor) else
                              torch.from_numpy(np.array(t, np.float32)).to(self.device)
                              for t in (embedding, sparse, dense))
        masks, iou = self.core(emb, sparse, dense, rows.to(self.device), cols.to(self.device))
        return masks.float().cpu().numpy(), iou.float().cpu().numpy()


class OpenVinoDecoder:
    def __init__(self, onnx_path: Path, threads: int, precision: str | None = None):
        compiled, precision = openvino_compile(onnx_path, threads, "MEDPLIB_DECODER_PRECISION", precision)
        self.request = compiled.create_infer_request()
        self.name = f"openvino-{precision}"
        # The first inference sets up OpenVINO's kernels for dynamic shapes (~100-200 ms here):
        # pay it while the engine loads, not on the user's first prompt.
        self(torch.zeros(1, 256, 64, 64), torch.zeros(1, 2, 256), torch.zeros(1, 256, 64, 64), FULL, FULL)

    def __call__(self, embedding, sparse, dense, rows, cols):
        inputs = [np.ascontiguousarray(t if isinstance(t, np.ndarray) else t.detach().cpu().numpy(),
                                       dtype=np.float32) for t in (embedding, sparse, dense)]
        inputs += [np.ascontiguousarray(t.cpu().numpy(), dtype=np.int64) for t in (rows, cols)]
        out = self.request.infer(dict(enumerate(inputs)), share_inputs=True)  # no copy of 8 MB in
        return np.asarray(out[0], np.float32), np.asarray(out[1], np.float32)


def export_decoder_onnx(core: DecoderCore, weights_sha256: str) -> Path:
    """Export the mask decoder once per weights checksum; returns the cached path."""
    path = cache_dir() / f"lite_medsam_decoder_v{core.version}_{weights_sha256[:16]}_op{OPSET}.onnx"
    example = (torch.zeros(1, 256, 64, 64), torch.zeros(2, 2, 256), torch.zeros(1, 256, 64, 64),
               torch.arange(10, 30), torch.arange(5, 40))
    return export_onnx_once(
        core.cpu(), example, path, 100_000,
        input_names=["embedding", "sparse", "dense", "rows", "cols"], output_names=["masks", "iou"],
        dynamic_axes={"sparse": {0: "n", 1: "tokens"}, "dense": {0: "n_dense"}, "rows": {0: "r"},
                      "cols": {0: "k"}, "masks": {0: "n", 2: "height", 3: "width"}, "iou": {0: "n"}},
    )


def _probe_prompts(net: torch.nn.Module):
    """Box prompts of several sizes plus a click with a mask input, in model coordinates."""
    boxes = torch.tensor([[[70.0, 80, 150, 170]], [[20.0, 20, 230, 230]], [[100.0, 110, 124, 136]]])
    with torch.no_grad():
        sb, db = net.prompt_encoder(points=None, boxes=boxes, masks=None)
        pts = (torch.tensor([[[102.0, 128.0], [40.0, 40.0]]]), torch.tensor([[1.0, 0.0]]))
        mask = torch.zeros(1, 1, 256, 256)
        mask[..., 90:170, 60:150] = 4.0
        sp, dp = net.prompt_encoder(points=pts, boxes=None, masks=mask)
    return [(sb, db[:1]), (sp, dp)]


def _agrees(fast, eager: EagerDecoder, net: torch.nn.Module) -> tuple[bool, dict]:
    """Masks and scores of ``fast`` vs ``eager`` on the probe image's real embedding."""
    with torch.no_grad():
        emb = net.image_encoder(torch.from_numpy(probe_image())).float()
    worst_iou, worst_score = 1.0, 0.0
    windows = [(FULL, FULL), (torch.arange(4, 60), torch.arange(8, 56))]
    for (sparse, dense), (rows, cols) in zip(_probe_prompts(net), windows):
        (m_ref, s_ref), (m, s) = eager(emb, sparse, dense, rows, cols), fast(emb, sparse, dense, rows, cols)
        a, b = m_ref[:, 0] > 0, m[:, 0] > 0
        for i in range(len(a)):
            union = (a[i] | b[i]).sum()
            worst_iou = min(worst_iou, float((a[i] & b[i]).sum() / union) if union else 1.0)
        worst_score = max(worst_score, float(np.abs(s - s_ref)[:, 0].max()))
    ok = worst_iou >= MIN_MASK_IOU and worst_score <= MAX_SCORE_ERROR
    return ok, {"worst_mask_iou": worst_iou, "worst_score_error": worst_score}


MATRIX_UNIT_FLAGS = ("amx_bf16",)  # as /proc/cpuinfo names them


def decoder_precision(precision: str | None = None, cpuinfo: str | None = None) -> str:
    """The mask decoder's OpenVINO precision: ``precision`` or ``$MEDPLIB_DECODER_PRECISION``
    when either names one, else bf16 only where the CPU has native bf16 *and* matrix units (AMX)
    or does not say. Without AMX the folded fp32 graph, split with its image side cached, is the
    faster one: on a Zen 4 with AVX512-BF16 (two cores) box -> mask 37 against 42 ms, click ->
    mask 88 against 99 ms (medians, dev2d, interleaved in one process)."""
    asked = (precision or os.environ.get("MEDPLIB_DECODER_PRECISION", "") or "auto").lower()
    native = openvino_precision("MEDPLIB_DECODER_PRECISION", precision or None)
    if asked != "auto" or native == "f32":
        return native
    flags = cpu_flags(cpuinfo)
    return "bf16" if flags is None or any(f in flags for f in MATRIX_UNIT_FLAGS) else "f32"


def make_decoder(net: torch.nn.Module, weights_sha256: str, device: str = "cpu", backend: str = "auto"):
    """The fastest trustworthy mask decoder for this machine (see the module docstring).

    ``backend``: ``auto``, ``eager``, ``openvino`` or ``openvino-f32`` / ``openvino-bf16``.
    """
    backend = (os.environ.get("MEDPLIB_DECODER") or backend or "auto").lower()
    name, _, precision = backend.partition("-")
    eager = EagerDecoder(DecoderCore(net).eval(), device)
    if name in ("eager", "torch") or device != "cpu":
        return eager
    if name not in ("auto", "openvino"):
        log.warning("unknown decoder backend %r; using eager PyTorch", backend)
        return eager
    try:
        precision = decoder_precision(precision or None)
        fold = precision == "f32"
        from .split_decoder import SplitOpenVinoDecoder, export_split_onnx

        def folded():  # in two graphs: the image side is computed once per embedding
            core = DecoderCore(net).eval()
            return core, SplitOpenVinoDecoder(*export_split_onnx(core, weights_sha256), inference_threads(), "f32")

        if fold:  # folded in fp32 only (see DecoderCore)
            graph, fast = folded()
        else:
            graph = DecoderCore(net, fold=False).eval()
            fast = OpenVinoDecoder(export_decoder_onnx(graph, weights_sha256), inference_threads(), precision)
            if fast.name.endswith("f32"):  # bf16 announced but its kernels failed
                graph, fast = folded()
        fast.core_version = graph.version
        key = f"decoder-v{graph.version}-{fast.name}:{weights_sha256[:16]}:{backend_version('openvino')}"
        if remembered_check(key, lambda: _agrees(fast, eager, net)):
            return fast
        log.warning("decoder backend %s disagrees with eager PyTorch; not used", fast.name)
    except ImportError:
        log.info("OpenVINO is not installed; the mask decoder runs in eager PyTorch")
    except Exception as exc:  # any export/runtime failure falls back to eager
        log.warning("decoder backend openvino unavailable: %s", exc)
    return eager
