"""The light install: LiteMedSAM from pre-built OpenVINO model files, with PyTorch refused.

The model folder is built once from the real weights by `lite_files_build.build` (checked
against eager PyTorch there) and kept in the engine cache under a key of the weights and the
code that writes and reads it. The light paths then run in subprocesses whose imports of
torch/transformers fail (`tests/no_torch`), batch workers included.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medplib_core.engines import lite_files
from medplib_core.errors import LoadError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _folder_key() -> str:
    from medplib_core.engines.litemedsam_model import file_sha256, weights_path

    h = hashlib.sha256(file_sha256(weights_path()).encode())
    for name in ("lite_files.py", "lite_files_build.py", "fast_decoder.py", "fast_encoder.py"):
        h.update((REPO / "medplib_core" / "engines" / name).read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def model_folder() -> Path:
    from medplib_core.engines.accel import cache_dir
    from medplib_core.engines.lite_files_build import build

    folder = cache_dir() / f"lite-models-test-{_folder_key()}"
    try:
        lite_files.read_manifest(folder)
    except LoadError:
        build(folder, log=lambda line: None)
    return folder


def _light_env(tmp: Path, folder: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDPLIB_ENCODER", "MEDPLIB_DECODER"))}
    env.pop(lite_files.ENV, None)
    if folder is not None:
        env[lite_files.ENV] = str(folder)
    env.update(PYTHONPATH=f"{REPO / 'tests' / 'no_torch'}{os.pathsep}{REPO}", QT_QPA_PLATFORM="offscreen",
               MEDPLIB_STUDIO_DATA=str(tmp / "data"), MEDPLIB_STUDIO_SETTINGS=str(tmp / "settings.ini"))
    return env


def test_manifest_names_the_broken_file(tmp_path):
    with pytest.raises(LoadError, match="no manifest.json"):
        lite_files.read_manifest(tmp_path)
    (tmp_path / "encoder.bin").write_bytes(b"x" * 10)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": lite_files.FORMAT, "sizes": {"encoder.bin": 100}}))
    with pytest.raises(LoadError, match=r"encoder\.bin: missing or incomplete"):
        lite_files.read_manifest(tmp_path)


def test_build_checked_against_eager(model_folder):
    manifest = lite_files.read_manifest(model_folder)
    f32 = manifest["checks"]["f32"]
    assert f32["ok"] and f32["encoder_rel_error"] < 1e-3 and f32["worst_box_iou_real_slice"] >= 0.95
    assert manifest["prompts"]["token_max_error"] < 1e-4


def test_light_paths_without_torch(model_folder, tmp_path, pydicom_ct_path):
    """View, LiteMedSAM, edit, export, project and batch with torch refused; masks vs eager."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "light_paths.py"), str(tmp_path / "out")],
                          cwd=REPO, env=_light_env(tmp_path, model_folder), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["heavy_modules"] == [] and "model files" in report["device"]
    assert report["batch"]["ok"] == 2 and report["refined_pixels"] > 0 and report["click_pixels"] > 0

    import medplib_core
    from medplib_core.display import apply_window
    from medplib_core.engines.base import Prompt
    from medplib_core.engines.litemedsam import LiteMedSAMEngine
    from light_paths import BOXES

    vol = medplib_core.load(pydicom_ct_path)
    eager = LiteMedSAMEngine(device="cpu", backend="eager").encode(apply_window(vol.array[0], *vol.window))
    light = np.load(tmp_path / "out" / "masks.npz")
    for i, box in enumerate(BOXES):
        a, b = light[f"box{i}"], eager.predict(Prompt(box=box)).mask
        assert a.any() and (a & b).sum() / (a | b).sum() >= 0.95, box


def test_window_segments_without_torch(model_folder, tmp_path, pydicom_ct_path):
    """The real window, offscreen, with torch refused: open the CT, draw a box, accept."""
    hook = tmp_path / "hook.py"
    hook.write_text(
        "assert wait_until(lambda: window.session.volume is not None, 60)\n"
        "assert wait_until(lambda: window.engine.ready or window.engine.state == 'error', 300), 'engine'\n"
        "assert window.engine.ready, window.engine.state\n"
        "cv = window.viewer.active.canvas\n"
        "QTest.keyClick(cv, Qt.Key.Key_B)\n"
        "drag(cv, image_point(cv, 30, 30), image_point(cv, 100, 100))\n"
        "assert wait_until(lambda: window.session.proposal is not None and window.engine.pending is None, 120)\n"
        "QTest.keyClick(cv, Qt.Key.Key_Return)\n"
        "assert wait_until(lambda: (window.session.labelmap.array > 0).any(), 30)\n"
        "import sys\n"
        "print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))\n"
        "app.exit(0)\n")
    env = _light_env(tmp_path, model_folder)
    env["MEDPLIB_STUDIO_HOOK"] = str(hook)
    proc = subprocess.run([sys.executable, "-m", "app.main", pydicom_ct_path], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "HEAVY []" in proc.stdout


def test_no_model_files_and_no_torch_is_a_clear_error(tmp_path, pydicom_ct_path):
    proc = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "segment", pydicom_ct_path,
                           "--box", "30", "30", "100", "100", "--out", str(tmp_path / "m.nii.gz")],
                          cwd=REPO, env=_light_env(tmp_path, None), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "model files" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
