"""Shared fixtures for the MedPLIB tests: tiny checkpoints generated once per test run.

Test modules import the fixtures from here; a module-level cache makes sure every variant is
generated and loaded only once per process even though several modules import them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

_CACHE: dict = {}


def tiny_set(root: Path, variant: str = "full"):
    """Tiny checkpoint set; ``variant`` "full", "bare" (no CLIP/SAM tensors in the shards) or
    "demo" (every greedy answer is "The liver <SEG>.")."""
    key = ("paths", variant)
    if key not in _CACHE:
        from medplib_core.medplib.tiny import make_tiny

        full = variant != "bare"
        _CACHE[key] = make_tiny(root / variant, include_clip=full, include_sam=full,
                                demo=variant == "demo")
    return _CACHE[key]


def loaded_model(paths, dtype=None):
    key = ("loaded", str(paths.checkpoint), str(dtype))
    if key not in _CACHE:
        from medplib_core.medplib.loader import load_medplib

        _CACHE[key] = load_medplib(paths.checkpoint, paths.clip, paths.sam, device="cpu",
                                   dtype=dtype)
    return _CACHE[key]


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory):
    return tiny_set(_root(tmp_path_factory))


@pytest.fixture(scope="session")
def tiny_bare_paths(tmp_path_factory):
    return tiny_set(_root(tmp_path_factory), "bare")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    return loaded_model(tiny_set(_root(tmp_path_factory), "demo"))


@pytest.fixture(scope="session")
def tiny(tiny_paths):
    return loaded_model(tiny_paths)


@pytest.fixture(scope="session")
def tokenizer(tiny):
    return tiny.tokenizer


def _root(factory) -> Path:
    if "root" not in _CACHE:
        _CACHE["root"] = factory.mktemp("medplib-tiny")
    return _CACHE["root"]


def test_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A grey slice with a bright rectangle (uint8)."""
    rng = np.random.RandomState(seed)
    img = (rng.rand(h, w) * 60).astype(np.uint8)
    img[h // 4: h // 2, w // 3: 2 * w // 3] = 220
    return img


test_image.__test__ = False  # a helper, not a test
