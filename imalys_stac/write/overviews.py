"""The first `average` overview of a float raster (or of its scaled integers), computed while its blocks are written.

GDAL's `build_overviews` reads the finished image back once more and works single-threaded per
band (1.0 s for 6 × 3558 × 3635 float32, 3.4 s for 6 × 7800²: a quarter of the COG's writing
time, after all computing has ended). Here the ×2 level is computed strip by strip as soon as
the full-resolution rows under a strip are written — in the writer's thread, while the scheduler
computes the next blocks — into GDAL's external overview file `<source>.ovr`; GDAL then builds the
smaller levels from that quarter-size file, and the COG driver copies them all.

The rule is GDAL's `average`: the destination pixel j covers the source interval
[j·r, (j+1)·r), r = n_src / n_dst (for odd sizes slightly below 2, so footprints drift across
pixels), each source pixel weighted by the part of it covered, nodata and NaN left out; NaN where
no valid pixel is covered. Exact everywhere; GDAL's own kernel, working in chunks of lines, leaves
out a partly covered line at some chunk edges (tests compare with GDAL's overviews and with the
COG check's independent reference, `write.cog.expected_average`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit
from rasterio.windows import Window

from .blocks import DatasetSink

#: overview rows computed per strip (the strip reads 2 × this + 2 source rows of every band)
STRIP_ROWS = 128


def footprints(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per destination pixel along one axis: first source pixel, end source pixel (exclusive) and
    the weights of the source pixels in between (n_dst × k, k = the longest footprint).
    `write.cog._footprint` states the same rule for the COG check on purpose, so that the check
    does not inherit a mistake made here."""
    r = n_src / n_dst
    lo = np.empty(n_dst, np.int64)
    hi = np.empty(n_dst, np.int64)
    for j in range(n_dst):
        lo[j] = int(j * r + 1e-8)
        hi[j] = min(max(int(math.ceil((j + 1) * r - 1e-8)), lo[j] + 1), n_src)
    k = int((hi - lo).max()) if n_dst else 1
    w = np.zeros((n_dst, k))
    for j in range(n_dst):
        for m in range(hi[j] - lo[j]):
            s = lo[j] + m
            w[j, m] = min(s + 1, (j + 1) * r) - max(s, j * r)
    return lo, hi, w


@njit(nogil=True, cache=True)
def _average(src, row0, ylo, yhi, yw, xlo, xhi, xw, nodata, has_nodata, out):
    """out[b, j, i] = weighted mean of the valid src pixels under destination (j, i); src holds
    source rows from `row0`; ylo/yhi/yw for the strip's destination rows, xlo/xhi/xw all columns."""
    nb, ny, nx = out.shape
    nan = np.float32(np.nan)
    for b in range(nb):
        plane = src[b]
        for j in range(ny):
            dst = out[b, j]
            for i in range(nx):
                num = 0.0
                den = 0.0
                for m in range(yhi[j] - ylo[j]):
                    wy = yw[j, m]
                    row = plane[ylo[j] + m - row0]
                    for n in range(xhi[i] - xlo[i]):
                        v = row[xlo[i] + n]
                        if v == v and not (has_nodata and v == nodata):
                            w = wy * xw[i, n]
                            num += w * v
                            den += w
                dst[i] = np.float32(num / den) if den > 0 else nan
    return out


def average_level(src: np.ndarray, nodata: float | None, n_dst: tuple[int, int]) -> np.ndarray:
    """The whole ×2 (or any) `average` level of an in-memory (band, y, x) float array."""
    (dh, dw), (_, h, w) = n_dst, src.shape
    ylo, yhi, yw = footprints(h, dh)
    xlo, xhi, xw = footprints(w, dw)
    out = np.empty((src.shape[0], dh, dw), np.float32)
    nd, has = (0.0, False) if nodata is None or math.isnan(nodata) else (float(nodata), True)
    return _average(np.ascontiguousarray(src), 0, ylo, yhi, yw, xlo, xhi, xw, nd, has, out)


