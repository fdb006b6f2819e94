"""One pass per block from archive DNs to the calibrated, masked, merged cube.

stackstac delivers uint16 DNs of every tile and their QA_PIXEL; this numba kernel reads each
value once and writes value = DN·factor + offset where the QA says the pixel is usable, taking
for each acquisition the first tile that has a usable value (same-day merge). Doing this in one
compiled pass instead of a chain of xarray operations avoids four float32 temporaries of the
whole block — the difference between being limited by decompression and by memory traffic.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..archives import qa as Q
from .quality import SCL_DISTURBED_TABLE

_FILL = np.uint16(1 << Q.FILL)
_FLAGS = np.uint16(Q.FLAGS_DISTURBED)
_CONF_SHIFTS = np.array([Q.CLOUD_CONFIDENCE, Q.SHADOW_CONFIDENCE, Q.CIRRUS_CONFIDENCE], dtype=np.int64)
_CONF_HIGH = Q.CONF_HIGH


@njit(nogil=True, cache=True)
def _usable(qa, rule, fill_bit, flags, conf_shifts, conf_high, scl_bad, ok):
    """Rule codes (see cube.quality): 0/1/2 Landsat QA_PIXEL fill-only/flags/confidence,
    3/4 Sentinel-2 SCL classes/fill-only."""
    ny, nx = qa.shape
    for y in range(ny):
        for x in range(nx):
            q = qa[y, x]
            if rule >= 3:
                good = q != 0
                if good and rule == 3 and q < 256:
                    good = not scl_bad[q]
            else:
                good = (q & fill_bit) == 0
                if good and rule == 1:
                    good = (q & flags) == 0
                elif good and rule == 2:
                    for s in conf_shifts:
                        if ((q >> s) & 3) == conf_high:
                            good = False
            ok[y, x] = good


@njit(nogil=True, cache=True)
def _fuse(dn, qa, group_of, factors, offsets, rules, nodata, ngroups, fill_bit, flags, conf_shifts, conf_high, scl_bad):
    n, nb, ny, nx = dn.shape
    out = np.full((ngroups, nb, ny, nx), np.nan, dtype=np.float32)
    ok = np.empty((ny, nx), dtype=np.bool_)
    for i in range(n):
        g = group_of[i]
        _usable(qa[i], rules[g], fill_bit, flags, conf_shifts, conf_high, scl_bad, ok)
        for b in range(nb):
            f = factors[g, b]
            o = offsets[g, b]
            nd = nodata[b]
            for y in range(ny):
                for x in range(nx):
                    if ok[y, x] and math.isnan(out[g, b, y, x]):
                        v = dn[i, b, y, x]
                        if v != nd:
                            out[g, b, y, x] = np.float32(v * f + o)
    return out


def fuse_block(dn: np.ndarray, qa: np.ndarray, *, group_of: np.ndarray, factors: np.ndarray, offsets: np.ndarray,
               rules: np.ndarray, nodata: np.ndarray, ngroups: int) -> np.ndarray:
    """(items, bands, y, x) uint16 DNs + (items, [1,] y, x) uint16 QA → (groups, bands, y, x) float32."""
    if qa.ndim == 4:  # map_blocks aligns dimensions, so the QA arrives with a unit band axis
        qa = qa[:, 0]
    return _fuse(np.ascontiguousarray(dn), np.ascontiguousarray(qa), group_of, factors, offsets, rules,
                 nodata, ngroups, _FILL, _FLAGS, _CONF_SHIFTS, _CONF_HIGH, SCL_DISTURBED_TABLE)


def auto_chunk(ntime: int, nbands: int, budget: int = 64 * 2**20) -> int:
    """Spatial chunk side so one block of the calibrated cube (float32, all dates and bands)
    stays within `budget` bytes — the same budget the compositing kernels use, so they never
    re-split it — and a block's memory does not grow with the number of dates."""
    side = int(math.sqrt(budget / max(1, ntime * nbands * 4)))
    return int(min(2048, max(256, (side // 256) * 256)))
