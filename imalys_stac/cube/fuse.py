"""One pass per block from archive DNs to the calibrated, masked, merged cube.

stackstac delivers uint16 DNs of every tile and their quality band; this numba kernel reads each
value once and writes value = DN·factor + offset where the quality band says the pixel is usable,
taking for each acquisition the first tile that has a usable value (same-day merge). "Usable" is
the group's lookup table over all 65,536 codes (`cube.quality`), the same table the import's
quality count uses. Doing this in one compiled pass instead of a chain of xarray operations
avoids four float32 temporaries of the whole block — the difference between being limited by
decompression and by memory traffic.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _fuse(dn, qa, group_of, factors, offsets, tables, table_of, nodata, ngroups):
    n, nb, ny, nx = dn.shape
    out = np.full((ngroups, nb, ny, nx), np.nan, dtype=np.float32)
    ok = np.empty((ny, nx), dtype=np.bool_)
    for i in range(n):
        g = group_of[i]
        table = tables[table_of[g]]
        q = qa[i]
        for y in range(ny):
            for x in range(nx):
                ok[y, x] = table[q[y, x]]
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
               tables: np.ndarray, table_of: np.ndarray, nodata: np.ndarray, ngroups: int) -> np.ndarray:
    """(items, bands, y, x) uint16 DNs + (items, [1,] y, x) uint16 QA → (groups, bands, y, x) float32.

    `tables` (k × 65536 bool) are the distinct usable-tables, `table_of[g]` the one of group g."""
    if qa.ndim == 4:  # map_blocks aligns dimensions, so the QA arrives with a unit band axis
        qa = qa[:, 0]
    return _fuse(np.ascontiguousarray(dn), np.ascontiguousarray(qa, dtype=np.uint16), group_of, factors, offsets,
                 tables, table_of, nodata, ngroups)


def group_tables(tables_per_group: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct tables (k × 65536) and each group's index into them."""
    distinct: list[np.ndarray] = []
    table_of = np.empty(len(tables_per_group), dtype=np.int64)
    for g, t in enumerate(tables_per_group):
        for k, d in enumerate(distinct):
            if d is t or np.array_equal(d, t):
                table_of[g] = k
                break
        else:
            table_of[g] = len(distinct)
            distinct.append(t)
    return np.stack(distinct) if distinct else np.zeros((0, 65536), np.bool_), table_of


def auto_chunk(ntime: int, nbands: int, budget: int = 64 * 2**20) -> int:
    """Spatial chunk side so one block of the calibrated cube (float32, all dates and bands)
    stays within `budget` bytes — the same budget the compositing kernels use, so they never
    re-split it — and a block's memory does not grow with the number of dates."""
    side = int(math.sqrt(budget / max(1, ntime * nbands * 4)))
    return int(min(2048, max(256, (side // 256) * 256)))
