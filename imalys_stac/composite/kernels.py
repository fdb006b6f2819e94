"""Compiled per-pixel reduction kernels over one block ``(time, band, y, x)``.

Every kernel takes a C-contiguous float32 block and returns float32 planes
``(band_out, y, x)`` plus optional per-pixel ``count`` and ``source`` planes.
They are numba ``njit(nogil=True)`` so Dask threads run them in parallel.

Layout: a block is C-contiguous ``(t, b, y, x)``, so ``block[t, b, y, :]`` is a
contiguous row.  Kernels loop ``b, y`` outside and ``x`` innermost, reading the
``T`` rows of a band side by side, so every access streams through memory.

The median (hot path of ``bestof``) is a sorting network generated for the
stack's number of times ``T`` and fully unrolled: a pixel's ``T`` values live in
registers, each comparator is a branch-free ``min``/``max``, and the loop over
``x`` has no branches left, so LLVM vectorises it (~10 ms for 8×6×1024×1024 on
one core, 100–200 times ``numpy.nanmedian``).  Beyond ``MAX_UNROLLED``
times a row-wise network is used instead.

NaN handling for the network: invalid values are replaced by ``+inf`` so they
sort to the end; the number ``k`` of valid values per pixel is counted apart,
and the median is read at positions ``(k-1)//2`` and ``k//2`` (odd ``k``: the
middle value itself).  Real ``+inf`` values in the data stay valid and sort
correctly among the padding.

``bestof`` is the same generated pass, not a second one: the times are read in
order of descending image quality, so the first valid value of a pixel is the
best image's; two branch-free selects per time keep that value and the last valid
position, and one integer compare against a per-position cut (precomputed from
the qualities and the threshold) applies the two-value rule.  ``source`` is folded
into the same pass.  Cost over the plain median: ~10–20 %.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from functools import cache
from pathlib import Path

import numpy as np
from numba import njit

from .small import INDEX_EVI, INDEX_NDVI, INDEX_NIRV, STAT_COUNT, STAT_DIFFERENCE, STAT_MEAN, STAT_VARIANCE
from .small import quality_order as _quality_order

__all__ = [
    "MAX_UNROLLED",
    "sorting_network",
    "median_counts",
    "select_few",
    "count_any",
    "median_block",
    "stats_block",
    "medoid_block",
    "index_block",
    "brightness_block",
    "flatten_bands",
    "STAT_MEAN",
    "STAT_VARIANCE",
    "STAT_COUNT",
    "STAT_DIFFERENCE",
    "INDEX_NDVI",
    "INDEX_NIRV",
    "INDEX_EVI",
]


_F32_NAN = np.float32(np.nan)
_F32_INF = np.float32(np.inf)
_HALF = np.float32(0.5)
# Sentinels of the source combination across bands (real indices are >= 0).
_SRC_UNSET = np.float32(-2.0)
_SRC_NONE = np.float32(-1.0)


@cache
def sorting_network(n: int) -> np.ndarray:
    """Comparator pairs ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort for ``n`` wires.

    Applying ``a[i], a[j] = min, max`` for every pair in order sorts any ``n`` values
    ascending.  The iterative form below handles any ``n`` (not only powers of two).
    Returned read-only (it is cached and shared).
    """
    if n < 0:
        raise ValueError(f"sorting_network needs n >= 0, got {n}")
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    arr.setflags(write=False)
    return arr


@njit(nogil=True, cache=True)
def _sort_rows(buf, pairs):
    """Sort every column of ``buf`` (T, X) ascending with the comparator list ``pairs``."""
    X = buf.shape[1]
    for p in range(pairs.shape[0]):
        ri = buf[pairs[p, 0]]
        rj = buf[pairs[p, 1]]
        for x in range(X):
            a = ri[x]
            c = rj[x]
            # Branch-free: min/max on floats compile to SIMD min/max (no NaN here).
            ri[x] = min(a, c)
            rj[x] = max(a, c)


# --------------------------------------------------------------------------- median core
#: Up to this many times the median is a generated, fully unrolled sorting network
#: (all values of a pixel in registers; the x loop vectorises).  Beyond it a generic
#: row-wise network is used (slower, same results).  Compile time grows with the
#: comparator count (T=32: ~4 s once, then cached on disk).
MAX_UNROLLED = 32

_GEN_LOCK = threading.Lock()


def _median_source(n: int) -> str:
    """Python source of the unrolled kernels for ``n`` times (one module per ``n``).

    * ``median_t{n}(block, out, cnt)``: median and count of the valid values.
    * ``bestof_t{n}(block, out, cnt, order, cut)``: the same plus the one/two-value
      rule of ``bestof``, in the same branch-free pass.  The times are read in the
      order ``order`` (descending quality, see :func:`_quality_order`), so the first
      valid one is the best image; with two valid values that one wins iff the other's
      position is ``>= cut[first]``.  No pair table, no second pass.
    * ``bestof_src_t{n}(block, out, cnt, order, cut, src)``: also folds each band's
      pick (original time index, or "none") into the source plane ``src`` (Y, X),
      which starts as "unset" (sentinels; :func:`_finish_source` turns them to NaN).
    """
    ind = " " * 16
    head = [
        "# Generated by imalys_stac.composite.kernels: do not edit.",
        "import numpy as np",
        "from numba import njit",
        "INF = np.float32(np.inf)",
        "NAN = np.float32(np.nan)",
        "HALF = np.float32(0.5)",
        "SRC_UNSET = np.float32(-2.0)",
        "SRC_NONE = np.float32(-1.0)",
        "",
    ]
    body: list[str] = []
    for kind in ("median", "bestof", "bestof_src"):
        best = kind != "median"
        source = kind == "bestof_src"
        args = "block, out, cnt" + (", order, cut" if best else "") + (", src" if source else "")
        lines = ["", "@njit(nogil=True, cache=True)", f"def {kind}_t{n}({args}):",
                 "    T, B, Y, X = block.shape"]
        # Loop-invariant per-position constants, typed int32/float32 so the x loop stays
        # in 8/16-wide lanes.
        if best:
            lines += [f"    P{p} = order[{p}]" for p in range(n)]
            lines += [f"    C{p} = np.int32(cut[{p}])" for p in range(n)]
            lines += [f"    I{p} = np.int32({p})" for p in range(n)]
            lines += ["    NONE_I = np.int32(-1)", f"    NT = np.int32({n})"]
        if source:
            lines += [f"    S{p} = np.float32(order[{p}])" for p in range(n)]
        lines += [f"    M{m} = np.int32({m})" for m in range(n)]
        lines += ["    ONE = np.int32(1)", "    TWO = np.int32(2)", "    ZERO = np.int32(0)"]
        # b outside, y inside: consecutive rows of a band are contiguous, so the T input
        # streams run on across rows (y outside / b inside was ~20 % slower, even with
        # the source row kept in L1).
        lines += ["    for b in range(B):", "        for y in range(Y):",
                  "            orow = out[b, y]", "            crow = cnt[b, y]"]
        if source:
            lines.append("            srow = src[y]")
        rows = (lambda t: f"P{t}") if best else (lambda t: str(t))
        lines += [f"            r{t} = block[{rows(t)}, b, y]" for t in range(n)]
        lines.append("            for x in range(X):")
        for t in range(n):
            lines += [f"{ind}v{t} = r{t}[x]", f"{ind}o{t} = v{t} == v{t}", f"{ind}s{t} = v{t} if o{t} else INF"]
        lines.append(ind + "k = " + " + ".join(f"np.int32(o{t})" for t in range(n)))
        if best:
            # First valid position (= best quality): its value, cut (and time); last valid position.
            lines += [f"{ind}vb = NAN", f"{ind}cb = NT", f"{ind}li = NONE_I"]
            if source:
                lines.append(f"{ind}sb = SRC_NONE")
            for p in range(n - 1, -1, -1):
                lines += [f"{ind}vb = v{p} if o{p} else vb", f"{ind}cb = C{p} if o{p} else cb"]
                if source:
                    lines.append(f"{ind}sb = S{p} if o{p} else sb")
            for p in range(n):
                lines.append(f"{ind}li = I{p} if o{p} else li")
        for i, j in sorting_network(n):
            lines += [f"{ind}a = min(s{i}, s{j})", f"{ind}s{j} = max(s{i}, s{j})", f"{ind}s{i} = a"]
        # Branch-free pick of positions (k-1)//2 and k//2 of the sorted values; an odd
        # count takes the middle value itself (no overflow of lo + hi, as numpy).
        lines += [f"{ind}il = (k - ONE) >> ONE", f"{ind}ih = k >> ONE", f"{ind}lo = s0", f"{ind}hi = s0"]
        for m in range(1, n):
            lines += [f"{ind}lo = s{m} if il == M{m} else lo", f"{ind}hi = s{m} if ih == M{m} else hi"]
        lines.append(f"{ind}med = lo if il == ih else (lo + hi) * HALF")
        if best:
            lines.append(f"{ind}one = (k == ONE) | ((k == TWO) & (li >= cb))")
            lines.append(f"{ind}orow[x] = vb if one else (med if k > ZERO else NAN)")
        else:
            lines.append(f"{ind}orow[x] = med if k > ZERO else NAN")
        lines.append(f"{ind}crow[x] = np.uint16(k)")
        if source:
            lines += [f"{ind}pick = sb if one else SRC_NONE",
                      f"{ind}sv = srow[x]",
                      f"{ind}nv = pick if sv == SRC_UNSET else (sv if sv == pick else SRC_NONE)",
                      f"{ind}srow[x] = nv if k > ZERO else sv"]
        body += lines
    return "\n".join(head + body) + "\n"


def _cache_dir() -> Path:
    """Folder for the generated kernel modules (numba caches their machine code beside them)."""
    from ..settings import current

    env = current().kernel_cache
    candidates = [Path(env)] if env else []
    candidates += [Path.home() / ".cache" / "imalys_stac" / "kernels",
                   Path(tempfile.gettempdir()) / f"imalys_stac_kernels_{os.getuid() if hasattr(os, 'getuid') else 0}"]
    for c in candidates:
        try:
            c.mkdir(parents=True, exist_ok=True)
            if os.access(c, os.W_OK):
                return c
        except OSError:
            continue
    raise OSError(f"no writable folder for generated kernels among {[str(c) for c in candidates]}; "
                  "set IMALYS_STAC_KERNEL_CACHE to a writable directory")


@cache
def _unrolled_module(n: int):
    """Load (generating once) the module of compiled unrolled kernels for ``n`` times.

    The source goes to a real file so numba's on-disk cache works across processes
    (Dask workers); it is written atomically (temp name + rename) so concurrent
    processes never import a half-written file.  Each function compiles on first use.
    """
    with _GEN_LOCK:
        src = _median_source(n)
        digest = hashlib.sha1(src.encode()).hexdigest()[:12]
        path = _cache_dir() / f"median_t{n}_{digest}.py"
        if not path.exists():
            from ..write.atomic import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_text(src)
        name = f"imalys_stac_generated_median_t{n}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # a .py path always has a source loader
            raise ImportError(f"cannot load the generated kernels {path}")
        module = importlib.util.module_from_spec(spec)
        # Registered so numba can find the module again when it loads cached code.
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module


def _unrolled(n: int, kind: str = "median"):
    """The generated kernel ``kind`` (``median``, ``bestof``, ``bestof_src``) for ``n`` times."""
    return getattr(_unrolled_module(n), f"{kind}_t{n}")


@njit(nogil=True, cache=True)
def _median_rows_generic(block, out, cnt, pairs):
    """Same contract as the generated kernels, for any ``T``: row-wise network.

    Each comparator is a branch-free min/max over a whole image row, so it still
    vectorises; used beyond ``MAX_UNROLLED`` times.
    """
    T, B, Y, X = block.shape
    buf = np.empty((T, X), np.float32)
    k = np.empty(X, np.int32)
    for b in range(B):
        for y in range(Y):
            k[:] = 0
            for t in range(T):
                row = block[t, b, y]
                brow = buf[t]
                for x in range(X):
                    v = row[x]
                    ok = v == v
                    brow[x] = v if ok else _F32_INF
                    k[x] += np.int32(ok)
            _sort_rows(buf, pairs)
            orow = out[b, y]
            crow = cnt[b, y]
            for x in range(X):
                kk = k[x]
                lo = buf[(kk - 1) >> 1, x]
                hi = buf[kk >> 1, x]
                med = lo if kk & 1 else (lo + hi) * _HALF
                orow[x] = med if kk > 0 else _F32_NAN
                crow[x] = np.uint16(kk)


def median_counts(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band median over axis 0 of the valid values and their count.

    ``block``: C-contiguous float32 ``(T, B, Y, X)``.  Returns ``(median (B, Y, X)
    float32, NaN where no valid value; count (B, Y, X) uint16)``.  Even counts give
    the mean of the two middle values.  Exactly equal to ``numpy.nanmedian``, except that
    for an odd count of values above half the float32 maximum numpy's masked median
    (used along short axes) overflows to inf where this returns the middle value (as
    ``numpy.median`` of the valid values does).
    """
    T, B, Y, X = block.shape
    if T > np.iinfo(np.uint16).max:
        raise ValueError(f"at most {np.iinfo(np.uint16).max} times per stack are supported, got {T}")
    out = np.empty((B, Y, X), np.float32)
    cnt = np.empty((B, Y, X), np.uint16)
    if T == 0:
        out[:] = np.nan
        cnt[:] = 0
    elif T <= MAX_UNROLLED:
        _unrolled(T)(block, out, cnt)
    else:
        _median_rows_generic(block, out, cnt, sorting_network(T))
    return out, cnt


