"""The block kernels the reducer registry names (``imalys_stac.registry.REDUCERS[…].kernel``).

Each has the one signature ``kernel(block, quality, threshold, want_source) → (result, source,
count)`` (see :class:`imalys_stac.registry.Reducer`) and hands the block to its compiled kernel in
:mod:`.kernels`; ``reduce_stack`` calls whichever kernel the registry entry names.

:mod:`.kernels` is imported on the first call (numba's import and its cached code cost ~0.5 s of
CPU), so a chain whose stacks are small enough for :mod:`.small` never pays it.
"""
from __future__ import annotations

import numpy as np

from . import small


class _Kernels:
    """:mod:`.kernels`, imported on first use (its constants too: ``K.STAT_MEAN`` is read in calls)."""

    def __getattr__(self, name: str):
        from . import kernels

        return getattr(kernels, name)


K = _Kernels()

Planes = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]


def bestof(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool) -> Planes:
    out, src = K.median_block(block, quality, threshold, True, want_source)
    return out, src, None


def median(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool) -> Planes:
    out, src = K.median_block(block, quality, threshold, False, want_source)
    return out, src, None


def _stat(which: int):
    def kernel(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool) -> Planes:
        return K.stats_block(block, which), None, None
    return kernel


mean = _stat(small.STAT_MEAN)
variance = _stat(small.STAT_VARIANCE)
count = _stat(small.STAT_COUNT)
difference = _stat(small.STAT_DIFFERENCE)


def medoid(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool) -> Planes:
    out, src, cnt = K.medoid_block(block)
    return out, src, cnt


def brightness(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool) -> Planes:
    return K.brightness_block(block), None, None


def _index(kind: int):
    def kernel(block: np.ndarray, quality: np.ndarray, threshold: float, want_source: bool) -> Planes:
        out, cnt, src = K.index_block(block, kind, want_source)
        return out, src, cnt
    return kernel


ndvi = _index(small.INDEX_NDVI)
nirv = _index(small.INDEX_NIRV)
evi = _index(small.INDEX_EVI)

__all__ = ["bestof", "brightness", "count", "difference", "evi", "mean", "median", "medoid", "ndvi", "nirv",
           "variance"]
