"""2D images load as one-slice volumes, pixels as stored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medplib_core.errors import LoadError
from medplib_core.io import load
from medplib_core.slicing import slice_geometry

RNG = np.random.default_rng(3)


def test_png_grey_rgb_rgba_16bit(tmp_path) -> None:
    grey = RNG.integers(0, 256, (7, 9), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    vol = load(tmp_path / "g.png")
    assert vol.array.shape == (1, 7, 9) and vol.array.dtype == np.uint8
    np.testing.assert_array_equal(vol.array[0], grey)
    assert vol.modality == "OT" and vol.spacing == (1.0, 1.0, 1.0)
    assert vol.source.kind == "image"

    rgb = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    vol = load(tmp_path / "c.png")
    assert vol.array.shape == (1, 7, 9, 3) and vol.is_colour
    np.testing.assert_array_equal(vol.array[0], rgb)

    rgba = np.dstack([rgb, np.full((7, 9), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    vol = load(tmp_path / "a.png")
    np.testing.assert_array_equal(vol.array[0], rgb)

    g16 = RNG.integers(0, 65536, (7, 9)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    vol = load(tmp_path / "g16.png")
    assert vol.array.dtype == np.uint16
    np.testing.assert_array_equal(vol.array[0], g16)


def test_16bit_colour_png_keeps_16_bits(tmp_path) -> None:
    cv2 = pytest.importorskip("cv2")
    rgb16 = RNG.integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])
    vol = load(tmp_path / "c16.png")
    assert vol.array.dtype == np.uint16
    np.testing.assert_array_equal(vol.array[0], rgb16)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("TIFF", "tif"), ("BMP", "bmp")])
def test_other_formats(tmp_path, fmt: str, ext: str) -> None:
    rgb = RNG.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    path = tmp_path / f"x.{ext}"
    Image.fromarray(rgb).save(path, format=fmt)
    vol = load(path)
    assert vol.array.shape == (1, 16, 12, 3)
    if fmt != "JPEG":
        np.testing.assert_array_equal(vol.array[0], rgb)
    grey = RNG.integers(0, 256, (16, 12), dtype=np.uint8)
    Image.fromarray(grey).save(path, format=fmt)
    assert load(path).array.shape == (1, 16, 12)


def test_tiff_16bit_and_palette(tmp_path) -> None:
    g16 = RNG.integers(0, 65536, (6, 5)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g.tif")
    np.testing.assert_array_equal(load(tmp_path / "g.tif").array[0], g16)
    pal = Image.fromarray(RNG.integers(0, 4, (6, 5), dtype=np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    pal.save(tmp_path / "p.png")
    vol = load(tmp_path / "p.png")
    assert vol.array.shape == (1, 6, 5, 3)


def test_image_displays_as_stored(tmp_path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "g.png")
    vol = load(tmp_path / "g.png")
    g = slice_geometry(vol, "axial", 0)
    np.testing.assert_array_equal(g.take(vol.array), grey)


def test_truncated_image(tmp_path) -> None:
    rgb = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError) as info:
        load(tmp_path / "cut.png")
    assert "cut.png" in str(info.value)