@njit(nogil=True, cache=True)
def _combine_source(src, x, pick):
    """Fold one band's pick (``-1`` = no single pick) into the pixel's source."""
    s = src[x]
    if s == _SRC_UNSET:
        src[x] = pick
    elif s != pick:
        src[x] = _SRC_NONE


@njit(nogil=True, cache=True)
def _finish_source(src):
    """Sentinels (< 0) become NaN: no single acquisition was chosen there."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            if src[i, j] < 0:
                src[i, j] = _F32_NAN


@njit(nogil=True, cache=True)
def select_few(block, out, cnt, quality, threshold, use_quality, want_source):
    """Post-pass of ``median``/``bestof`` over the pixels with one or two valid values.

    Used after :func:`median_counts` beyond ``MAX_UNROLLED`` times (up to it the
    generated kernels fold this rule into their single pass) and as the plain form
    the fused kernels are tested against.

    Only there the result depends on *which* times are valid, so only there the
    pixel's time series is scanned (rare pixels, outside the vectorised hot loop).
    With ``use_quality`` (``bestof``) a pixel with two valid values takes the better
    image's value when the lower quality is below ``threshold`` times the higher.
    Returns the ``source`` plane ``(Y, X)``: the acquisition index where every band
    with a result took it from one and the same single acquisition (one valid value,
    or the better of two), NaN elsewhere; ``(0, 0)`` if not ``want_source``.
    """
    T, B, Y, X = block.shape
    src = np.full((Y if want_source else 0, X if want_source else 0), _SRC_UNSET, np.float32)
    if not (use_quality or want_source):
        return src
    for b in range(B):
        for y in range(Y):
            crow = cnt[b, y]
            if want_source:
                srow = src[y]
                for x in range(X):
                    # Branch-free: any pixel with > 2 values has no single source.
                    srow[x] = _SRC_NONE if crow[x] > 2 else srow[x]
            # Vectorised pre-scan in strips of 64: most strips have no pixel with
            # k in {1, 2} and are skipped without a per-pixel branch.
            for x0 in range(0, X, 64):
                x1 = min(x0 + 64, X)
                few = 0
                for x in range(x0, x1):
                    few += np.int32(crow[x] - np.int32(1) <= 1) & np.int32(crow[x] >= 1)
                if few == 0:
                    continue
                for x in range(x0, x1):
                    k = crow[x]
                    if k == 0 or k > 2:
                        continue
                    _few_pixel(block, out, quality, threshold, use_quality, want_source, src, b, y, x, k)
    if want_source:
        _finish_source(src)
    return src


@njit(nogil=True, cache=True)
def _few_pixel(block, out, quality, threshold, use_quality, want_source, src, b, y, x, k):
    """Apply the one/two-value rule at one band-pixel (see ``select_few``)."""
    T = block.shape[0]
    i0 = -1
    i1 = -1
    for t in range(T):
        v = block[t, b, y, x]
        if v == v:
            if i0 < 0:
                i0 = t
            else:
                i1 = t
    pick = i0 if k == 1 else -1
    if k == 2 and use_quality:
        qa = quality[i0]
        qb = quality[i1]
        if qa < threshold * qb:
            out[b, y, x] = block[i1, b, y, x]
            pick = i1
        elif qb < threshold * qa:
            out[b, y, x] = block[i0, b, y, x]
            pick = i0
    if want_source:
        _combine_source(src[y], x, np.float32(pick))


@njit(nogil=True, cache=True)
def count_any(block):
    """Per pixel, the number of times valid in at least one band → float32 ``(Y, X)``."""
    T, B, Y, X = block.shape
    out = np.zeros((Y, X), np.float32)
    anyv = np.empty(X, np.bool_)
    for y in range(Y):
        orow = out[y]
        for t in range(T):
            anyv[:] = False
            for b in range(B):
                row = block[t, b, y]
                for x in range(X):
                    v = row[x]
                    anyv[x] |= v == v
            for x in range(X):
                orow[x] += np.float32(anyv[x])
    return out


def _median_pick(block: np.ndarray, quality: np.ndarray, threshold: float, use_quality: bool,
                 want_source: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(out (B,Y,X), count (B,Y,X) uint16, source (Y,X) or (0,0))`` of median/bestof.

    Up to ``MAX_UNROLLED`` times everything (median, one/two-value rule, source) is
    one pass of a generated kernel; otherwise (or for thresholds/qualities outside
    the documented ranges) median + :func:`select_few` post-pass.
    """
    T, B, Y, X = block.shape
    q = np.ascontiguousarray(quality, dtype=np.float64).reshape(-1)
    threshold = float(threshold)
    if not use_quality:  # median: no image ever wins (threshold 0 → never q < 0)
        q, threshold = np.ones(T), 0.0
    fast = (1 <= T <= MAX_UNROLLED and q.shape == (T,) and 0.0 <= threshold <= 1.0
            and bool(np.all(np.isfinite(q))) and bool(np.all(q >= 0)))
    if not fast or not (use_quality or want_source):
        out, cnt = median_counts(block)
        src = select_few(block, out, cnt, q, threshold, use_quality, want_source)
        return out, cnt, src
    order, cut = _quality_order(q, threshold)
    out = np.empty((B, Y, X), np.float32)
    cnt = np.empty((B, Y, X), np.uint16)
    if want_source:
        src = np.full((Y, X), _SRC_UNSET, np.float32)
        _unrolled(T, "bestof_src")(block, out, cnt, order, cut, src)
        _finish_source(src)
    else:
        src = np.empty((0, 0), np.float32)
        _unrolled(T, "bestof")(block, out, cnt, order, cut)
    return out, cnt, src


