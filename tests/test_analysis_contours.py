"""Outline tracing and even-odd fill: exact round trip on blobs with holes; the fill agrees with
scikit-image's polygon rasteriser."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import polygon as sk_polygon

from medplib_core.analysis.contours import fill_outlines, label_edges, mask_outlines


def test_outlines_fill_back_to_the_mask():
    rng = np.random.default_rng(3)
    for _ in range(20):
        noise = ndimage.gaussian_filter(rng.random((70, 90)), 3)
        mask = noise > np.quantile(noise, 0.6)  # blobs with holes, touching the border
        outlines = mask_outlines(mask)
        assert len(outlines) >= 1
        np.testing.assert_array_equal(fill_outlines(outlines, mask.shape), mask)


def test_fill_agrees_with_scikit_image_on_random_polygons():
    rng = np.random.default_rng(4)
    for _ in range(50):
        n = rng.integers(3, 12)
        angles = np.sort(rng.random(n)) * 2 * np.pi
        radius = rng.uniform(5, 30, n)
        poly = np.column_stack([40 + radius * np.sin(angles), 45 + radius * np.cos(angles)])
        poly += rng.uniform(-0.3, 0.3, poly.shape) + 0.013  # keep vertices off pixel centres
        rr, cc = sk_polygon(poly[:, 0], poly[:, 1], shape=(80, 90))
        ref = np.zeros((80, 90), bool)
        ref[rr, cc] = True
        np.testing.assert_array_equal(fill_outlines([poly], (80, 90)), ref)


def test_empty_and_degenerate_inputs():
    assert mask_outlines(np.zeros((5, 5), bool)) == []
    assert not fill_outlines([], (4, 4)).any()
    assert not fill_outlines([np.array([[1.0, 1.0], [2.0, 2.0]])], (4, 4)).any()
    one = np.zeros((5, 5), bool)
    one[2, 2] = True
    np.testing.assert_array_equal(fill_outlines(mask_outlines(one), one.shape), one)


def test_label_edges_are_each_labels_rim_as_scipy_erodes_it():
    rng = np.random.default_rng(5)
    cross = ndimage.generate_binary_structure(2, 1)
    for _ in range(10):
        noise = ndimage.gaussian_filter(rng.random((60, 80)), 3)
        plane = np.digitize(noise, np.quantile(noise, [0.3, 0.55, 0.8])).astype(np.uint16)  # 0..3, touching
        for width in (1, 2, 3):
            edges = label_edges(plane, width)
            assert edges.dtype == plane.dtype
            for v in (1, 2, 3):
                m = plane == v
                rim = m & ~ndimage.binary_erosion(m, cross, iterations=width, border_value=0)
                np.testing.assert_array_equal(edges == v, rim)
            assert not edges[plane == 0].any()
    assert not label_edges(np.zeros((4, 5), np.uint16)).any()
