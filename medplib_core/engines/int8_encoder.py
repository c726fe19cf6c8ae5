"""Int8 LiteMedSAM image encoder: NNCF post-training quantisation for OpenVINO.

Calibration uses real images that install with the application's packages
(`registry_images`: pydicom's and pydicom-data's CT, MR, ultrasound and radiographs, and
scikit-image's samples when installed), each as a whole slice and as a zoom region, the two
kinds of input the engine encodes. NNCF's transformer recipe (SmoothQuant, fast bias
correction) quantises the weights and activations of the linear layers; ``KEEP_FLOAT`` names
the layers left in floating point because quantising them moved the embedding most.

Opt-in (``MEDPLIB_INT8_BUILD=1``; `enabled`). Building takes minutes on two cores, so it never
happens on the user's clock: the engine then starts `start_background_build` on first use (a
separate, lowest-priority process, one per machine at a time, stopped when the process that
started it exits), which writes the model and its verdict into the accelerator cache
(`accel.cache_dir`), keyed by the weights' checksum, `INT8_VERSION`, NNCF's and OpenVINO's
versions and the calibration set. From the next engine start on, ``auto`` uses it where the
verdict says it agrees with eager PyTorch and is faster than the floating-point OpenVINO
encoder on this CPU. ``MEDPLIB_ENCODER_PRECISION=int8`` builds it now (blocking) instead.

Int8 pays only with int8 dot-product instructions (VNNI, AMX). Without them (AVX2 only, e.g. a
Zen 3 EPYC) the model was measured both slower than fp32 (1.05x its CPU time) and further from
eager PyTorch than the check allows (median embedding error 0.14, box Dice down to 0.82), with
NNCF's overflow fix (7-bit weights) as well (0.16, 1.12x); so nothing is built where the CPU is
known to lack them (`dot_product_instructions`), nor where the float encoder already runs in
native bf16, which measured faster than int8 (`worth_building`).

It is off by default because where it is faster it still changes 3D propagation. On an Ice
Lake-class Xeon (2 cores, AVX-512 VNNI, no bf16, OpenVINO 2026.4) version 2 takes 0.79x fp32's
CPU time (version 1: 267 ms a slice against fp32's 390, bench/segmentation.py) and keeps
dev2d's tight-box Dice within 0.002 of eager; but the shared CT's right kidney, seeded two
thirds up, leaks into its neighbour to the end of the volume (3D Dice 0.61; fp32 stops near
the kidney's top), and the MR spleen and right kidney lose 0.02. A 20-30 % faster encoder
(slices near the one on screen are encoded in the background anyway) is not worth that.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .accel import MAX_REL_ERROR, backend_version, cache_dir, cpu_flags, openvino_precision, temp_path
from .registry_images import fingerprint, registry_image_paths, registry_images

log = logging.getLogger(__name__)
INT8_VERSION = 2  # bump when the recipe below changes: it names the model and its verdict
# Layers NNCF leaves in floating point (regular expressions on the exported node names): every
# convolution (the MBConv stage at 256x256, the down-sampling and the neck: quantising them
# moved the embedding by 22-26 % on real images, against 8 % without), the attention products
# q.k and attn.v, and the second MLP layer (fc2, fed by the GELU) of the last two stages. What
# is quantised is qkv, the attention projections, every fc1 and the first stage's fc2.
# Version 1 also quantised every fc2: 0.69x fp32's CPU time but median embedding error 0.088,
# and on an Ice Lake-class Xeon (VNNI, no bf16) propagation on the shared MR volume fell from
# fp32's 3D Dice 0.796 / 0.857 (right kidney / spleen) to 0.638 / 0.804. With the last two
# stages' fc2 in float: 0.79x, error 0.045, 0.778 / 0.837. All fc2 in float: error 0.043 but
# 0.94x (not faster); the first stage's alone, or the last stage, in float: error 0.087 / 0.072.
KEEP_FLOAT: tuple[str, ...] = (r".*Conv.*", r"/patch_embed/.*", r"/neck/.*", r".*attn/MatMul.*",
                               r"/layers\.[23]/.*mlp/fc2/.*")
# The float layers run in fp32 everywhere: with bf16 under the int8 linears (CPUs with native
# bf16) the check inputs' box masks agreed with eager PyTorch at mean Dice 0.969 (min 0.875),
# with fp32 at 0.975 (min 0.906); where bf16 is native the plain bf16 encoder is the faster one.
INNER_PRECISION = "f32"
LOCK_STALE_S = 3600.0
_STARTED: set[str] = set()  # builds this process started (one per key)


DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")  # as /proc/cpuinfo names them
OLD_ISAS = ("SSE41", "AVX", "AVX2")  # ONEDNN_MAX_CPU_ISA values that rule them out (emulation)


def dot_product_instructions(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU has int8 dot-product instructions (``cpuinfo``: the text of
    /proc/cpuinfo, read when None); None where the system does not say (not Linux)."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in OLD_ISAS:
        return False
    flags = cpu_flags(cpuinfo)
    return None if flags is None else any(f in flags for f in DOT_PRODUCT_FLAGS)


def enabled() -> bool:
    """Whether the user opted in to the int8 encoder for ``auto`` (``MEDPLIB_INT8_BUILD=1``)."""
    return os.environ.get("MEDPLIB_INT8_BUILD", "0") == "1"


def worth_building() -> bool:
    """Whether ``auto`` builds the int8 model in the background: only when `enabled`, and not
    where the CPU lacks int8 dot-product instructions nor where the float encoder runs in
    native bf16.

    Where bf16 is native the bf16 encoder is the faster one, so the int8 model would be built
    (minutes of CPU) only to be refused: on a Zen 4, 4.02x eager against bf16's 4.40x; on a
    Sapphire Rapids with AMX (2 cores, OpenVINO 2026.4), 335 ms against bf16's 198 ms, and
    206 ms with bf16 under the int8 layers, which the check refuses (above).
    """
    if not enabled() or dot_product_instructions() is False:
        return False
    try:
        return openvino_precision("MEDPLIB_ENCODER_PRECISION") != "bf16"
    except ImportError:  # no OpenVINO: no int8 model either
        return False


def model_key(weights_sha256: str) -> str:
    """Everything the int8 model depends on, hashed: weights, recipe, libraries, calibration."""
    try:
        import nncf

        nncf_version = nncf.__version__
    except ImportError:
        nncf_version = "none"
    parts = [weights_sha256[:16], f"v{INT8_VERSION}", nncf_version, backend_version("openvino"),
             fingerprint(registry_image_paths())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def model_path(weights_sha256: str) -> Path:
    return cache_dir() / f"lite_medsam_encoder_int8_{model_key(weights_sha256)}.xml"


def verdict_key(weights_sha256: str) -> str:
    return f"openvino-int8:{model_key(weights_sha256)}"


def _model_inputs(regions) -> list[np.ndarray]:
    """Model inputs from the registry images; ``regions(h, w)`` lists the crops of each (None:
    the whole image)."""
    from .litemedsam_preprocess import make_frame, model_input
    from .prompts import check_image

    out = []
    for _, image in registry_images():
        img, reason = check_image(image)
        if reason is None:
            h, w = img.shape[:2]
            out += [model_input(img, make_frame((h, w), region)) for region in regions(h, w)]
    return out


def _centre_square(h: int, w: int) -> tuple[int, int, int, int]:
    side = max(16, min(h, w) // 3)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return x0, y0, x0 + side, y0 + side


def calibration_inputs() -> list[np.ndarray]:
    """Model inputs from the registry images: each whole, and a centred zoom region."""
    return _model_inputs(lambda h, w: [None, _centre_square(h, w)])


def quantize(onnx_path: Path, out_path: Path, inputs: list[np.ndarray]) -> Path:
    """Quantise the floating-point encoder at ``onnx_path``; saves the OpenVINO IR atomically."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    ignored = nncf.IgnoredScope(patterns=list(KEEP_FLOAT), validate=False) if KEEP_FLOAT else None
    kwargs = {"ignored_scope": ignored} if ignored is not None else {}
    q = nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs),
                      model_type=nncf.ModelType.TRANSFORMER, **kwargs)
    tmp = temp_path(out_path).with_suffix(".xml")  # OpenVINO wants the .xml suffix
    ov.save_model(q, str(tmp))
    tmp_bin = tmp.with_suffix(".bin")
    os.replace(tmp_bin, out_path.with_suffix(".bin"))  # weights first: the .xml marks it complete
    os.replace(tmp, out_path)
    return out_path


