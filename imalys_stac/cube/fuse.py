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

#: DNs and QA codes (items × (bands + 1) × y × x) of a whole load up to which `fuse_stack` runs in
#: numpy: a tutorial's stack takes it ~20 ms, numba's import and cache load ~0.5 s of CPU
SMALL_FUSE = 4 << 20


def fuse_stack(stack: np.ndarray, nbands: int, *, group_of: np.ndarray, factors: np.ndarray, offsets: np.ndarray,
               tables: np.ndarray, table_of: np.ndarray, nodata: np.ndarray, ngroups: int,
               small: bool = False) -> np.ndarray:
    """(items, bands + 1, y, x) uint16 — the DNs of `nbands` bands and the QA as the last band, as
    the reader delivers them — → (groups, bands, y, x) float32. Reads the reader's block in place
    (no copy of the DNs).

    `tables` (k × 65536 bool) are the distinct usable-tables, `table_of[g]` the one of group g.
    `small`: the whole load is small (see SMALL_FUSE; decided per load, not per block, so that the
    blocks of a large frame all take the compiled kernel): numpy computes the same values."""
    if stack.dtype != np.uint16:
        raise TypeError(f"fuse_stack needs uint16 DNs and QA, got {stack.dtype}")
    if small:
        return _fuse_numpy(stack, int(nbands), group_of, factors, offsets, tables, table_of, nodata, int(ngroups))
    # the output is allocated by numpy, not inside the kernel: numpy asks for huge pages on large
    # arrays, numba's allocator does not, and first-touch page faults of a fresh 50 MB block cost
    # more than the kernel's work (measured 51 vs 5 ms for the calibration of 8 × 6 × 512²)
    out = np.empty((int(ngroups), int(nbands)) + stack.shape[2:], dtype=np.float32)
    from .fuse_kernels import _fuse

    return _fuse(np.ascontiguousarray(stack), int(nbands), group_of, factors, offsets, tables, table_of, nodata,
                 ngroups, out)


def _fuse_numpy(stack, nb, group_of, factors, offsets, tables, table_of, nodata, ngroups) -> np.ndarray:
    """`fuse_kernels._fuse` in numpy, operation for operation: DN·factor + offset in float64, then
    float32; a group's first tile writes every pixel (NaN where unusable), later tiles of the same
    day fill only what is still NaN."""
    out = np.empty((ngroups, nb) + stack.shape[2:], dtype=np.float32)
    seen = np.zeros(ngroups, dtype=bool)
    nan = np.float32(np.nan)
    for i in range(stack.shape[0]):
        g = int(group_of[i])
        ok = tables[table_of[g]][stack[i, nb]]
        first = not seen[g]
        seen[g] = True
        for b in range(nb):
            v = stack[i, b]
            use = ok & (v != nodata[b])
            value = (v * np.float64(factors[g, b]) + np.float64(offsets[g, b])).astype(np.float32)
            if first:
                out[g, b] = np.where(use, value, nan)
            else:
                dst = out[g, b]
                fill = use & np.isnan(dst)
                dst[fill] = value[fill]
    out[~seen] = nan
    return out


def fuse_block(dn: np.ndarray, qa: np.ndarray, **kw) -> np.ndarray:
    """(items, bands, y, x) uint16 DNs + (items, [1,] y, x) uint16 QA → (groups, bands, y, x)
    float32: `fuse_stack` of the two put together (a copy; the loader passes its block whole)."""
    if qa.ndim == 4:  # map_blocks aligns dimensions, so the QA arrives with a unit band axis
        qa = qa[:, 0]
    stack = np.concatenate([np.asarray(dn, np.uint16), np.asarray(qa, np.uint16)[:, None]], axis=1)
    return fuse_stack(stack, dn.shape[1], **kw)


#: quality codes (tiles × pixels) up to which the count runs in numpy instead of the kernel
SMALL_COUNT = 1 << 20


def count_present_clear(qa: np.ndarray, present_table: np.ndarray, clear_table: np.ndarray,
                        keep: np.ndarray | None = None) -> tuple[int, int]:
    """Pixels of one acquisition's block (tiles × y × x uint16 quality codes) where some tile has
    data (`present_table`) and where some tile is usable (`clear_table`), inside `keep` (y × x
    bool) if given — the import's quality count, over the same tables the fused kernel indexes.
    One pass without temporaries (numpy's table[qa].any(0) took ~10 ms per 1024² block)."""
    qa = np.ascontiguousarray(qa, dtype=np.uint16)
    ny, nx = qa.shape[1:]
    if qa.size <= SMALL_COUNT:
        # small blocks (a tutorial's whole frame): numpy takes a few milliseconds, and the chain
        # needs no compiled kernel at all (numba's import and cache load: ~0.7 s of CPU)
        keep_b = np.ones((ny, nx), bool) if keep is None else np.asarray(keep, dtype=bool)
        qa_i = qa.astype(np.intp)
        present_any = np.asarray(present_table, dtype=bool)[qa_i].any(axis=0) & keep_b
        clear_any = np.asarray(clear_table, dtype=bool)[qa_i].any(axis=0) & keep_b
        return int(present_any.sum()), int(clear_any.sum())
    from .fuse_kernels import _count_present_clear

    k = np.ones((ny, nx), np.uint8) if keep is None else np.ascontiguousarray(keep, dtype=np.bool_).view(np.uint8)
    p, c = _count_present_clear(qa, np.ascontiguousarray(present_table, dtype=np.bool_).view(np.uint8),
                                np.ascontiguousarray(clear_table, dtype=np.bool_).view(np.uint8), k)
    return int(p), int(c)


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
