"""The import's quality count: per acquisition, the pixels of its grid where some tile has data
(present) and where some tile is usable under the mask rule (clear).

Two ways to the same numbers:

* :func:`quality_counts` — lazy Dask counts over the cube reader's quality band (any reader of
  ``cube.reader``, any scheduler: a distributed cluster counts where the archives are);
* :func:`count_quality` — the same chunks read with the project's tile reader in this process,
  counted with numpy, no Dask at all. A tutorial-sized import needs a few hundred KB of quality
  codes; building and running a Dask graph for them (and importing dask.array, which brings
  xarray and pandas along) cost ten times the count.

Both read the quality band on the same chunks (``tiles.plan_chunks``) with the same tile reader
code (``tiles.SourcePlan``) and count each block with ``fuse.count_present_clear``, over the
same lookup tables as the fused pixel kernel, so the stored quality describes exactly the pixels
a composite can use.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .fuse import SMALL_COUNT, count_present_clear
from .grid import Grid
from .quality import quality_band_of

if TYPE_CHECKING:
    from .load import SceneGroup
    from .reader import StackReader

DEFAULT_CHUNK = 1024  # QA-only passes (import quality); band cubes size their chunks with auto_chunk

#: quality codes (tiles × pixels, over all acquisitions) up to which `fits_in_process` says the
#: count runs in this process; above, the Dask graph spreads it over the scheduler's workers
IN_PROCESS_CODES = 16 * SMALL_COUNT


def quality_counts(group: SceneGroup, grid: Grid, rule: str | None, *, chunksize: int = DEFAULT_CHUNK,
                   region: np.ndarray | None = None, reader: StackReader | None = None) -> tuple[Any, Any]:
    """Lazy pixel counts of one acquisition on `grid`: (present, clear) as 0-d Dask arrays.

    present: some tile of the acquisition has data there (its quality band is not fill); clear:
    some tile is usable under `rule` — the same "any tile usable" the fused kernel merges by, and
    the same lookup tables, so the stored quality describes exactly the pixels a composite can
    use. `region` (bool y × x) restricts both counts to an exact frame polygon."""
    import dask.array as da

    from . import load  # the cube loader's reader seam (`_stack`); imported when a graph is built

    qband = quality_band_of([group])
    qa = load._stack(group.items, [qband.asset], grid, "nearest", chunksize, "uint16", qband.fill_value, reader=reader)
    qa_d = qa.data[:, 0].rechunk({0: -1})  # (time, y, x), all tiles of a block in one task
    present_t, clear_t = qband.table(None), qband.table(rule)

    def block_counts(block: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        present, clear = count_present_clear(block, present_t, clear_t, keep)
        return np.array([[[present, clear]]], dtype=np.int64)

    args = [qa_d]
    if region is not None:
        args.append(da.from_array(np.asarray(region, bool)[None], chunks=((1,),) + qa_d.chunks[1:]))
    per_block = da.map_blocks(lambda b, k=None: block_counts(b, None if k is None else k[0]), *args, dtype=np.int64,
                              chunks=((1,) * len(qa_d.chunks[0]), (1,) * len(qa_d.chunks[1]),
                                      (2,) * len(qa_d.chunks[2])), token="imalys-quality-count",
                              meta=np.empty((0, 0, 0), np.int64))  # given: inferring it runs the kernel
    return per_block[..., 0::2].sum(), per_block[..., 1::2].sum()


def count_quality(group: SceneGroup, grid: Grid, rule: str | None, *, chunksize: int = DEFAULT_CHUNK,
                  region: np.ndarray | None = None) -> tuple[int, int]:
    """(present, clear) of one acquisition on `grid`, computed now in this process: the quality
    band read chunk by chunk with the project's tile reader (the chunks `quality_counts` reads
    with it, so a warped tile gives the same pixels), each block counted as there."""
    from rasterio.enums import Resampling

    from .tiles import OutGrid, SourcePlan, _Plans, _read_chunk, plan_chunks, source_infos

    qband = quality_band_of([group])
    hrefs = [it.assets[qband.asset].href if qband.asset in it.assets else None for it in group.items]
    out_grid = OutGrid(grid.epsg, grid.transform, *grid.shape)
    present_t, clear_t = qband.table(None), qband.table(rule)
    fill = np.uint16(qband.fill_value)
    found = [h for h in hrefs if h is not None]
    infos = dict(zip(found, source_infos(found)))
    ychunks, xchunks, _ = plan_chunks(list(infos.values()), out_grid, chunksize)
    token = uuid.uuid4().hex  # one read, as the reader's (its tile counters and cache)
    memo: dict = {}
    plans = _Plans([[None if h is None else SourcePlan(infos[h], out_grid, ychunks, xchunks, Resampling.nearest,
                                                       np.dtype(np.uint16), fill, token, memo=memo)] for h in hrefs],
                   token, np.uint16, [fill])
    present = clear = 0
    y0 = 0
    for h in ychunks:
        x0 = 0
        for w in xchunks:
            block = _read_chunk(plans, y0, y0 + h, x0, x0 + w)[:, 0]  # the chunk as the Dask pass reads it
            keep = None if region is None else np.asarray(region, bool)[y0:y0 + h, x0:x0 + w]
            p, c = count_present_clear(block, present_t, clear_t, keep)
            present, clear = present + p, clear + c
            x0 += w
        y0 += h
    return present, clear


def fits_in_process(groups: Sequence[SceneGroup], grids: Sequence[Grid], chunksize: int = DEFAULT_CHUNK) -> bool:
    """Whether counting in this process (`count_quality`) serves these acquisitions better than a
    Dask graph: few quality codes in all, and blocks small enough for the numpy count (no
    compiled kernel to load)."""
    total = 0
    for g, grid in zip(groups, grids):
        rows, cols = grid.shape
        total += len(g.items) * rows * cols
        if len(g.items) * min(rows, chunksize) * min(cols, chunksize) > SMALL_COUNT:
            return False
    return total <= IN_PROCESS_CODES


__all__ = ["DEFAULT_CHUNK", "IN_PROCESS_CODES", "count_quality", "fits_in_process", "quality_counts"]
