"""Compositing kernels vs the plain-loop reference, on random stacks with random NaN patterns."""

from __future__ import annotations

import itertools
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor these tests use)
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imalys_stac.composite import METHODS, reduce_stack, reference
from imalys_stac.composite import kernels as K
from imalys_stac.composite import reduce as R

EXACT = {"bestof", "median", "medoid", "difference", "count", "ndvi", "nirv", "evi"}
BAND_ARGS = dict(red=1, nir=2, blue=3)


def make_stack(seed: int, T: int, B: int, Y: int, X: int, nan_frac: float, ties: bool) -> np.ndarray:
    """Random float32 stack with random NaNs, some all-NaN pixels and band-only gaps."""
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: exercises equal values in sorts and medoid ties
        s = rng.integers(0, 4, size=(T, B, Y, X)).astype(np.float32) / np.float32(4)
    else:
        s = rng.normal(0.2, 0.1, size=(T, B, Y, X)).astype(np.float32)
    s[rng.random(s.shape) < nan_frac] = np.nan  # per band-pixel gaps
    s[rng.random((T, 1, Y, X)).repeat(B, axis=1) < nan_frac / 2] = np.nan  # whole-acquisition gaps
    if Y * X > 1:
        s[:, :, 0, 0] = np.nan  # always one all-NaN pixel
    return s


def expected(stack: np.ndarray, method: str, quality: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    if method == "bestof":
        return reference.bestof(stack, quality, threshold)
    if method in ("ndvi", "nirv"):
        return getattr(reference, method)(stack, 1, 2)
    if method == "evi":
        return reference.evi(stack, 1, 2, 3)
    return getattr(reference, method)(stack)


def expected_source(stack, method, quality, threshold=0.5):
    if method == "bestof":
        return reference.bestof_source(stack, quality, threshold)
    if method == "median":
        return reference.median_source(stack)
    if method == "medoid":
        return reference.medoid_source(stack)
    if method in ("ndvi", "nirv", "evi"):
        return reference.index_source(stack, method, 1, 2, 3)
    return np.full(stack.shape[2:], np.nan, np.float32)


def as_cube(stack: np.ndarray, quality: np.ndarray | None = None, chunks=None) -> xr.DataArray:
    T, B, Y, X = stack.shape
    data = da.from_array(stack, chunks=chunks) if chunks else stack
    coords = {"band": [f"B{i + 1}" for i in range(B)], "y": np.arange(Y) * -30.0, "x": np.arange(X) * 30.0}
    if quality is not None:
        coords["quality"] = ("time", quality)
    return xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords)


def check_equal(got: np.ndarray, want: np.ndarray, exact: bool) -> None:
    assert got.shape == want.shape
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- sorting network
@pytest.mark.parametrize("n", range(0, 13))
def test_sorting_network_zero_one_principle(n):
    """A comparator network sorts everything iff it sorts every 0/1 input."""
    pairs = K.sorting_network(n)
    for bits in itertools.product((0, 1), repeat=n):
        a = list(bits)
        for i, j in pairs:
            a[i], a[j] = min(a[i], a[j]), max(a[i], a[j])
        assert a == sorted(bits)


@pytest.mark.parametrize("n", [13, 17, 31, 33, 64, 70])
def test_sorting_network_random(n):
    rng = np.random.default_rng(n)
    for _ in range(200):
        a = list(rng.integers(0, 5, n))
        want = sorted(a)
        for i, j in K.sorting_network(n):
            a[i], a[j] = min(a[i], a[j]), max(a[i], a[j])
        assert a == want


# --------------------------------------------------------------------------- against the reference
stacks = st.builds(
    lambda seed, T, B, Y, X, nan_frac, ties: (make_stack(seed, T, B, Y, X, nan_frac, ties), seed),
    seed=st.integers(0, 2**32 - 1),
    T=st.integers(0, 12),
    B=st.integers(3, 6),  # the indices need bands 1..3
    Y=st.integers(1, 4),
    X=st.integers(1, 5),
    nan_frac=st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]),
    ties=st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stacks, method=st.sampled_from(METHODS))
def test_methods_match_reference(data, method):
    stack, seed = data
    T = stack.shape[0]
    quality = np.random.default_rng(seed + 1).choice([0.1, 0.3, 0.5, 0.6, 1.0], size=T)
    out = reduce_stack(as_cube(stack, quality), method, count=True, source=True, **BAND_ARGS)
    got = out.values
    nres = got.shape[0] - 2
    check_equal(got[:nres], expected(stack, method, quality), method in EXACT)
    check_equal(got[nres], reference.used_count(stack, method, **BAND_ARGS), True)
    check_equal(got[nres + 1], expected_source(stack, method, quality), True)


