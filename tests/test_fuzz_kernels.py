"""Every QA value, every NaN pattern, every tie: the compiled kernels against plain references.

* mask rules: all 65536 QA_PIXEL codes under fill-only, ``flags`` and ``confidence``, and all
  Sentinel-2 SCL codes — the USGS/ESA bit meanings written out per value (independent
  reference) vs the lookup tables built from the provider rules (``cube.quality``) as the numba
  fused loader (``cube.fuse``) applies them and as the import quality count
  (``cube.counts.quality_counts``) counts them — pixel for pixel and count for count;
* the fused calibrate-mask-merge kernel vs a per-pixel loop, for any QA values and tile order;
* the compositing kernels (``composite.kernels`` via ``reduce_stack``) vs ``composite.reference``
  exhaustively over small value/NaN patterns with ties, and by hypothesis over explicit NaN masks,
  tie-heavy values, signed zeros, huge values and tied qualities. ``tests/test_composite.py``
  covers random normal stacks; these add the edge values and patterns it does not draw.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imalys_stac.composite import METHODS, reduce_stack, reference
from imalys_stac.cube import counts, fuse
from imalys_stac.cube import load as L
from imalys_stac.providers.landsat import qa as Q
from imalys_stac.registry import provider

QA_PIXEL = provider("landsat").quality
SCL = provider("sentinel-2").quality
from tests.test_composite import BAND_ARGS, EXACT, as_cube, check_equal, expected, expected_source

ALL_CODES = np.arange(65536, dtype=np.uint16)


# --------------------------------------------------------------------------- QA_PIXEL, by the book

def _spec_usable(code: int, rule: str | None) -> bool:
    """USGS L8-9 C2 L2 QA_PIXEL (Science Product Guide table 6-3), one value, plain integers."""
    bits = [(code >> b) & 1 for b in range(16)]
    if bits[0]:  # fill
        return False
    if rule is None:
        return True
    if rule == "flags":  # dilated cloud, cirrus, cloud, cloud shadow
        return not (bits[1] or bits[2] or bits[3] or bits[4])
    pairs = {"cloud": (bits[8], bits[9]), "shadow": (bits[10], bits[11]), "cirrus": (bits[14], bits[15])}
    return not any(lo == 1 and hi == 1 for lo, hi in pairs.values())  # "11" = high confidence


def _kernel_usable(codes: np.ndarray, band, rule: str | None) -> np.ndarray:
    """Which pixels the fused loader keeps: one tile of these QA codes, DN 1000 everywhere."""
    tables, table_of = fuse.group_tables([band.table(rule)])
    out = fuse.fuse_block(np.full((1, 1) + codes.shape, 1000, np.uint16), codes[None], group_of=np.array([0]),
                          factors=np.ones((1, 1)), offsets=np.zeros((1, 1)), tables=tables, table_of=table_of,
                          nodata=np.array([0.0]), ngroups=1)
    return ~np.isnan(out[0, 0])


def _quality_counts(tiles: np.ndarray, band, rule: str | None, monkeypatch, region=None) -> tuple[int, int]:
    """(present, clear) as the import counts them (``cube.counts.quality_counts``), for QA tiles
    (tile, y, x) of one acquisition, read in several dask blocks."""
    import datetime as dt

    import dask.array as da
    import pystac

    def fake_stack(items, keys, grid, resampling, chunksize, dtype="float32", fill=np.nan, **kwargs):
        data = da.from_array(tiles[:, None].astype(dtype), chunks=(1, 1, 64, 64))
        return xr.DataArray(data, dims=("time", "band", "y", "x"), coords={"band": keys})

    monkeypatch.setattr(L, "_stack", fake_stack)
    items = [pystac.Item(f"tile{i}", None, None, dt.datetime(2022, 5, 15), {}) for i in range(len(tiles))]
    for it in items:
        it.add_asset(band.asset, pystac.Asset("qa.tif"))
    group = L.SceneGroup("acquisition", items, ["red"], None, rule, "nearest")
    present, clear = counts.quality_counts(group, None, rule, region=region)
    return int(present.compute()), int(clear.compute())


@pytest.mark.parametrize("rule", [None, "flags", "confidence"])
def test_every_qa_pixel_value_same_verdict_in_spec_numpy_kernel_and_quality_count(rule, monkeypatch):
    want = np.array([_spec_usable(int(c), rule) for c in ALL_CODES])
    codes = ALL_CODES.reshape(256, 256)
    table = QA_PIXEL.table(rule)
    numpy_rule = Q.MaskRule(rule or "flags")
    numpy_rule = ~numpy_rule.fill(ALL_CODES) if rule is None else numpy_rule.valid(ALL_CODES)
    numpy_float = QA_PIXEL.valid(ALL_CODES.astype(np.float32), rule)
    kernel = _kernel_usable(codes, QA_PIXEL, rule).ravel()
    for name, got in (("lookup table", table), ("providers.landsat.qa numpy rule", numpy_rule),
                      ("table on float32", numpy_float), ("cube.fuse kernel", kernel)):
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"{name} disagrees with the USGS bits for rule {rule}: QA values {bad[:10].tolist()}"
    # the quality count is the share of the pixels the composite will use: both count alike
    present, clear = _quality_counts(codes[None], QA_PIXEL, rule, monkeypatch)
    assert (present, clear) == (int((ALL_CODES & 1 == 0).sum()), int(want.sum()))
    if rule is not None:  # both rules are stricter than fill-only and the counts are what the bits say
        assert not np.any(kernel & ~_kernel_usable(codes, QA_PIXEL, None).ravel())
    assert int(want.sum()) == {None: 32768, "flags": 2048, "confidence": 32768 * 27 // 64}[rule]


def test_qa_nan_is_fill_everywhere():
    """A NaN in a float QA cube (outside every tile) is fill, never usable, under every rule."""
    values = np.array([np.nan, 0, 1, np.nan], dtype=np.float32)
    for rule in (None, "flags", "confidence"):
        assert QA_PIXEL.valid(values, rule).tolist() == [False, True, False, False]
        mask = Q.MaskRule(rule or "flags")
        assert mask.fill(values).tolist() == [True, False, True, True]
        assert not mask.disturbed(values)[[0, 3]].any()


def test_encode_round_trips_through_every_rule():
    """``qa.encode`` (what the synthetic archives draw) reads back as intended for every flag set."""
    names = ("dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow", "water")
    for flags in itertools.product((False, True), repeat=len(names)):
        for conf in itertools.product(range(4), repeat=3):
            kw = dict(zip(names, flags))
            code = Q.encode(**kw, cloud_conf=conf[0], shadow_conf=conf[1], cirrus_conf=conf[2])
            disturbed_flags = any(kw[n] for n in ("dilated_cloud", "cirrus", "cloud", "cloud_shadow"))
            assert _spec_usable(code, "flags") == (not disturbed_flags)
            assert _spec_usable(code, "confidence") == (3 not in conf)
            assert bool(Q.MaskRule("flags").valid(np.uint16(code))) == (not disturbed_flags)
            assert bool(Q.MaskRule("confidence").valid(np.uint16(code))) == (3 not in conf)


# --------------------------------------------------------------------------- Sentinel-2 SCL

def _spec_scl(code: int, rule: str | None) -> bool:
    """ESA L2A scene classification: 0 no data; 1 saturated/defective, 3 cloud shadow, 8/9 cloud
    medium/high probability, 10 thin cirrus are disturbed; every other class is usable."""
    if code == 0:
        return False
    return rule is None or code not in (1, 3, 8, 9, 10)


@pytest.mark.parametrize("rule", [None, "flags"])
def test_every_scl_value_same_verdict(rule, monkeypatch):
    want = np.array([_spec_scl(int(c), rule) for c in range(256)])
    codes = np.arange(256, dtype=np.uint16).reshape(16, 16)
    got = {
        "lookup table": SCL.table(rule)[:256],
        "table on float32": SCL.valid(codes.ravel().astype(np.float32), rule),
        "cube.fuse kernel": _kernel_usable(codes, SCL, rule).ravel(),
    }
    for name, values in got.items():
        bad = np.flatnonzero(values != want)
        assert bad.size == 0, f"{name} disagrees with the SCL classes (rule {rule}): values {bad[:10].tolist()}"
    assert int(want.sum()) == (255 if rule is None else 250)
    # a byte band never holds codes above 255: they are not data
    assert not SCL.table(rule)[256:].any()
    assert _quality_counts(codes[None], SCL, rule, monkeypatch) == (255, int(want.sum()))


# --------------------------------------------------------------------------- same-day tiles: quality count vs pixels

def test_same_day_tiles_quality_count_agrees_with_fused_pixels(monkeypatch):
    """Two tiles of one acquisition over three pixels: (cloud, clear), (fill, clear), (clear, cloud).
    The composite has a value at all three; the import quality count must call all three clear
    (it once merged by the first tile that is not fill and counted the first pixel as cloud)."""
    cloud, clear, fill = Q.encode(cloud=True, cloud_conf=3), Q.encode(), Q.QA_FILL_VALUE
    tiles = np.array([[[cloud, fill, clear]], [[clear, clear, cloud]]], dtype=np.uint16)  # (tile, y, x)
    tables, table_of = fuse.group_tables([QA_PIXEL.table("flags")])
    fused = fuse.fuse_block(np.full((2, 1, 1, 3), 1000, np.uint16), tiles, group_of=np.array([0, 0]),
                            factors=np.ones((1, 1)), offsets=np.zeros((1, 1)), tables=tables, table_of=table_of,
                            nodata=np.array([0.0]), ngroups=1)
    used = ~np.isnan(fused[0, 0, 0])
    assert used.tolist() == [True, True, True]
    assert _quality_counts(tiles, QA_PIXEL, "flags", monkeypatch) == (3, int(used.sum()))
    # and where both tiles are cloudy, or one is fill and the other cloudy, neither counts it
    tiles2 = np.array([[[cloud, fill, fill]], [[cloud, cloud, fill]]], dtype=np.uint16)
    assert _quality_counts(tiles2, QA_PIXEL, "flags", monkeypatch) == (2, 0)
    region = np.array([[True, False, True]])
    assert _quality_counts(tiles, QA_PIXEL, "flags", monkeypatch, region=region) == (2, 2)


# --------------------------------------------------------------------------- the fused loader kernel

def _fuse_reference(dn, qa, group_of, factors, offsets, rules, nodata, ngroups, kind):
    """Per pixel: the first tile of the acquisition whose QA says usable and whose DN is not nodata."""
    n, nb, ny, nx = dn.shape
    out = np.full((ngroups, nb, ny, nx), np.nan, np.float32)

    def spec(code, rule):
        return (code < 256 and _spec_scl(code, rule)) if kind == "scl" else _spec_usable(code, rule)
    for g in range(ngroups):
        for b in range(nb):
            for y in range(ny):
                for x in range(nx):
                    for i in range(n):
                        if group_of[i] != g or not spec(int(qa[i, y, x]), rules[g]):
                            continue
                        if dn[i, b, y, x] == nodata[b]:
                            continue
                        out[g, b, y, x] = np.float32(float(dn[i, b, y, x]) * factors[g, b] + offsets[g, b])
                        break
    return out


_QA_INTERESTING = st.one_of(
    st.integers(0, 65535),
    st.sampled_from([0, 1, 21824, 21952, 22080, 23888, 54596, 55052, 22280, 24082, 56854, 1 | 2 | 8]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["qa_pixel", "scl"]))
def test_fused_kernel_equals_per_pixel_merge(data, kind):
    tiles = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3), label="tiles per acquisition")
    group_of = np.array([g for g, k in enumerate(tiles) for _ in range(k)], dtype=np.int64)
    n, nb, ny, nx = len(group_of), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    qa_values = _QA_INTERESTING if kind == "qa_pixel" else st.one_of(st.integers(0, 12), st.integers(0, 65535))
    qa = data.draw(hnp.arrays(np.uint16, (n, ny, nx), elements=qa_values), label="qa")
    nodata = np.array([data.draw(st.sampled_from([0, 1, 65535]))] * nb, dtype=np.float64)
    dn = data.draw(hnp.arrays(np.uint16, (n, nb, ny, nx), elements=st.one_of(
        st.sampled_from([0, 1, 7273, 65535]), st.integers(0, 65535))), label="dn")
    band = QA_PIXEL if kind == "qa_pixel" else SCL
    rules = [data.draw(st.sampled_from([None, "flags", "confidence"] if kind == "qa_pixel" else [None, "flags"]))
             for _ in tiles]
    tables, table_of = fuse.group_tables([band.table(r) for r in rules])
    factors = np.array([[data.draw(st.sampled_from([2.75e-5, 1e-4, 0.00341802, 1.0]))] * nb for _ in tiles])
    offsets = np.array([[data.draw(st.sampled_from([-0.2, -0.1, 149.0, 0.0]))] * nb for _ in tiles])
    got = fuse.fuse_block(dn, qa, group_of=group_of, factors=factors, offsets=offsets, tables=tables,
                          table_of=table_of, nodata=nodata, ngroups=len(tiles))
    want = _fuse_reference(dn, qa, group_of, factors, offsets, rules, nodata, len(tiles), kind)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- compositing: exhaustive small cases

_SMALL = np.array([np.nan, 0.0, 1.0, 2.0], dtype=np.float32)


def _all_patterns(T: int, B: int) -> np.ndarray:
    """Every assignment of {NaN, 0, 1, 2} to the T times of a pixel: (T, B, 1, 4**T); band b holds
    the pattern shifted by b values, so bands differ and tie in places."""
    combos = np.array(list(itertools.product(range(4), repeat=T)), dtype=np.int64).T  # (T, N)
    stack = np.empty((T, B, 1, combos.shape[1]), np.float32)
    for b in range(B):
        idx = np.where(combos == 0, 0, (combos - 1 + b) % 3 + 1)
        stack[:, b, 0, :] = _SMALL[idx]
    return stack


QUALITY_TIES = {
    "equal": lambda T: np.ones(T),
    "exact half": lambda T: np.array([1.0, 0.5, 0.25, 0.125, 0.5][:T]),  # q_low == threshold·q_high
    "zeros": lambda T: np.array([0.0, 1.0, 0.0, 0.5, 0.0][:T]),
    "descending": lambda T: np.linspace(1.0, 0.2, T),
}


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("method", METHODS)
def test_every_small_nan_and_tie_pattern(T, method):
    """All 4**T value patterns (NaN, ties, zeros) per pixel, every method, value + count + source."""
    stack = _all_patterns(T, 3)
    for _qname, qfun in QUALITY_TIES.items() if method == "bestof" else [("equal", QUALITY_TIES["equal"])]:
        quality = qfun(T)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = reduce_stack(as_cube(stack, quality), method, count=True, source=True, **BAND_ARGS).values
        n = out.shape[0] - 2
        check_equal(out[:n], expected(stack, method, quality), method in EXACT)
        check_equal(out[n], reference.used_count(stack, method, **BAND_ARGS), True)
        check_equal(out[n + 1], expected_source(stack, method, quality), True)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_bestof_every_two_value_quality_tie(threshold):
    """Two valid values under every pair of qualities from a grid with exact ratios."""
    grid = [0.0, 0.125, 0.25, 0.5, 1.0]
    pairs = list(itertools.product(grid, repeat=2))
    stack = np.full((2, 1, 1, 1), np.nan, np.float32)
    stack[:, 0, 0, 0] = [1.0, 3.0]
    for qa, qb in pairs:
        quality = np.array([qa, qb])
        out = reduce_stack(as_cube(stack), "bestof", quality=quality, threshold=threshold, source=True).values
        check_equal(out[:-1], reference.bestof(stack, quality, threshold), True)
        check_equal(out[-1], reference.bestof_source(stack, quality, threshold), True)


# --------------------------------------------------------------------------- compositing: hypothesis over masks and edge values

F32_MAX = float(np.finfo(np.float32).max)
EDGE_VALUES = [0.0, -0.0, 1.0, 1.0, 0.5, -0.5, 1e-40, -1e-40, F32_MAX, -F32_MAX, F32_MAX / 2, 0.1, 0.2, 0.3,
               float("inf"), float("-inf")]


@st.composite
def masked_stacks(draw, max_t: int = 9):
    """(stack, quality): values from a tie-heavy edge set or any float32, an explicit NaN mask."""
    T = draw(st.integers(1, max_t))
    B = draw(st.integers(3, 4))
    Y, X = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (T, B, Y, X)
    values = draw(hnp.arrays(np.float32, shape, elements=st.one_of(
        st.sampled_from(EDGE_VALUES), st.floats(-1.0, 1.0, width=32))))
    mask = draw(hnp.arrays(np.bool_, shape))
    whole = draw(hnp.arrays(np.bool_, (T, 1, Y, X)))  # whole acquisitions missing
    stack = np.where(mask | whole, np.float32(np.nan), values).astype(np.float32)
    quality = np.array(draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.5, 1.0, 1.0, 0.3]), min_size=T, max_size=T)))
    return stack, quality


def _compare(stack, quality, method, threshold=0.5):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = reduce_stack(as_cube(stack, quality), method, threshold=threshold, count=True, source=True,
                           **BAND_ARGS).values
        n = out.shape[0] - 2
        if method == "bestof":
            want = reference.bestof(stack, quality, threshold)
            want_src = reference.bestof_source(stack, quality, threshold)
        else:
            want, want_src = expected(stack, method, quality), expected_source(stack, method, quality)
    check_equal(out[:n], want, method in EXACT)
    check_equal(out[n], reference.used_count(stack, method, **BAND_ARGS), True)
    check_equal(out[n + 1], want_src, True)


@given(case=masked_stacks(), method=st.sampled_from([m for m in METHODS if m in EXACT]),
       threshold=st.sampled_from([0.0, 0.5, 1.0]))
def test_exact_methods_any_mask_and_edge_values(case, method, threshold):
    """Medians, bestof, medoid, difference, count and the indices: bit-identical to the reference
    for any NaN mask, signed zeros, subnormals, ±float32 max (overflowing means), ±inf and ties."""
    stack, quality = case
    _compare(stack, quality, method, threshold)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=masked_stacks(max_t=6), method=st.sampled_from([m for m in METHODS if m not in EXACT]))
def test_float_methods_any_mask(case, method):
    """mean, variance, brightness: same NaN pattern as the reference, values to float32 rounding
    (finite values in [-1, 1]; huge values overflow differently in a float32 vs float64 sum)."""
    stack, quality = case
    stack = np.where(np.abs(stack) > 1, np.float32(0.75), stack).astype(np.float32)
    _compare(stack, quality, method)


@settings(max_examples=80, deadline=None)
@given(T=st.integers(2, 8), ties=st.integers(2, 4), seed=st.integers(0, 2**31 - 1))
def test_medoid_ties_pick_the_earliest(T, ties, seed):
    """Several candidates at the same distance from the median: the earliest wins, in kernel and reference."""
    rng = np.random.default_rng(seed)
    base = rng.choice(np.array([0.0, 0.5, 1.0], np.float32), size=(ties, 3))
    rows = base[rng.integers(0, ties, size=T)]
    stack = rows.reshape(T, 3, 1, 1).astype(np.float32)
    out = reduce_stack(as_cube(stack), "medoid", source=True).values
    check_equal(out[:-1], reference.medoid(stack), True)
    check_equal(out[-1], reference.medoid_source(stack), True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), method=st.sampled_from(["bestof", "median", "medoid"]))
def test_generic_path_beyond_the_unrolled_kernels_any_mask(data, method):
    """More times than the generated sorting networks cover (the generic sort path), explicit masks."""
    from imalys_stac.composite import kernels as K

    T = data.draw(st.integers(K.MAX_UNROLLED + 1, K.MAX_UNROLLED + 8))
    shape = (T, 3, 1, 2)
    values = data.draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, 1e-40])))
    mask = data.draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    stack = np.where(mask, np.float32(np.nan), values).astype(np.float32)
    quality = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=T, max_size=T)))
    _compare(stack, quality, method, data.draw(st.sampled_from([0.0, 0.5, 1.0])))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=masked_stacks(max_t=6), method=st.sampled_from(METHODS), data=st.data())
def test_dask_blocks_equal_one_numpy_block_any_mask(case, method, data):
    """Any block split of a masked, tie-heavy stack gives the numpy result bit for bit."""
    stack, quality = case
    T, B, Y, X = stack.shape
    chunks = (data.draw(st.integers(1, T)), data.draw(st.integers(1, B)), data.draw(st.integers(1, Y)),
              data.draw(st.integers(1, X)))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = reduce_stack(as_cube(stack, quality), method, count=True, source=True, **BAND_ARGS).values
        got = reduce_stack(as_cube(stack, quality, chunks=chunks), method, count=True, source=True, **BAND_ARGS).values
    np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), ny=st.integers(1, 9), nx=st.integers(1, 9), seed=st.integers(0, 2**31 - 1),
       with_keep=st.booleans())
def test_quality_count_kernel_against_numpy(n, ny, nx, seed, with_keep):
    """The import's count (some tile present / some tile usable, inside the frame polygon) against
    numpy's table[codes].any(axis=0), on real QA_PIXEL codes and the flags rule's table."""
    rng = np.random.default_rng(seed)
    band = provider("landsat").quality
    codes = np.array([1, 21824, 21952, 22280, 23826, 54596, 55052, 21762], np.uint16)
    qa = rng.choice(codes, (n, ny, nx))
    present_t, clear_t = band.table(None), band.table("flags")
    keep = rng.random((ny, nx)) < 0.7 if with_keep else None
    present, clear = present_t[qa].any(axis=0), clear_t[qa].any(axis=0)
    if keep is not None:
        present, clear = present & keep, clear & keep
    given_keep = keep if keep is None or seed % 2 else keep.astype(np.int64)  # a 0/1 mask of another dtype
    assert fuse.count_present_clear(qa, present_t, clear_t, given_keep) == (int(present.sum()), int(clear.sum()))
