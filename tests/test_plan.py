"""Planning and grid arithmetic as properties (hypothesis): alignment, minimality, round trips."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from imalys_stac.cube.grid import Grid
from imalys_stac.cube.plan import common_grid, union_bounds

coords = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
sizes = st.floats(min_value=1.0, max_value=5e4, allow_nan=False)
resolutions = st.sampled_from([10.0, 20.0, 30.0, 60.0, 100.0, 0.5, 250.0])


@st.composite
def boxes(draw):
    x, y = draw(coords), draw(coords)
    return (x, y, x + draw(sizes), y + draw(sizes))


def _on(v: float, anchor: float, r: float) -> bool:
    k = (v - anchor) / r
    return abs(k - round(k)) < 1e-6 * max(1.0, abs(k))


@settings(max_examples=300, deadline=None)
@given(b=boxes(), r=resolutions, ax=st.floats(0, 1), ay=st.floats(0, 1))
def test_aligned_grid_covers_the_bounds_on_the_anchor_and_is_smallest(b, r, ax, ay):
    anchor = (ax * r, ay * r)
    g = Grid.aligned(32632, b, r, anchor)
    left, bottom, right, top = g.bounds
    tol = 1e-6 * r
    assert left <= b[0] + tol and bottom <= b[1] + tol and right >= b[2] - tol and top >= b[3] - tol
    assert all(_on(v, anchor[0], r) for v in (left, right)) and all(_on(v, anchor[1], r) for v in (bottom, top))
    # smallest: moving any edge one pixel inwards would uncover part of the bounds
    assert left + r > b[0] - tol and right - r < b[2] + tol and bottom + r > b[1] - tol and top - r < b[3] + tol
    rows, cols = g.shape
    assert rows >= 1 and cols >= 1
    assert math.isclose(cols * r, right - left, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=200, deadline=None)
@given(b=boxes(), r=resolutions, yr=st.one_of(st.none(), resolutions))
def test_grid_round_trips_through_stac(b, r, yr):
    g = Grid.aligned(32633, b, r, (0.0, 0.0), yres=yr)
    back = Grid.from_stac(g.to_stac())
    assert back.epsg == g.epsg and back.shape == g.shape and back.res_xy == g.res_xy
    assert all(math.isclose(a, c, abs_tol=1e-6) for a, c in zip(back.bounds, g.bounds))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_common_grid_of_crops_keeps_the_native_pixel_grid(data):
    """Crops of one archive grid (30 m, anchor 15/15) compile onto that same pixel grid: no resampling."""
    native = Grid(32632, (600015.0, 5000015.0, 600015.0 + 30 * 7000, 5000015.0 + 30 * 7000), 30.0)
    crops = []
    for _ in range(data.draw(st.integers(1, 5))):
        c0, r0 = data.draw(st.integers(0, 6000)), data.draw(st.integers(0, 6000))
        w, h = data.draw(st.integers(1, 900)), data.draw(st.integers(1, 900))
        l, t = native.bounds[0] + 30 * c0, native.bounds[3] - 30 * r0
        crops.append(Grid(32632, (l, t - 30 * h, l + 30 * w, t), 30.0))
    g = common_grid(crops, [True] * len(crops))
    assert g.anchor == native.anchor and g.res_xy == (30.0, 30.0)
    u = union_bounds(crops, 32632)
    assert all(math.isclose(a, c, abs_tol=1e-6) for a, c in zip(g.bounds, u))