@settings(max_examples=25, deadline=None)
@given(data=stacks, method=st.sampled_from(["bestof", "median", "mean", "variance", "medoid"]))
def test_flat_matches_reference(data, method):
    stack, seed = data
    quality = np.linspace(1.0, 0.2, stack.shape[0])
    got = reduce_stack(as_cube(stack, quality), method, flat=True).values
    check_equal(got, reference.flat(expected(stack, method, quality)), False)


@settings(max_examples=30, deadline=None)
@given(data=stacks, threshold=st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]))
def test_bestof_thresholds(data, threshold):
    stack, seed = data
    quality = np.random.default_rng(seed).random(stack.shape[0])
    out = reduce_stack(as_cube(stack), "bestof", quality=quality, threshold=threshold, source=True).values
    check_equal(out[:-1], reference.bestof(stack, quality, threshold), True)
    check_equal(out[-1], reference.bestof_source(stack, quality, threshold), True)


def test_median_equals_nanmedian_larger():
    stack = make_stack(7, 9, 4, 64, 96, 0.3, False)
    got = reduce_stack(as_cube(stack), "median").values
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(stack, axis=0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("T", [K.MAX_UNROLLED, K.MAX_UNROLLED + 9])
def test_many_times_unrolled_limit_and_generic_path(T):
    stack = make_stack(T, T, 2, 8, 16, 0.4, T % 2 == 0)
    got = reduce_stack(as_cube(stack), "median").values
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(stack, axis=0)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- documented rules
def one_pixel(values_per_time, quality=None) -> xr.DataArray:
    s = np.array(values_per_time, dtype=np.float32).reshape(-1, 1, 1, 1)
    return as_cube(s, None if quality is None else np.asarray(quality, float))


def test_even_count_median_is_mean_of_middle_two():
    cube = one_pixel([10.0, 1.0, np.nan, 3.0, 2.0])
    assert reduce_stack(cube, "median").values.item() == 2.5
    assert reduce_stack(cube, "bestof", quality=[1, 1, 1, 1, 1]).values.item() == 2.5


@pytest.mark.parametrize(
    "quality, want, src",
    [
        ((0.5, 1.0), 3.0, np.nan),  # exactly half: not "less than half" → mean
        ((1.0, 0.5), 3.0, np.nan),
        ((0.49, 1.0), 4.0, 2.0),  # lower below half → the better (time 2) one
        ((1.0, 0.49), 2.0, 0.0),
        ((0.0, 0.0), 3.0, np.nan),
    ],
)
def test_bestof_two_values_threshold_boundary(quality, want, src):
    cube = one_pixel([2.0, np.nan, 4.0])
    q = (quality[0], 1.0, quality[1])
    out = reduce_stack(cube, "bestof", quality=q, threshold=0.5, source=True).values
    assert out[0].item() == want
    np.testing.assert_array_equal(out[1, 0, 0], np.float32(src))


def test_bestof_one_none_and_three():
    assert reduce_stack(one_pixel([np.nan, 5.0, np.nan]), "bestof", quality=[1, 1, 1]).values.item() == 5.0
    assert np.isnan(reduce_stack(one_pixel([np.nan, np.nan]), "bestof", quality=[1, 1]).values.item())
    # Three values → median even when qualities differ a lot.
    assert reduce_stack(one_pixel([1.0, 9.0, 2.0]), "bestof", quality=[0.01, 1, 0.01]).values.item() == 2.0


def test_bestof_validity_is_per_band():
    s = np.array([[1.0, np.nan], [3.0, 7.0], [5.0, np.nan]], dtype=np.float32).reshape(3, 2, 1, 1)
    out = reduce_stack(as_cube(s), "bestof", quality=[1, 1, 1], count=True).values[:, 0, 0]
    np.testing.assert_array_equal(out, [3.0, 7.0, 3.0])


def test_medoid_output_was_observed():
    stack = make_stack(3, 7, 5, 6, 6, 0.3, False)
    out = reduce_stack(as_cube(stack), "medoid", source=True).values
    src = out[-1]
    for y, x in np.ndindex(src.shape):
        if np.isnan(src[y, x]):
            assert np.isnan(out[:-1, y, x]).all()
        else:
            np.testing.assert_array_equal(out[:-1, y, x], stack[int(src[y, x]), :, y, x])


# --------------------------------------------------------------------------- dask behaviour
def _forbid(*args, **kwargs):
    raise AssertionError("reduce_stack computed something at call time")


@pytest.mark.parametrize("method", METHODS)
def test_lazy_in_lazy_out(method):
    stack = make_stack(1, 5, 3, 10, 12, 0.3, False)
    cube = as_cube(stack, np.linspace(1, 0.5, 5), chunks=(1, 1, 5, 6))
    with dask.config.set(scheduler=_forbid):
        out = reduce_stack(cube, method, count=True, source=True, **BAND_ARGS)
    assert isinstance(out.data, da.Array)
    assert out.dims == ("band", "y", "x")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunks", [(1, 1, 4, 5), (3, 2, 7, 3), (-1, -1, -1, -1)])
def test_dask_equals_numpy(method, chunks):
    stack = make_stack(11, 7, 4, 13, 11, 0.35, method == "medoid")
    quality = np.array([1, 0.2, 0.9, 0.4, 0.45, 1, 0.05])
    for kw in (dict(), dict(count=True, source=True), dict(flat=True)):
        want = reduce_stack(as_cube(stack, quality), method, **kw, **BAND_ARGS)
        got = reduce_stack(as_cube(stack, quality, chunks=chunks), method, **kw, **BAND_ARGS)
        assert isinstance(got.data, da.Array)
        np.testing.assert_array_equal(got.values, want.values)
        assert list(got.band.values) == list(want.band.values)


def test_blocks_shrink_to_block_bytes(monkeypatch):
    """Many times: spatial chunks are split so one block stays under BLOCK_BYTES."""
    monkeypatch.setattr(R, "BLOCK_BYTES", 12 * 2 * 32 * 32 * 4)
    stack = make_stack(5, 12, 2, 64, 64, 0.3, False)
    cube = as_cube(stack, np.ones(12), chunks=(1, 1, 64, 64))
    out = reduce_stack(cube, "bestof", count=True)
    assert max(out.data.chunks[1]) * max(out.data.chunks[2]) <= 32 * 32
    np.testing.assert_array_equal(out.values[:-1], reference.bestof(stack, np.ones(12)))


# --------------------------------------------------------------------------- coordinates and errors
def test_coords_attrs_and_crs_preserved():
    pytest.importorskip("rioxarray")
    stack = make_stack(2, 4, 3, 5, 6, 0.2, False)
    cube = as_cube(stack, np.ones(4), chunks=(1, 1, 5, 6))
    cube = cube.assign_coords(common_name=("band", ["blue", "green", "red"]),
                              time=np.arange(4), epsg=32632)
    cube.attrs["units"] = "reflectance"
    cube = cube.rio.write_crs(32632)
    out = reduce_stack(cube, "bestof")
    assert out.rio.crs.to_epsg() == 32632
    assert out.rio.transform() == cube.rio.transform()
    np.testing.assert_array_equal(out.x, cube.x)
    np.testing.assert_array_equal(out.y, cube.y)
    assert list(out.band.values) == ["B1", "B2", "B3"]
    assert list(out.common_name.values) == ["blue", "green", "red"]
    assert out.attrs["units"] == "reflectance" and int(out.epsg) == 32632
    assert "time" not in out.coords and "quality" not in out.coords
    extra = reduce_stack(cube, "ndvi", red=3, nir=2, count=True, source=True)
    assert list(extra.band.values) == ["ndvi", "count", "source"]
    assert extra.rio.crs.to_epsg() == 32632
    assert list(reduce_stack(cube, "median", flat=True).band.values) == ["median"]


def test_dims_in_other_order_are_accepted():
    stack = make_stack(4, 5, 2, 3, 4, 0.3, False)
    cube = as_cube(stack).transpose("band", "y", "time", "x")
    np.testing.assert_array_equal(reduce_stack(cube, "median").values, reference.median(stack))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="nope"), "accepted: bestof"),
        (dict(method="bestof"), "quality"),
        (dict(method="bestof", quality=[1, 2]), "one value per time"),
        (dict(method="bestof", quality=[1, np.nan, 1]), "finite"),
        (dict(method="median", threshold=1.5), "between 0 and 1"),
        (dict(method="ndvi", nir=2), "'red' band number"),
        (dict(method="ndvi", red=0, nir=2), "1-based"),
        (dict(method="evi", red=1, nir=2), "'blue'"),
    ],
)
def test_errors_are_clear(kwargs, match):
    cube = as_cube(make_stack(0, 3, 2, 2, 2, 0.0, False))
    method = kwargs.pop("method")
    with pytest.raises(ValueError, match=match):
        reduce_stack(cube, method, **kwargs)