def median_block(block: np.ndarray, quality: np.ndarray, threshold: float, use_quality: bool,
                 want_source: bool) -> tuple[np.ndarray, np.ndarray]:
    """``median`` (``use_quality=False``) or ``bestof`` of one block → ``(out (B,Y,X), source)``.

    * ``k >= 3`` valid: median (even ``k``: mean of the two middle values; the
      original Imalys takes the upper one).
    * ``k == 2``: mean, or for ``bestof`` the better image's value when the lower
      quality is below ``threshold`` times the higher.
    * ``k == 1``: that value; ``k == 0``: NaN.

    ``source`` is ``(Y, X)`` if ``want_source`` else ``(0, 0)``.
    """
    out, _, src = _median_pick(block, quality, threshold, use_quality, want_source)
    return out, src

def stats_block(block: np.ndarray, which: int) -> np.ndarray:
    """Per-band ``mean`` / ``variance`` / ``count`` / ``difference`` over valid times of a
    float32 ``(T, B, Y, X)`` block → ``(B, Y, X)`` float32 (see `_stats_into`). The output is
    allocated by numpy: numba's allocator gets no huge pages, and the first-touch page faults of
    a fresh block cost more than the kernel's arithmetic (cube/fuse.py measured 51 vs 5 ms)."""
    T, B, Y, X = block.shape
    return _stats_into(block, which, np.empty((B, Y, X), np.float32))


