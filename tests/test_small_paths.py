"""Small stacks skip numba: the numpy forms of bestof/median (`composite.small`) and of the fused
calibration (`cube.fuse`, small=True) give the compiled kernels' bits, and the plain-loop
references' values, on random stacks with NaN gaps, ties, equal qualities and several tiles per day."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imalys_stac.composite import reduce as R
from imalys_stac.composite import reduce_stack, reference, small
from imalys_stac.cube import fuse


def _stack(seed: int, T: int, B: int, Y: int, X: int, nan_frac: float, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ties:
        s = rng.integers(0, 4, size=(T, B, Y, X)).astype(np.float32) / np.float32(4)
    else:
        s = rng.normal(0.2, 0.1, size=(T, B, Y, X)).astype(np.float32)
    s[rng.random(s.shape) < nan_frac] = np.nan
    s[rng.random((T, 1, Y, X)).repeat(B, axis=1) < nan_frac / 2] = np.nan
    s[:, :, 0, 0] = np.nan
    return s


def _bits_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


stacks = st.builds(_stack, seed=st.integers(0, 10_000), T=st.sampled_from([1, 2, 3, 4, 5, 8, 12, 35]),
                   B=st.integers(1, 3), Y=st.integers(2, 7), X=st.integers(2, 9),
                   nan_frac=st.sampled_from([0.0, 0.3, 0.7, 0.95]), ties=st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks, threshold=st.sampled_from([0.0, 0.3, 0.5, 1.0]), use_quality=st.booleans(),
       q=st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.6, 1.0]), min_size=35, max_size=35))
def test_numpy_median_and_bestof_are_the_kernels_bits_and_the_reference(stack, threshold, use_quality, q):
    from imalys_stac.composite import kernels as K

    T = stack.shape[0]
    quality = np.array(q[:T], dtype=np.float64)
    block = np.ascontiguousarray(stack)
    for want_source in (False, True):
        out, src = small.median_block(block, quality, threshold, use_quality, want_source)
        k_out, k_src = K.median_block(block, quality, threshold, use_quality, want_source)
        _bits_equal(out, k_out)
        assert src.shape == k_src.shape
        if want_source:
            _bits_equal(src, k_src)
    want = reference.bestof(stack, quality, threshold) if use_quality else reference.median(stack)
    np.testing.assert_array_equal(out, want)
    want_src = reference.bestof_source(stack, quality, threshold) if use_quality else reference.median_source(stack)
    np.testing.assert_array_equal(src, want_src)
    _bits_equal(small.count_any(block), K.count_any(block))


def test_huge_values_and_infinities_as_the_kernels():
    """Odd counts take the middle value (no (v + v) / 2 overflow); real ±inf stay valid values."""
    from imalys_stac.composite import kernels as K

    big = np.finfo(np.float32).max
    block = np.full((5, 1, 1, 6), np.nan, np.float32)
    block[:3, 0, 0, 0] = big
    block[:2, 0, 0, 1] = big  # even: inf, as the kernels
    block[:3, 0, 0, 2] = [np.inf, -np.inf, 1.0]
    block[:2, 0, 0, 3] = [np.inf, -np.inf]
    block[:4, 0, 0, 4] = [np.inf, np.inf, 2.0, 3.0]
    block[0, 0, 0, 5] = -np.inf
    quality = np.array([1.0, 0.9, 0.2, 0.5, 0.5])
    for use_quality in (False, True):
        _bits_equal(small.median_block(block, quality, 0.5, use_quality, True)[0],
                    K.median_block(block, quality, 0.5, use_quality, True)[0])


def test_numpy_form_refuses_what_only_the_kernels_handle():
    block = np.zeros((2, 1, 1, 1), np.float32)
    with pytest.raises(ValueError):
        small.median_block(block, np.array([1.0, np.nan]), 0.5, True, False)
    with pytest.raises(ValueError):
        small.median_block(block, np.array([1.0, 0.5]), 1.5, True, False)


def _cube(stack: np.ndarray, quality: np.ndarray) -> xr.DataArray:
    T, B, Y, X = stack.shape
    return xr.DataArray(stack, dims=("time", "band", "y", "x"),
                        coords={"band": [f"B{i}" for i in range(B)], "y": np.arange(Y) * -30.0,
                                "x": np.arange(X) * 30.0, "quality": ("time", quality)})


@pytest.mark.parametrize("method", ["bestof", "median"])
@pytest.mark.parametrize("extra", [{}, {"count": True, "source": True}])
def test_reduce_stack_small_and_compiled_paths_agree(monkeypatch, method, extra):
    stack = _stack(5, 6, 3, 17, 23, 0.5, False)
    quality = np.array([0.9, 0.2, 0.5, 0.5, 0.05, 0.7])
    picked = []
    real = R._kernel
    monkeypatch.setattr(R, "_kernel", lambda *a: picked.append(real(*a)) or picked[-1])
    got = reduce_stack(_cube(stack, quality), method, **extra).values
    assert picked[-1] is small.KERNELS[method]
    monkeypatch.setattr(small, "SMALL_VALUES", -1)  # every stack to the compiled kernels
    compiled = reduce_stack(_cube(stack, quality), method, **extra).values
    assert picked[-1] is not small.KERNELS[method]
    _bits_equal(got, compiled)


def test_a_reducer_registered_under_a_builtin_name_is_not_replaced(monkeypatch):
    """The numpy form stands in only for the built-in kernel, not for a plugin's."""
    import dataclasses

    from imalys_stac import registry

    calls = []

    def plugin(block, quality, threshold, want_source):
        calls.append(block.shape)
        return np.zeros(block.shape[1:], np.float32), None, None

    entry = dataclasses.replace(registry.REDUCERS["median"], kernel=plugin)
    monkeypatch.setitem(registry.REDUCERS, "median", entry)
    out = reduce_stack(_cube(_stack(1, 3, 2, 4, 5, 0.2, False), np.ones(3)), "median").values
    assert calls and not out.any()