def test_method_names_case_insensitive():
    cube = as_cube(make_stack(0, 3, 2, 2, 2, 0.0, False))
    assert reduce_stack(cube, "NDVI", red=1, nir=2).band.values.tolist() == ["ndvi"]


# --------------------------------------------------------------------------- fused bestof kernel
@settings(max_examples=40, deadline=None)
@given(q=st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.4, 0.5, 0.8, 1.0]), min_size=1, max_size=12),
       threshold=st.sampled_from([0.0, 0.25, 0.5, 0.8, 1.0]))
def test_quality_order_cut_is_the_pair_rule(q, threshold):
    """In reading order, position j beats nothing and p wins over j iff j >= cut[p] iff the rule says so."""
    quality = np.array(q, dtype=np.float64)
    order, cut = K._quality_order(quality, threshold)
    assert sorted(order.tolist()) == list(range(len(q)))
    assert np.all(np.diff(quality[order]) <= 0)
    for p in range(len(q)):
        for j in range(p + 1, len(q)):
            a, b = sorted((int(order[p]), int(order[j])))
            _, pick = reference._bestof_pick([a, b], [1.0, 2.0], quality, threshold)
            assert (j >= cut[p]) == (pick is not None)
            if pick is not None:
                assert pick == order[p]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stacks, threshold=st.sampled_from([0.0, 0.3, 0.5, 1.0]), use_quality=st.booleans(),
       q=st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.6, 1.0]), min_size=12, max_size=12))
