"""``median`` and ``bestof`` of small stacks in plain numpy, value for value as the compiled kernels.

A tutorial-sized stack (a few dates of a few hundred pixels) is reduced by numpy in a few tens of
milliseconds, while the first call of a compiled kernel costs numba's import and the loading of
its type system and cached machine code — about half a second of CPU in every new process, ten
times the pixel work. ``reduce_stack`` picks these functions for stacks up to
:data:`SMALL_VALUES` values; larger ones go to :mod:`.kernels`.

The rules are those of the generated kernels (see :mod:`.kernels`): invalid values sort as
``+inf``, the median is read at positions ``(k-1)//2`` and ``k//2`` of the sorted values (their
float32 mean for even ``k``), and ``bestof`` reads the times in descending quality, so that its
one/two-value rule is one compare against a per-position cut (:func:`quality_order`). Only
comparisons, one float32 addition and one float32 halving touch a value, so numpy and the
compiled loops give the same bits.
"""
from __future__ import annotations

import numpy as np

#: stacks (time × band × y × x values) up to this size are reduced here instead of by the
#: compiled kernels: numpy takes ~25 ms per million values, numba's first call ~0.5 s of CPU
SMALL_VALUES = 4 << 20

#: what ``kernels.stats_block`` and ``kernels.index_block`` compute (defined here, where no numba
#: import is needed to name them)
STAT_MEAN, STAT_VARIANCE, STAT_COUNT, STAT_DIFFERENCE = 0, 1, 2, 3
INDEX_NDVI, INDEX_NIRV, INDEX_EVI = 0, 1, 2

_NAN = np.float32(np.nan)
_INF = np.float32(np.inf)
_HALF = np.float32(0.5)
_SRC_UNSET = np.float32(-2.0)
_SRC_NONE = np.float32(-1.0)


def quality_order(quality: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Reading order and cuts that turn the two-value rule into one integer compare.

    ``order``: times by descending quality (stable).  In that order the first of two
    valid values is the better image (or equal), and it wins iff the other's quality
    is below ``threshold`` times its own.  With qualities descending, the positions
    ``j`` where that holds for position ``p`` are all ``j >= cut[p]`` (``cut[p] = T``:
    none).  The comparison is the reference's float64 ``q_low < threshold * q_high``.
    Needs ``0 <= threshold <= 1`` and finite qualities ``>= 0`` (then at most one of
    the two images can win, and only the better one).
    """
    T = quality.shape[0]
    order = np.argsort(-quality, kind="stable").astype(np.int64)
    qs = quality[order]
    cut = np.full(T, T, dtype=np.int32)
    for p in range(T):
        limit = threshold * qs[p]
        for j in range(p + 1, T):
            if qs[j] < limit:
                cut[p] = j
                break
    return order, cut


def fits(quality: np.ndarray, threshold: float) -> bool:
    """Whether the qualities and threshold are in the ranges the one-compare rule needs (else
    the kernels' generic path decides; see ``kernels._median_pick``)."""
    return (0.0 <= threshold <= 1.0 and bool(np.all(np.isfinite(quality))) and bool(np.all(quality >= 0)))


def median_block(block: np.ndarray, quality: np.ndarray, threshold: float, use_quality: bool,
                 want_source: bool) -> tuple[np.ndarray, np.ndarray]:
    """``kernels.median_block`` in numpy: ``median`` (``use_quality=False``) or ``bestof`` of a
    float32 ``(T, B, Y, X)`` block → ``(out (B, Y, X), source (Y, X) or (0, 0))``."""
    T, B, Y, X = block.shape
    q = np.ascontiguousarray(quality, dtype=np.float64).reshape(-1)
    threshold = float(threshold)
    if not use_quality:  # median: no image ever wins (threshold 0 → never q < 0)
        q, threshold = np.ones(T), 0.0
    if T == 0 or q.shape != (T,) or not fits(q, threshold):
        raise ValueError("small.median_block needs at least one time, one finite quality >= 0 per time and "
                         "0 <= threshold <= 1 (the kernels handle the rest)")
    order, cut = quality_order(q, threshold)
    ordered = block[order]  # times by descending quality
    valid = ordered == ordered
    k = valid.sum(axis=0, dtype=np.int32)
    s = np.where(valid, ordered, _INF)
    s.sort(axis=0)
    il, ih = (k - 1) >> 1, k >> 1
    lo = np.take_along_axis(s, np.maximum(il, 0)[None], axis=0)[0]
    hi = np.take_along_axis(s, ih[None], axis=0)[0]
    with np.errstate(over="ignore", invalid="ignore"):  # as the kernels: inf + inf, -inf + inf
        med = np.where(il == ih, lo, (lo + hi) * _HALF)
    first = valid.argmax(axis=0)  # first valid position: the best image's value
    last = T - 1 - valid[::-1].argmax(axis=0)  # last valid position
    best = np.take_along_axis(ordered, first[None], axis=0)[0]
    one = (k == 1) | ((k == 2) & (last >= cut[first]))
    out = np.where(one, best, np.where(k > 0, med, _NAN)).astype(np.float32, copy=False)
    if not want_source:
        return out, np.empty((0, 0), np.float32)
    pick = np.where(one, order[first].astype(np.float32), _SRC_NONE)
    src = np.full((Y, X), _SRC_UNSET, np.float32)
    for b in range(B):  # each band's pick folded in, as the kernel's band loop does
        same = np.where(src == pick[b], src, _SRC_NONE)
        new = np.where(src == _SRC_UNSET, pick[b], same)
        src = np.where(k[b] > 0, new, src)
    src[src < 0] = _NAN
    return out, src


def count_any(block: np.ndarray) -> np.ndarray:
    """``kernels.count_any`` in numpy: per pixel, the times valid in at least one band (float32)."""
    return (block == block).any(axis=1).sum(axis=0).astype(np.float32)


def bestof(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool):
    out, src = median_block(block, quality, threshold, True, want_source)
    return out, src, None


def median(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool):
    out, src = median_block(block, quality, threshold, False, want_source)
    return out, src, None


#: the reducers that have a numpy form here, by name (the registry's kernel of the same name)
KERNELS = {"bestof": bestof, "median": median}

__all__ = ["KERNELS", "SMALL_VALUES", "bestof", "count_any", "fits", "median", "median_block", "quality_order"]
