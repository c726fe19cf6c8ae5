"""Windowing: the viewer's table lookup and the engines' arithmetic give the same bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import medplib_core
from medplib_core.display import Windowing, apply_window, value_range

INT_DTYPES = (np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int8)


@st.composite
def integer_planes(draw):
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    info = np.iinfo(dtype)
    lo = draw(st.integers(int(info.min), int(info.max)))
    hi = draw(st.integers(lo, min(int(info.max), lo + 70_000)))
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=12))
    plane = draw(hnp.arrays(dtype, shape, elements=st.integers(lo, hi)))
    return plane, (lo, hi)


windows = st.tuples(st.floats(-5e4, 5e4, allow_nan=False), st.floats(1e-7, 1e5, allow_nan=False))


@settings(max_examples=400, deadline=None)
@given(integer_planes(), windows)
def test_table_lookup_equals_the_arithmetic(data, window):
    plane, rng = data
    w = Windowing(rng)
    assert w.table_ok
    np.testing.assert_array_equal(w.apply(plane, *window), apply_window(plane, *window))


@settings(max_examples=100, deadline=None)
@given(integer_planes(), windows)
def test_the_table_of_the_plane_range_serves_any_plane_inside_it(data, window):
    plane, _ = data
    got = Windowing(value_range(plane)).apply(plane, *window)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, apply_window(plane, *window))


def test_soft_tissue_window_top_value_is_white_in_both_paths():
    # 250 HU is the top of the CT soft tissue window (50, 400): exactly 255. A float64 table
    # gave 254 there while the float32 arithmetic gave 255 (one grey level apart).
    plane = np.array([[-150, 0, 249, 250, 251]], dtype=np.int16)
    want = [0, 95, 254, 255, 255]
    assert apply_window(plane, 50, 400).tolist() == [want]
    assert Windowing((-1024, 3071)).apply(plane, 50, 400).tolist() == [want]


def test_float_scans_and_nan():
    plane = np.array([[np.nan, -np.inf, np.inf, 0.5, 1.0]], dtype=np.float32)
    out = Windowing(None).apply(plane, 0.5, 1.0)
    assert out.tolist() == [[0, 0, 255, 127, 255]]
    np.testing.assert_array_equal(out, apply_window(plane, 0.5, 1.0))


def test_colour_default_window_is_the_identity_and_alpha_is_dropped():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    for out in (apply_window(rgba, 127.5, 255.0), Windowing((0, 255)).apply(rgba, 127.5, 255.0)):
        np.testing.assert_array_equal(out, rgba[..., :3])


def test_volume_value_range_is_cached(pydicom_ct_path):
    vol = medplib_core.load(pydicom_ct_path)
    first = vol.value_range
    assert first == (int(vol.array.min()), int(vol.array.max()))
    assert vol.__dict__["value_range"] is first  # computed once, then kept
    assert medplib_core.Volume(np.zeros((2, 3, 3), np.float32)).value_range is None


@pytest.mark.parametrize("width", [0.0, -3.0, 1e-9])
def test_degenerate_widths_are_a_step(width):
    plane = np.array([[9, 10, 11]], dtype=np.int16)
    out = apply_window(plane, 10.0, width)
    assert out[0, 0] == 0 and out[0, 2] == 255 and out[0, 0] <= out[0, 1] <= out[0, 2]
    np.testing.assert_array_equal(Windowing((9, 11)).apply(plane, 10.0, width), out)