def test_fused_kernel_equals_two_pass_and_reference(data, threshold, use_quality, q):
    """The one-pass generated kernel vs median + select_few vs the reference, values and source."""
    stack, _ = data
    T = stack.shape[0]
    quality = np.array(q[:T], dtype=np.float64)
    block = np.ascontiguousarray(stack)
    out, src = K.median_block(block, quality, threshold, use_quality, True)
    med, cnt = K.median_counts(block)
    src2 = K.select_few(block, med, cnt, quality, threshold, use_quality, True)
    np.testing.assert_array_equal(out, med)
    np.testing.assert_array_equal(src, src2)
    if use_quality:
        check_equal(out, reference.bestof(stack, quality, threshold), True)
        check_equal(src, reference.bestof_source(stack, quality, threshold), True)
    else:
        check_equal(out, reference.median(stack), True)
        check_equal(src, reference.median_source(stack), True)
    out_nosrc, none = K.median_block(block, quality, threshold, use_quality, False)
    np.testing.assert_array_equal(out_nosrc, out)
    assert none.size == 0


def test_bestof_generic_path_beyond_unrolled_limit():
    T = K.MAX_UNROLLED + 3
    stack = make_stack(3, T, 2, 6, 7, 0.9, False)
    quality = np.random.default_rng(3).choice([0.1, 0.3, 0.6, 1.0], size=T)
    out = reduce_stack(as_cube(stack), "bestof", quality=quality, source=True).values
    check_equal(out[:-1], reference.bestof(stack, quality), True)
    check_equal(out[-1], reference.bestof_source(stack, quality), True)


@pytest.mark.parametrize("threshold", [1.5, -0.5])
def test_kernel_outside_documented_threshold_follows_reference(threshold):
    """median_block called directly with a threshold reduce_stack would reject: two-pass fallback."""
    stack = make_stack(8, 6, 2, 5, 5, 0.6, False)
    quality = np.array([1.0, 0.2, 0.9, 0.4, 0.45, 0.05])
    out, src = K.median_block(np.ascontiguousarray(stack), quality, threshold, True, True)
    check_equal(out, reference.bestof(stack, quality, threshold), True)
    check_equal(src, reference.bestof_source(stack, quality, threshold), True)


@pytest.mark.parametrize("T", [5, K.MAX_UNROLLED + 3])
def test_median_of_huge_values_does_not_overflow(T):
    """An odd count takes the middle value itself (as ``numpy.median`` of the valid values),
    not (v + v) / 2 → inf (``numpy.nanmedian`` along a short axis does overflow there)."""
    big = np.finfo(np.float32).max
    stack = np.full((T, 1, 1, 3), np.nan, np.float32)
    stack[:3, 0, 0, 0] = [big, big * 0.75, -big]  # 3 valid: middle 0.75·max
    stack[1, 0, 0, 1] = big  # 1 valid
    stack[:2, 0, 0, 2] = [big, big]  # 2 valid: the mean overflows in numpy too
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.array([np.median(v[~np.isnan(v)]) for v in stack[:, 0, 0, :].T],
                        np.float32).reshape(1, 1, 3)
    got = reduce_stack(as_cube(stack), "median").values
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[0, 0], [big * np.float32(0.75), big, np.inf])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(reference.median(stack), want)
    best = reduce_stack(as_cube(stack), "bestof", quality=np.ones(T)).values
    np.testing.assert_array_equal(best, want)