# ------------------------------------------------------------------------------- fused calibration
def _fuse_reference(stack, nb, group_of, factors, offsets, tables, table_of, nodata, ngroups):
    """Pixel by pixel: each group takes its first tile whose QA is usable and whose DN is not
    nodata, value = float32(DN·factor + offset) in float64; NaN where none."""
    n, _, ny, nx = stack.shape
    out = np.full((ngroups, nb, ny, nx), np.nan, np.float32)
    for g in range(ngroups):
        tiles = [i for i in range(n) if group_of[i] == g]
        for b in range(nb):
            for y in range(ny):
                for x in range(nx):
                    for i in tiles:
                        v = int(stack[i, b, y, x])
                        if tables[table_of[g]][stack[i, nb, y, x]] and v != nodata[b]:
                            out[g, b, y, x] = np.float32(v * float(factors[g, b]) + float(offsets[g, b]))
                            break
    return out


@pytest.mark.parametrize("seed", range(4))
def test_numpy_fuse_is_the_kernels_bits_and_the_reference(seed):
    from imalys_stac.cube.fuse_kernels import _fuse  # noqa: F401  (the compiled path is what is compared)

    rng = np.random.default_rng(seed)
    nb, ny, nx = 3, 9, 11
    group_of = np.array([0, 0, 1, 3, 3, 3], np.int64)  # group 2 has no tile: all NaN
    ngroups = 4
    stack = rng.integers(0, 40, (len(group_of), nb + 1, ny, nx)).astype(np.uint16)
    stack[:, :nb] = rng.integers(0, 65535, (len(group_of), nb, ny, nx))
    nodata = np.array([0.0, 7.0, 65535.0])
    stack[:, 1][rng.random((len(group_of), ny, nx)) < 0.2] = 7
    stack[:, 0][rng.random((len(group_of), ny, nx)) < 0.2] = 0
    tables = rng.random((2, 65536)) < 0.5
    table_of = np.array([0, 1, 0, 1], np.int64)
    factors = rng.normal(2.75e-5, 1e-6, (ngroups, nb))
    offsets = rng.normal(-0.2, 0.01, (ngroups, nb))
    kw = dict(group_of=group_of, factors=factors, offsets=offsets, tables=tables, table_of=table_of, nodata=nodata,
              ngroups=ngroups)
    got = fuse.fuse_stack(stack, nb, small=True, **kw)
    compiled = fuse.fuse_stack(stack, nb, small=False, **kw)
    _bits_equal(got, compiled)
    np.testing.assert_array_equal(got, _fuse_reference(stack, nb, **kw))
    assert np.isnan(got[2]).all()


def test_a_distributed_cluster_gets_the_compiled_kernels(monkeypatch):
    """The numpy forms save a process's numba start-up; a cluster's workers pay it once in their life."""
    from imalys_stac.runtime import client

    stack = _stack(2, 3, 2, 5, 6, 0.3, False)
    kernel = R._kernel(R.REDUCERS["bestof"], "bestof", stack.size, np.ones(3), 0.5)
    assert kernel is small.KERNELS["bestof"]
    monkeypatch.setattr(client, "active_client", lambda: object())
    kernel = R._kernel(R.REDUCERS["bestof"], "bestof", stack.size, np.ones(3), 0.5)
    assert kernel is not small.KERNELS["bestof"]