@njit(nogil=True, cache=True)
def _stats_into(block, which, out):
    """Per-band ``mean`` / ``variance`` / ``count`` / ``difference`` over valid times.

    ``variance`` is the sample variance (divisor ``k - 1``, NaN for ``k < 2``), as
    the original's ``(Σx² − (Σx)²/n)/(n − 1)``; computed here in two passes in
    float64 for accuracy.  ``difference`` is last valid minus first valid (NaN for
    ``k < 2``).  ``count`` is the number of valid values.  Accumulation is float64.
    """
    T, B, Y, X = block.shape
    s = np.empty(X, np.float64)
    ss = np.empty(X, np.float64)
    cnt = np.empty(X, np.int64)
    fv = np.empty(X, np.float32)
    lv = np.empty(X, np.float32)
    for y in range(Y):
        for b in range(B):
            s[:] = 0.0
            cnt[:] = 0
            fv[:] = _F32_NAN
            lv[:] = _F32_NAN
            for t in range(T):
                row = block[t, b, y]
                for x in range(X):
                    v = row[x]
                    ok = v == v
                    cnt[x] += ok
                    s[x] += np.float64(v) if ok else 0.0
                    if ok:
                        if fv[x] != fv[x]:
                            fv[x] = v
                        lv[x] = v
            orow = out[b, y]
            if which == STAT_MEAN:
                for x in range(X):
                    orow[x] = np.float32(s[x] / cnt[x]) if cnt[x] > 0 else _F32_NAN
            elif which == STAT_COUNT:
                for x in range(X):
                    orow[x] = np.float32(cnt[x])
            elif which == STAT_DIFFERENCE:
                for x in range(X):
                    orow[x] = lv[x] - fv[x] if cnt[x] >= 2 else _F32_NAN
            else:  # variance, second pass around the mean
                ss[:] = 0.0
                for x in range(X):
                    s[x] = s[x] / cnt[x] if cnt[x] > 0 else 0.0
                for t in range(T):
                    row = block[t, b, y]
                    for x in range(X):
                        v = row[x]
                        if v == v:
                            d = np.float64(v) - s[x]
                            ss[x] += d * d
                for x in range(X):
                    orow[x] = np.float32(ss[x] / (cnt[x] - 1)) if cnt[x] >= 2 else _F32_NAN
    return out


