"""A block sink that hands a compressed GeoTIFF whole rows of tiles, so GDAL compresses each tile once.

Computed blocks follow the sources' tiles (a frame at any offset puts their edges anywhere), the
output's tiles are 512 px from its own corner: written straight through, a tile touched by two
blocks would be compressed when the first leaves GDAL's single "current block" of a
pixel-interleaved file, then decompressed and compressed again for the second. Here blocks are
copied into a buffer of rows; as soon as a whole row of tiles (or the image's last rows) is
complete it is written in one call, each tile whole, and GDAL's worker threads compress the
tiles while the scheduler computes the next blocks. The buffer holds the rows not yet written
(and those a reader of the rows, the first overview level, still needs): about one row of blocks.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rasterio.windows import Window


class TileRows:
    """Sink of (band, y, x) blocks of a `bands` × `height` × `width` image for `dst` (an open
    rasterio dataset of tiles `tile` rows tall, or None to only collect rows for `rows`)."""

    def __init__(self, dst: Any, bands: int, height: int, width: int, dtype: Any, tile: int, keep_read_rows: bool = False):
        self.dst, self.bands, self.height, self.width, self.tile = dst, bands, height, width, tile
        self.dtype = np.dtype(dtype)
        self.base = 0  # buffer row 0 is image row `base`
        self.buf = np.empty((bands, 0, width), self.dtype)
        self.filled = np.zeros(height, np.int64)  # band-pixels written per row
        self.complete = 0  # rows [0, complete) are complete
        self.written = 0  # rows [0, written) are in dst
        self.top = 0  # rows from `top` on hold nothing yet
        #: rows a reader still needs (from this row on): kept in the buffer beyond `written`
        self.keep_from = 0 if keep_read_rows else height

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        b, y, x = key
        if y.start < self.base:
            raise RuntimeError(f"rows {y.start}:{y.stop} written again after they were flushed")
        self._reserve(y.stop)
        self.top = max(self.top, y.stop)
        self.buf[b, y.start - self.base:y.stop - self.base, x] = value
        self.filled[y] += (b.stop - b.start) * (x.stop - x.start)
        full_row = self.bands * self.width
        while self.complete < self.height and self.filled[self.complete] == full_row:
            self.complete += 1
        self._write()
        self.trim()

    def _reserve(self, stop: int) -> None:
        rows = stop - self.base
        if rows <= self.buf.shape[1]:
            return
        # whole rows of tiles at a time (not doubling): the buffer is most of a write's memory
        grown = np.empty((self.bands, -(-rows // self.tile) * self.tile, self.width), self.dtype)
        grown[:, :self.top - self.base] = self.buf[:, :self.top - self.base]
        self.buf = grown

    def _write(self) -> None:
        end = self.complete if self.complete == self.height else self.complete - (self.complete - self.written) % self.tile
        if end <= self.written or self.dst is None:
            self.written = max(self.written, end)
            return
        for r0 in range(self.written, end, self.tile):
            r1 = min(r0 + self.tile, end)
            # one tile (all bands) per call: GDAL fills and flushes a pixel-interleaved block at
            # once; a window of many tiles goes band by band through its block cache, where a
            # block evicted before its last band is compressed, decoded and compressed again
            for c0 in range(0, self.width, self.tile):
                c1 = min(c0 + self.tile, self.width)
                self.dst.write(self.buf[:, r0 - self.base:r1 - self.base, c0:c1], window=Window(c0, r0, c1 - c0, r1 - r0))
        self.written = end

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Image rows [lo, hi) (complete ones) from the buffer."""
        if lo < self.base or hi > self.top or not np.all(self.filled[lo:hi] == self.bands * self.width):
            raise RuntimeError(f"rows {lo}:{hi} are not in the buffer ({self.base}:{self.complete})")
        return self.buf[:, lo - self.base:hi - self.base]

    def trim(self) -> None:
        """Drop the rows written to dst that no reader needs any more (shifting the rest down)."""
        drop = min(self.written, self.keep_from) - self.base
        if drop <= 0:
            return
        used = self.top - self.base
        if used > drop:
            self.buf[:, :used - drop] = self.buf[:, drop:used]
        self.base += drop

    def finish(self) -> None:
        if self.written < self.height:
            raise RuntimeError(f"rows {self.written}:{self.height} of the image were never complete")
