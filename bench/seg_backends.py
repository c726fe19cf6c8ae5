"""Per-backend rows of `bench/segmentation.py`: every encoder and decoder backend this machine
offers, timed in the same process, interleaved row by row, against eager PyTorch.

Encoder backends: eager PyTorch, OpenVINO fp32, OpenVINO bf16 (CPUs with native bf16 only),
OpenVINO int8 (NNCF, built on first use; ``--build-int8`` builds it now) and ONNX Runtime fp32.
For each: median time per encoding, speed-up over eager, median relative embedding error
against eager on the same input, tight-box and single-click Dice on the same rows (zoom regions
encoded by the backend itself), and box -> mask and click -> mask with the embeddings cached
(median and 90th percentile; each backend's engine uses the decoder ``auto`` picks, eager
PyTorch with the eager encoder). Decoder backends (eager ``DecoderCore``, OpenVINO fp32 / bf16): one box
and four candidate boxes (a click) on the same cached embedding.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np


class Timed:
    """Wraps an encoder to record each call's duration (wall clock) and CPU time."""

    def __init__(self, enc):
        self.enc, self.times, self.cpu, self.name = enc, [], [], enc.name
        self.last_input = self.last_output = None

    def __call__(self, x, stop=None):
        t, c = time.perf_counter(), time.process_time()
        out = self.enc(x, stop) if stop is not None else self.enc(x)
        self.times.append(time.perf_counter() - t)
        self.cpu.append(time.process_time() - c)
        self.last_input, self.last_output = x, out
        return out

    def interrupt(self):
        self.enc.interrupt()


class TimedDecoder:
    """Wraps a mask-decoder backend to record (prompts in the batch, duration) per call."""

    def __init__(self, backend):
        self.backend, self.calls, self.name = backend, [], backend.name

    def __call__(self, embedding, sparse, *rest):
        t = time.perf_counter()
        out = self.backend(embedding, sparse, *rest)
        self.calls.append((int(sparse.shape[0]), time.perf_counter() - t))
        return out

    def median_ms(self, n: int = 1) -> float:
        times = [t for k, t in self.calls if k == n]
        return float(np.median(times)) * 1000 if times else float("nan")


def encoder_specs(build_int8: bool) -> list[str]:
    """The encoder backends to compare on this machine (eager first: the baseline)."""
    specs = ["eager"]
    try:
        import openvino  # noqa: F401

        from medplib_core.engines.accel import openvino_precision

        specs.append("openvino-f32")
        if openvino_precision("__none__") == "bf16":
            specs.append("openvino-bf16")
        from medplib_core.engines import int8_encoder
        from medplib_core.engines.litemedsam_model import file_sha256, weights_path

        if build_int8 or int8_encoder.model_path(file_sha256(weights_path())).is_file():
            specs.append("openvino-int8")
    except ImportError:
        pass
    try:
        import onnxruntime  # noqa: F401

        specs.append("onnxruntime")
    except ImportError:
        pass
    return specs


def make_engines(specs: list[str]) -> dict:
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    engines = {}
    for spec in specs:
        eng = LiteMedSAMEngine(encoder=spec, decoder="eager" if spec == "eager" else "auto", cache_bytes=2**30)
        same = [k for k, e in engines.items() if e.encoder.name == eng.encoder.name]
        if same:  # it failed its check and fell back: no row of its own
            print(f"encoder backend {spec}: not available or not trusted here (got {eng.encoder.name}, as {same[0]})")
            continue
        eng.encoder = Timed(eng.encoder)
        engines[spec] = eng
    return engines


def run_encoders(engines: dict, cases, dice, prompt_cls, interior_point) -> dict:
    """Per backend on ``cases`` ((image, gt, box) triples): tight-box and single-click Dice,
    encoder timings, and box -> mask / click -> mask with the embeddings cached."""
    res: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for image, gt, box in cases:
        ref = None
        click = prompt_cls(points=[interior_point(gt)], point_labels=[1])
        for spec, eng in engines.items():  # interleaved: every backend on this row, then the next
            n0 = len(eng.encoder.times)
            session = eng.encode(image)
            res[spec]["dice"].append(dice(session.predict(prompt_cls(box=box)).mask, gt))
            res[spec]["click dice"].append(dice(session.predict(click).mask, gt))
            for kind, prompt in (("box", prompt_cls(box=box)), ("click", click)):  # now all cached
                t, c = time.perf_counter(), time.process_time()
                session.predict(prompt)
                res[spec][f"{kind} s"].append(time.perf_counter() - t)
                res[spec][f"{kind} cpu"].append(time.process_time() - c)
            emb = session.embedding
            if spec == "eager":
                ref = emb
            elif ref is not None and len(eng.encoder.times) > n0:
                res[spec]["rel"].append(float(np.abs(emb - ref).mean() / np.abs(ref).mean()))
    for spec, eng in engines.items():
        res[spec]["times"] = list(eng.encoder.times)
        res[spec]["cpu"] = list(eng.encoder.cpu)
        res[spec]["name"] = f"{eng.encoder.name} / {eng.decoder.name}"
    return res