# --------------------------------------------------------------------------- medoid
@njit(nogil=True, cache=True)
def candidates(block):
    """Copy of ``block`` where times not valid in *all* bands are NaN, and their count (Y, X)."""
    T, B, Y, X = block.shape
    masked = np.empty_like(block)
    ncand = np.zeros((Y, X), np.float32)
    ok = np.empty(X, np.bool_)
    for t in range(T):
        for y in range(Y):
            ok[:] = True
            for b in range(B):
                row = block[t, b, y]
                for x in range(X):
                    v = row[x]
                    ok[x] &= v == v
            for b in range(B):
                row = block[t, b, y]
                mrow = masked[t, b, y]
                for x in range(X):
                    mrow[x] = row[x] if ok[x] else _F32_NAN
            for x in range(X):
                ncand[y, x] += np.float32(ok[x])
    return masked, ncand


@njit(nogil=True, cache=True)
def medoid_pick(masked, med):
    """For each pixel the candidate time nearest (Euclidean, float64, bands summed in
    order) to the per-band median ``med`` (B, Y, X); ties → earliest time.

    Returns ``(spectrum (B, Y, X), source (Y, X))``, NaN where there is no candidate.
    """
    T, B, Y, X = masked.shape
    out = np.empty((B, Y, X), np.float32)
    src = np.empty((Y, X), np.float32)
    dist = np.empty(X, np.float64)
    best = np.empty(X, np.float64)
    arg = np.empty(X, np.int64)
    for y in range(Y):
        best[:] = np.inf
        arg[:] = -1
        for t in range(T):
            dist[:] = 0.0
            for b in range(B):
                row = masked[t, b, y]
                mrow = med[b, y]
                for x in range(X):
                    d = np.float64(row[x]) - np.float64(mrow[x])
                    dist[x] += d * d
            for x in range(X):
                # NaN distance (not a candidate) never compares '<'; strict '<' keeps
                # the earliest time on ties.
                if dist[x] < best[x]:
                    best[x] = dist[x]
                    arg[x] = t
        for x in range(X):
            a = arg[x]
            for b in range(B):
                out[b, y, x] = masked[a, b, y, x] if a >= 0 else _F32_NAN
            src[y, x] = np.float32(a) if a >= 0 else _F32_NAN
    return out, src


