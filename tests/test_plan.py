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


# --------------------------------------------------------------------------- acquisitions, without a chain file

def _flags_clear(code: int) -> bool:
    """USGS QA_PIXEL by the book: not fill (bit 0), none of dilated cloud, cirrus, cloud, shadow (bits 1-4)."""
    return not (code & 1) and not any((code >> b) & 1 for b in (1, 2, 3, 4))


def test_plan_acquisitions_and_coverage_match_the_scene_truth(synthetic_archives):
    import dataclasses

    import dask
    import pytest

    from imalys_stac.cube.plan import Recipe, coverage_graph, coverages, plan_acquisitions, product_name
    from imalys_stac.stac import item_from_archive

    items = [item_from_archive(a) for a in synthetic_archives.archives]
    plan = plan_acquisitions(items, Recipe(bands=("_B4", "_B5")), frame=None)
    assert [a.group.name for a in plan] == [product_name([it]) for it in sorted(items, key=lambda i: i.datetime)]
    for a, item in zip(plan, sorted(items, key=lambda i: i.datetime)):
        assert a.group.keys == ["red", "nir08"] and a.group.rule == "flags" and a.group.resampling == "nearest"
        assert a.grid.epsg == item.properties["proj:epsg"] and a.grid.shape == (64, 64)
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.group.quality = 1.0  # type: ignore[misc]
    covs = coverages(dask.compute(*coverage_graph(plan, "flags")))
    for cov, scene in zip(covs, synthetic_archives.scenes):
        qa = scene.truth["qa"]
        present = sum(1 for v in qa.ravel() if not (int(v) & 1))
        clear = sum(1 for v in qa.ravel() if _flags_clear(int(v)))
        assert (cov.present, cov.clear, cov.total) == (present, clear, qa.size)
        assert cov.quality == clear / present
    # mask = false keeps disturbed pixels in the product but the count still uses the rule
    unmasked = plan_acquisitions(items, Recipe(bands=("_B4",), mask=False), frame=None)
    assert {a.group.rule for a in unmasked} == {None}


def test_plan_refuses_unknown_bands_naming_the_parameter(synthetic_archives):
    import pytest

    from imalys_stac.cube.plan import PlanError, Recipe, plan_acquisitions
    from imalys_stac.stac import item_from_archive

    items = [item_from_archive(synthetic_archives.archives[0])]
    with pytest.raises(PlanError) as err:
        plan_acquisitions(items, Recipe(bands=("_B42",)), frame=None)
    assert err.value.parameter == "bands" and "_B42" in str(err.value)


@given(present=st.integers(0, 100), clear_share=st.floats(0, 1), total=st.integers(1, 100),
       cover=st.one_of(st.none(), st.floats(0, 1)), quality=st.one_of(st.none(), st.floats(0, 1)))
def test_coverage_rejection_follows_the_limits(present, clear_share, total, cover, quality):
    from imalys_stac.cube.plan import Coverage

    present = min(present, total)
    cov = Coverage(present, int(present * clear_share), total)
    why = cov.rejection(cover=cover, quality=quality)
    if present == 0:
        assert why == "no data"
    elif cover is not None and present / total < cover:
        assert why == "cover"
    elif quality is not None and cov.clear / present < quality:
        assert why == "quality"
    else:
        assert why is None