def build(image_encoder, weights_sha256: str) -> Path:
    """Quantise the encoder now (minutes) unless the model is already in the cache."""
    from .fast_encoder import export_onnx

    out = model_path(weights_sha256)
    lock = _lock_path(weights_sha256)
    while _lock_owner(lock) not in (None, os.getpid()) and not out.is_file():  # another build: wait
        time.sleep(2.0)
    if out.is_file() and out.with_suffix(".bin").is_file():
        return out
    inputs = calibration_inputs()
    if len(inputs) < 8:
        raise RuntimeError(f"only {len(inputs)} calibration images are installed (pydicom-data missing?)")
    quantize(export_onnx(image_encoder, weights_sha256), out, inputs)
    remove_stale_models(out)
    return out


def remove_stale_models(current: Path) -> None:
    """Delete the int8 models of other recipes or libraries (~15-20 MB each, never read again)."""
    for old in current.parent.glob("lite_medsam_encoder_int8_*"):
        if old.stem != current.stem and old.suffix in (".xml", ".bin"):
            try:
                old.unlink()
            except OSError:
                pass


# ----- the trust check --------------------------------------------------------------------------
CHECK_BOXES = ((64, 64, 192, 192), (32, 80, 112, 176), (140, 40, 230, 130), (90, 150, 170, 230))
MIN_MEAN_DICE = 0.97  # mean mask agreement with eager PyTorch on the check inputs
MIN_DICE = 0.85  # on every check box
FASTER = 0.9  # int8 is chosen when it needs at most this fraction of the float encoder's CPU time


