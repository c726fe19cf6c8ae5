"""`medplib-studio segment` picks its engine on the command line (MedPLIB grounding by text)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medplib_core.cli.main import main
from test_medplib_support import tiny_set


@pytest.fixture(scope="module")
def demo_paths(tmp_path_factory):
    """A tiny MedPLIB checkpoint set whose greedy answer grounds "The liver <SEG>."."""
    return tiny_set(tmp_path_factory.mktemp("medplib"), "demo")


@pytest.fixture()
def rgb_image(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(p)
    return p


def test_segment_grounds_text_with_medplib(demo_paths, rgb_image, tmp_path, capsys):
    out = tmp_path / "mask.png"
    rc = main(["segment", str(rgb_image), "--engine", "medplib", "--text", "liver",
               "--checkpoint", str(demo_paths.checkpoint), "--clip", str(demo_paths.clip),
               "--sam", str(demo_paths.sam), "--device", "cpu", "--out", str(out)])
    assert rc == 0
    mask = np.array(Image.open(out))
    assert mask.shape == (48, 80) and set(np.unique(mask)) <= {0, 255}
    assert '"engine": "MedPLIB"' in capsys.readouterr().out


def test_segment_without_medplib_weights_says_where_to_put_them(rgb_image, tmp_path, monkeypatch, capsys):
    for var in ("MEDPLIB_CHECKPOINT", "MEDPLIB_CLIP", "MEDPLIB_SAM"):
        monkeypatch.delenv(var, raising=False)
    rc = main(["segment", str(rgb_image), "--engine", "medplib", "--text", "liver", "--out", str(tmp_path / "m.png")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "MEDPLIB_CHECKPOINT" in err and "LiteMedSAM" in err
    assert not (tmp_path / "m.png").exists()


def test_text_needs_medplib(rgb_image, tmp_path, capsys):
    assert main(["segment", str(rgb_image), "--text", "liver", "--out", str(tmp_path / "m.png")]) == 1
    assert "--engine medplib" in capsys.readouterr().err


def test_batch_grounds_text_targets_with_medplib(demo_paths, rgb_image, tmp_path):
    """Text targets ("liver") become one label each, on 2D images and (propagated) volumes."""
    import json

    import SimpleITK as sitk

    from medplib_core.batch import Manifest, run_batch

    vol = sitk.GetImageFromArray((np.random.default_rng(1).random((5, 40, 56)) * 200).astype(np.int16))
    vol.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(vol, str(tmp_path / "vol.nii.gz"))
    spec = {"output": str(tmp_path / "run"), "targets": ["liver"], "propagate": True,
            "engine": {"name": "medplib", "checkpoint": str(demo_paths.checkpoint), "clip": str(demo_paths.clip),
                       "sam": str(demo_paths.sam), "device": "cpu"},
            "cases": [str(rgb_image), str(tmp_path / "vol.nii.gz")]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    summary = run_batch(tmp_path / "spec.json", workers=1)
    assert summary["ok"] == 2, Manifest(tmp_path / "run").latest()
    recs = Manifest(tmp_path / "run").latest()
    assert recs["photo"]["engine"]["name"] == "MedPLIB"
    side = json.loads((tmp_path / "run" / "labels" / "vol.json").read_text())
    assert [lab["name"] for lab in side["labels"]] == ["liver"]
    assert side["labels"][0]["voxels"] > 0
    out = sitk.ReadImage(str(tmp_path / "run" / "labels" / "vol.nii.gz"))
    assert out.GetSize() == vol.GetSize() and np.allclose(out.GetSpacing(), vol.GetSpacing())
