"""The block kernels the reducer registry names (``imalys_stac.registry.REDUCERS[…].kernel``).

Each has the one signature ``kernel(block, quality, threshold, want_source) → (result, source,
count)`` (see :class:`imalys_stac.registry.Reducer`) and hands the block to its compiled kernel in
:mod:`.kernels`; ``reduce_stack`` calls whichever kernel the registry entry names.
"""
from __future__ import annotations

import numpy as np

from . import kernels as K

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


mean = _stat(K.STAT_MEAN)
variance = _stat(K.STAT_VARIANCE)
count = _stat(K.STAT_COUNT)
difference = _stat(K.STAT_DIFFERENCE)


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


ndvi = _index(K.INDEX_NDVI)
nirv = _index(K.INDEX_NIRV)
evi = _index(K.INDEX_EVI)

__all__ = ["bestof", "brightness", "count", "difference", "evi", "mean", "median", "medoid", "ndvi", "nirv",
           "variance"]