def check_inputs() -> list[np.ndarray]:
    """Real inputs the quantiser has not seen: registry images cut into off-centre zoom regions."""
    def corner(h: int, w: int) -> list:
        side = max(16, min(h, w) // 2)
        return [(0, h - side, side, h)]

    return _model_inputs(corner)


def _cpu_seconds(fn, x) -> float:
    t = time.process_time()  # all threads of this process: robust to other load on the machine
    fn(x)
    return time.process_time() - t


def check(enc, eager, weights_sha256: str, threads: int) -> tuple[bool, dict]:
    """Embedding error and box-mask Dice against eager PyTorch, and the CPU time against the
    floating-point OpenVINO encoder; ``ok`` means it agrees, ``faster`` whether to prefer it."""
    import torch

    from .fast_decoder import FULL, DecoderCore
    from .fast_encoder import OpenVinoEncoder, export_onnx
    from .litemedsam_model import build_network
    from .prompts import dice

    net = build_network("cpu")
    core = DecoderCore(net).eval()
    boxes = torch.tensor(CHECK_BOXES, dtype=torch.float32).reshape(-1, 1, 4)
    with torch.no_grad():
        sparse, dense = net.prompt_encoder(points=None, boxes=boxes, masks=None)

    def masks(emb: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits, _ = core(torch.from_numpy(emb), sparse, dense[:1], FULL, FULL)
        return logits[:, 0].numpy() > 0

    rel, dices = [], []
    inputs = check_inputs()
    for x in inputs:
        ref, got = eager(x), enc(x)
        rel.append(float(np.abs(got - ref).mean() / max(np.abs(ref).mean(), 1e-12)))
        dices += [dice(a, b) for a, b in zip(masks(ref), masks(got))]
    float_enc = OpenVinoEncoder(export_onnx(net.image_encoder, weights_sha256), threads)
    x = inputs[0]
    float_enc(x), enc(x)
    t_float, t_int8 = [], []
    for _ in range(3):  # interleaved
        t_float.append(_cpu_seconds(float_enc, x))
        t_int8.append(_cpu_seconds(enc, x))
    ratio = float(np.median(t_int8) / max(np.median(t_float), 1e-9))
    ok = bool(np.median(rel) <= MAX_REL_ERROR and np.mean(dices) >= MIN_MEAN_DICE and min(dices) >= MIN_DICE)
    return ok, {"rel_error_median": float(np.median(rel)), "mask_dice_mean": float(np.mean(dices)),
                "mask_dice_min": float(min(dices)), "inputs": len(inputs), "cpu_time_ratio": ratio,
                "versus": float_enc.name, "faster": bool(ratio <= FASTER)}


def remembered_choice(weights_sha256: str) -> str | None:
    """``"int8"`` when a checked int8 model agrees and is faster here, ``"float"`` when it was
    checked and is not, None when there is no verdict yet (or the model file is gone)."""
    from .accel import remembered

    try:
        import openvino  # noqa: F401
    except ImportError:
        return "float"
    verdict = remembered(f"{verdict_key(weights_sha256)}:openvino-int8-{INNER_PRECISION}")
    if verdict is None or not model_path(weights_sha256).is_file():
        return None
    return "int8" if verdict.get("ok") and verdict.get("faster") else "float"


# ----- building in the background ---------------------------------------------------------------
def _lock_path(weights_sha256: str) -> Path:
    return model_path(weights_sha256).with_suffix(".building")


def _lock_owner(lock: Path) -> int | None:
    """The live process building the model (its lock file names it), or None."""
    try:
        pid = int(lock.read_text().strip() or 0)
        age = time.time() - lock.stat().st_mtime
    except (OSError, ValueError):
        return None
    if age > LOCK_STALE_S or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _lock_held(lock: Path) -> bool:
    return _lock_owner(lock) is not None


def start_background_build(weights_sha256: str) -> subprocess.Popen | None:
    """Build and check the int8 model in a lowest-priority process, unless it exists, is being
    built (by any process on this machine) or this process started it already; returns the
    process it started, if any. The process writes only into the accelerator cache."""
    key = model_key(weights_sha256)
    if key in _STARTED or model_path(weights_sha256).is_file() or _lock_held(_lock_path(weights_sha256)):
        return None
    _STARTED.add(key)
    package_root = Path(__file__).resolve().parents[2]  # the folder holding medplib_core
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(package_root)] + [p for p in [env.get("PYTHONPATH")] if p])
    kwargs: dict = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                    "env": env, "cwd": str(cache_dir())}
    if os.name == "posix":
        kwargs["preexec_fn"] = lambda: os.nice(19)
        kwargs["start_new_session"] = True
    else:  # pragma: no cover - Windows
        kwargs["creationflags"] = 0x00004000  # BELOW_NORMAL_PRIORITY_CLASS
    try:
        proc = subprocess.Popen([sys.executable, "-m", "medplib_core.engines.int8_encoder"], **kwargs)
    except OSError as exc:
        log.info("int8 encoder build not started: %s", exc)
        return None
    atexit.register(_stop, proc)  # an unfinished build starts again next time
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _main() -> int:
    """Entry point of the background build: quantise, then check once (verdict cached)."""
    from .fast_encoder import make_encoder
    from .litemedsam_model import build_network, file_sha256, weights_path

    sha = file_sha256(weights_path())
    lock = _lock_path(sha)
    if _lock_held(lock):
        return 0
    tmp = temp_path(lock)
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, lock)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up below when stopped
    try:
        net = build_network("cpu")
        build(net.image_encoder, sha)
        make_encoder(net.image_encoder, sha, "cpu", "openvino-int8")  # runs and caches the check
    finally:
        try:
            lock.unlink()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(_main())