class FirstLevelSink:
    """A block sink that writes full-resolution blocks into `full` (a GTiff open in "w+" mode) and,
    as soon as every row under a strip of the ×2 level is written, computes that strip and writes
    it into `level` (a GTiff of the level's size). Blocks may arrive in any order (a distributed
    scheduler delivers them as they finish): each source row counts the band-pixels written.

    `rows`: the full resolution's rows are kept in memory (a `tilerows.TileRows` writing `full`
    and `level`, the levels compressed as they are written) and the strips are computed from
    there, not read back from the file."""

    def __init__(self, full: Any, level: Any, nodata: float | None, rows: Any = None, level_rows: Any = None):
        self.full, self.level = full, level
        self.rows, self.level_rows = rows, level_rows
        self.write_full = rows if rows is not None else DatasetSink(full)
        self.bands, self.h, self.w = full.count, full.height, full.width
        self.ylo, self.yhi, self.yw = footprints(self.h, level.height)
        self.xlo, self.xhi, self.xw = footprints(self.w, level.width)
        self.nodata, self.has_nodata = (0.0, False) if nodata is None or math.isnan(nodata) else (float(nodata), True)
        self.written = np.zeros(self.h, np.int64)  # band-pixels written per source row
        self.strips = [(j, min(j + STRIP_ROWS, level.height)) for j in range(0, level.height, STRIP_ROWS)]
        self.pending = set(range(len(self.strips)))

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        b, y, x = key
        self.write_full[key] = value
        self.written[y] += (b.stop - b.start) * (x.stop - x.start)
        self._ready_strips(y.start, y.stop)

    def _ready_strips(self, r0: int, r1: int) -> None:
        full_row = self.bands * self.w
        for s in sorted(self.pending):
            j0, j1 = self.strips[s]
            lo, hi = int(self.ylo[j0]), int(self.yhi[j1 - 1])
            if hi <= r0 or lo >= r1 or not np.all(self.written[lo:hi] == full_row):
                continue
            self.pending.discard(s)
            if self.rows is not None:
                src = np.ascontiguousarray(self.rows.rows(lo, hi))
            else:
                src = self.full.read(window=Window(0, lo, self.w, hi - lo))
            out = np.empty((self.bands, j1 - j0, self.level.width), np.float32)
            _average(src, lo, self.ylo[j0:j1], self.yhi[j0:j1], self.yw[j0:j1], self.xlo, self.xhi, self.xw,
                     self.nodata, self.has_nodata, out)
            if self.level_rows is not None:
                self.level_rows[(slice(0, self.bands), slice(j0, j1), slice(0, self.level.width))] = self._as_level_type(out)
            else:
                self.level.write(self._as_level_type(out), window=Window(0, j0, self.level.width, j1 - j0))
        if self.rows is not None:  # the buffer may drop what no pending strip reads
            self.rows.keep_from = min((int(self.ylo[self.strips[s][0]]) for s in self.pending), default=self.h)
            self.rows.trim()

    def _as_level_type(self, out: np.ndarray) -> np.ndarray:
        """Float averages as the level stores them: integer levels (scaled int16) get the mean
        rounded half up, as GDAL rounds its integer averages, and nodata where none is valid."""
        dtype = np.dtype(self.level.dtypes[0])
        if np.issubdtype(dtype, np.floating):
            return out
        empty = np.isnan(out)
        rounded = np.floor(out + np.float32(0.5))
        rounded[empty] = self.nodata if self.has_nodata else 0
        return rounded.astype(dtype)

    def finish(self) -> None:
        for rows in (self.rows, self.level_rows):
            if rows is not None:
                rows.finish()
        if self.pending:
            raise RuntimeError(f"{len(self.pending)} overview strip(s) were never complete: rows of the image "
                               "were not written")
