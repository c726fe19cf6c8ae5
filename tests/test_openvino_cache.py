"""OpenVINO's compiled-model cache with both precisions of one model in one process.

On an AMX CPU (Sapphire Rapids), OpenVINO 2026.4 segfaulted at the first bf16 inference when the
same process had compiled the same model in f32 with the same cache folder: the model-folder
build (`lite_files_build`) does exactly that, and it took the whole test run down. The child
process here compiles the real LiteMedSAM encoder in f32, then in bf16, through
`accel.openvino_compile` with an empty cache, runs both and compares them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np
from medplib_core.engines.accel import openvino_compile
from medplib_core.engines.fast_encoder import probe_image

x = probe_image()
out = {}
for precision in ("f32", "bf16", "f32", "bf16"):  # the second round loads from the cache
    compiled, used = openvino_compile(Path(sys.argv[1]), 2, "", precision)
    y = compiled.create_infer_request().infer({0: x})[0]
    out.setdefault(used, []).append(np.asarray(y, np.float32))
f32, bf16 = out["f32"][0], out["bf16"][0]
print(json.dumps({"precisions": sorted(out), "rel": float(np.abs(bf16 - f32).mean() / np.abs(f32).mean()),
                  "same_after_cache": bool(np.array_equal(out["bf16"][0], out["bf16"][1]))}))
"""


def _native_bf16() -> bool:
    from medplib_core.engines.accel import openvino_precision

    return not os.environ.get("ONEDNN_MAX_CPU_ISA") and openvino_precision("", "auto") == "bf16"


def test_f32_then_bf16_of_one_model_in_one_process(tmp_path):
    if not _native_bf16():
        pytest.skip("this CPU has no native bf16: OpenVINO compiles f32 only")
    from medplib_core.engines.fast_encoder import export_onnx
    from medplib_core.engines.litemedsam_model import build_network, file_sha256, weights_path

    onnx = export_onnx(build_network("cpu").image_encoder, file_sha256(weights_path()))
    env = dict(os.environ, MEDPLIB_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", CHILD, str(onnx)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"the child died ({r.returncode}): {r.stderr[-2000:]}"
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["precisions"] == ["bf16", "f32"]
    from medplib_core.engines.fast_encoder import MAX_REL_ERROR

    assert res["rel"] < MAX_REL_ERROR, res  # within what the backend check accepts of bf16
    assert res["same_after_cache"], res
    # one cache folder per precision, both written
    assert sorted(p.name for p in (tmp_path / "cache" / "encoders" / "openvino").iterdir()) == ["bf16", "f32"]


def test_the_old_one_folder_cache_is_cleared(tmp_path, monkeypatch):
    from medplib_core.engines.accel import openvino_cache

    monkeypatch.setenv("MEDPLIB_CACHE_DIR", str(tmp_path))
    root = tmp_path / "encoders" / "openvino"
    root.mkdir(parents=True)
    (root / "3325102123981531486.blob").write_bytes(b"a model compiled before the per-precision folders")
    assert openvino_cache("bf16") == str(root / "bf16")
    assert sorted(p.name for p in root.iterdir()) == ["bf16"]
    (root / "bf16" / "1.blob").write_bytes(b"kept")
    assert openvino_cache("f32") == str(root / "f32") and (root / "bf16" / "1.blob").is_file()