def print_encoder_table(res: dict) -> None:
    base = np.median(res["eager"]["times"]) if "eager" in res else float("nan")
    base_dice = np.mean(res["eager"]["dice"]) if "eager" in res else float("nan")
    print("\n| encoder backend (spec -> encoder / decoder used) | encoder median ms | speed-up vs eager | "
          "CPU s / call | embedding error vs eager | tight-box Dice | Dice - eager | single-click Dice | rows |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec, r in res.items():
        med = np.median(r["times"]) * 1000
        rel = f"{np.median(r['rel']):.4f}" if r.get("rel") else "-"
        print(f"| {spec} -> {r['name']} | {med:.0f} | {base * 1000 / med:.2f}x | {np.median(r['cpu']):.2f} | "
              f"{rel} | {np.mean(r['dice']):.4f} | {np.mean(r['dice']) - base_dice:+.4f} | "
              f"{np.mean(r['click dice']):.4f} | {len(r['dice'])} |")
    print("\n| backend (encoder / decoder), embeddings cached | box -> mask median ms | p90 | CPU ms | "
          "click -> mask median ms | p90 | CPU ms |")
    print("|---|---|---|---|---|---|---|")
    for spec, r in res.items():
        b, c, bc, cc = (np.asarray(r[k]) * 1000 for k in ("box s", "click s", "box cpu", "click cpu"))
        print(f"| {spec} -> {r['name']} | {np.median(b):.0f} | {np.percentile(b, 90):.0f} | {np.median(bc):.0f} | "
              f"{np.median(c):.0f} | {np.percentile(c, 90):.0f} | {np.median(cc):.0f} |")


def decoder_table(image_embeddings: list[np.ndarray], repeats: int = 1) -> None:
    """One box and four boxes (as a click decodes) per decoder backend, interleaved."""
    import torch

    from medplib_core.engines.fast_decoder import EagerDecoder, DecoderCore, make_decoder
    from medplib_core.engines.litemedsam_model import build_network, file_sha256, weights_path

    net = build_network("cpu")
    sha = file_sha256(weights_path())
    decs = {"eager": EagerDecoder(DecoderCore(net).eval())}
    for spec in ("openvino-f32", "openvino-bf16"):
        d = make_decoder(net, sha, "cpu", spec)
        if d.name != "torch-cpu" and d.name not in {x.name for x in decs.values()}:
            decs[spec] = d
    boxes = torch.tensor([[[70.0, 80, 150, 170]], [[60.0, 70, 160, 180]], [[40.0, 50, 180, 200]],
                          [[90.0, 100, 130, 150]]])
    with torch.no_grad():
        sparse, dense = net.prompt_encoder(points=None, boxes=boxes, masks=None)
    win1 = (torch.arange(17, 45), torch.arange(15, 40))  # the box plus its clip margin, in tokens
    win4 = (torch.arange(10, 52), torch.arange(8, 47))
    times: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _ in range(repeats):
        for emb in image_embeddings:
            for spec, d in decs.items():
                for n, win in ((1, win1), (4, win4)):
                    t = time.perf_counter()
                    d(emb, sparse[:n], dense[:1], *win)
                    times[spec][n].append(time.perf_counter() - t)
    e1, e4 = (np.median(times["eager"][n]) for n in (1, 4))
    print("\n| decoder backend (spec -> backend used) | 1 box: median ms | speed-up | "
          "4 boxes (click): median ms | speed-up | calls |")
    print("|---|---|---|---|---|---|")
    for spec, d in decs.items():
        m1, m4 = (np.median(times[spec][n]) for n in (1, 4))
        print(f"| {spec} -> {d.name} | {m1 * 1000:.1f} | {e1 / m1:.2f}x | {m4 * 1000:.1f} | {e4 / m4:.2f}x | "
              f"{len(times[spec][1])} |")