def medoid_block(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Medoid over time: the observation whose spectrum is nearest the per-band median.

    Candidates are the times valid in *all* bands; the per-band median is taken over
    the candidates (even count: mean of the middle two).  Returns ``(spectrum
    (B, Y, X), source (Y, X), candidate count (Y, X))``.
    """
    masked, ncand = candidates(block)
    med, _ = median_counts(masked)
    out, src = medoid_pick(masked, med)
    return out, src, ncand


# --------------------------------------------------------------------------- indices
@njit(nogil=True, cache=True)
def _index_value(kind, r, n, bl):
    """One vegetation index from float64 reflectances; NaN where undefined (zero denominator)."""
    if kind == INDEX_EVI:
        den = n + 6.0 * r - 7.5 * bl + 1.0
        return 2.5 * (n - r) / den if den != 0.0 else np.nan
    den = n + r
    if den == 0.0:
        return np.nan
    v = (n - r) / den
    if kind == INDEX_NIRV:
        v = v * n
    return v


@njit(nogil=True, cache=True)
def index_stack(block, kind):
    """Per-time index from a block holding ``[red, nir]`` or ``[red, nir, blue]`` → ``(T, 1, Y, X)``.

    Computed in float64, rounded to float32; NaN where an input band is NaN (NaN
    propagates) or the denominator is zero.
    """
    T, B, Y, X = block.shape
    out = np.empty((T, 1, Y, X), np.float32)
    for t in range(T):
        for y in range(Y):
            rr = block[t, 0, y]
            nr = block[t, 1, y]
            orow = out[t, 0, y]
            for x in range(X):
                bl = np.float64(block[t, 2, y, x]) if kind == INDEX_EVI else 0.0
                orow[x] = np.float32(_index_value(kind, np.float64(rr[x]), np.float64(nr[x]), bl))
    return out


def index_block(block: np.ndarray, kind: int, want_source: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vegetation index per time, then its median over the valid times.

    Returns ``(out (1, Y, X), count (Y, X) float32, source (Y, X))``; source is the
    single valid time where only one is valid, NaN elsewhere.
    """
    stack = index_stack(block, kind)
    out, cnt, src = _median_pick(stack, np.ones(stack.shape[0]), 0.0, False, want_source)
    return out, cnt[0].astype(np.float32), src

@njit(nogil=True, cache=True)
def brightness_block(block):
    """Brightness: per time the quadratic mean over the valid bands, then the mean
    over the times with at least one valid band (float64 accumulation).

    The original Imalys returns the Euclidean length ``sqrt(Σ x²)`` over all layers;
    the quadratic mean ``sqrt(Σ x² / n)`` keeps reflectance units and does not depend
    on how many bands are valid.
    """
    T, B, Y, X = block.shape
    out = np.empty((1, Y, X), np.float32)
    ss = np.empty(X, np.float64)
    nb = np.empty(X, np.int64)
    acc = np.empty(X, np.float64)
    nt = np.empty(X, np.int64)
    for y in range(Y):
        acc[:] = 0.0
        nt[:] = 0
        for t in range(T):
            ss[:] = 0.0
            nb[:] = 0
            for b in range(B):
                row = block[t, b, y]
                for x in range(X):
                    v = row[x]
                    if v == v:
                        ss[x] += np.float64(v) * np.float64(v)
                        nb[x] += 1
            for x in range(X):
                if nb[x] > 0:
                    acc[x] += np.sqrt(ss[x] / nb[x])
                    nt[x] += 1
        for x in range(X):
            out[0, y, x] = np.float32(acc[x] / nt[x]) if nt[x] > 0 else _F32_NAN
    return out


@njit(nogil=True, cache=True)
def flatten_bands(res):
    """Mean over the bands of ``res`` (B, Y, X) ignoring NaN → (1, Y, X) (float64 sum)."""
    B, Y, X = res.shape
    out = np.empty((1, Y, X), np.float32)
    for y in range(Y):
        for x in range(X):
            s = 0.0
            n = 0
            for b in range(B):
                v = res[b, y, x]
                if v == v:
                    s += np.float64(v)
                    n += 1
            out[0, y, x] = np.float32(s / n) if n > 0 else _F32_NAN
    return out
