"""Reading plans that follow the sources' internal tiles, and a per-process tile cache.

Archive members are tiled GeoTIFFs (USGS: 512 × 512 DEFLATE tiles). Decompressing a tile is
most of the cost of a read, so a read should decode every tile it needs exactly once:

- Output chunks follow the tiles: when the output grid is a source's own pixel grid or a crop of
  it (same CRS and pixel size, whole-pixel offset), the inner chunk boundaries are put on the
  source's tile edges (in output pixels), so each tile belongs to exactly one chunk
  (`aligned_chunks`). A frame that starts anywhere inside a tile no longer makes every chunk
  touch 3 × 3 tiles instead of 2 × 2.
- Where no alignment can serve every source (warping, several scenes or tilings on one grid),
  each plan knows how many chunks will use each of its tiles; a decoded tile stays in a cache
  shared by the chunks of the process until its last user took it, then it is dropped. A byte
  budget (`IMALYS_TILE_CACHE_MB`, default 768) bounds the cache: a tile evicted early is decoded
  again, and counted.
- Each source reads tile by tile through one rasterio dataset per thread, so the counters are
  exact: `tiles decoded` against `tiles needed` (distinct tiles touched) per load, logged at
  debug level when the load's last chunk is read, and appended as a JSON line to the file
  named by `IMALYS_READ_STATS` (the benchmarks read it).

Pixels are those of stackstac's reader: crops are copied (nearest neighbour on the same grid is a
copy), other grids are warped with GDAL (`rasterio.warp.reproject`) from the tiles around the
chunk; pixels outside a source, and its nodata, become `fill`. The bands of a scene are warped
together (`warp_together`: one GDAL call, without nodata masks where the window holds none), the
same pixels as one masked call per band.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import sys
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from ..errors import InputError
from ..gdalnames import gdal_name

log = logging.getLogger("imalys_stac.read")

# Tiles are decoded once and handed on, never read again through GDAL, so GDAL's own block cache
# (default 5 % of RAM, 1.2 GiB here) only held copies: measured on 8 dates of a 3558 × 3635 frame,
# peak RSS 2.5 GiB with the default, 1.1 GiB with 128 MB, same speed. The COG writer's intermediate
# is uncompressed and band-interleaved (whole tiles written; a partly written one is re-read
# from the OS cache at no decoding cost), so it needs little: with 64 MB instead of 256–512 MB the
# peak RSS of a chain fell by 0.4–1.0 GB (8 and 16 dates of the frame, a 7800² footprint) at the
# same speed. GDAL reads the setting when its cache is first used; a value set by the user wins.
# The runtime sets it (runtime.names.GDAL_ENV, applied when a run starts; IMALYS_GDAL_CACHEMAX),
# not this module's import.

# Each tile is read once, so a per-handle VSI cache (the runtime turns it on, 64 MB per open
# file) only keeps compressed bytes that are never read again: measured on 8 dates of a
# 3558 × 3635 frame, one handle per member and thread grew the reduce to 2.8 GiB; without it,
# 1 GiB.
_GDAL_OPEN = dict(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", VSI_CACHE="FALSE")
_EPS = 1e-6


@dataclass(frozen=True)
class SourceInfo:
    """Header of one single-band raster: grid and internal tiling."""

    href: str
    crs_wkt: str
    epsg: int | None
    transform: Affine
    width: int
    height: int
    block: tuple[int, int]  # (rows, cols) of an internal tile (strips: rows × width)
    nodata: float | None
    dtype: str


@lru_cache(maxsize=4096)
def source_info(href: str) -> SourceInfo:
    with rasterio.Env(**_GDAL_OPEN), rasterio.open(gdal_name(href)) as ds:
        if ds.count != 1:
            raise InputError(f"{href} has {ds.count} bands; each asset must be one band")
        return SourceInfo(href, ds.crs.to_wkt() if ds.crs else "", ds.crs.to_epsg() if ds.crs else None,
                          ds.transform, ds.width, ds.height, tuple(ds.block_shapes[0]), ds.nodata, ds.dtypes[0])


def source_infos(hrefs: Sequence[str]) -> list[SourceInfo]:
    """Headers of many sources, opened two at a time (opening a tar member is I/O bound)."""
    from concurrent.futures import ThreadPoolExecutor

    unique = list(dict.fromkeys(hrefs))
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(unique)))) as pool:
        infos = dict(zip(unique, pool.map(source_info, unique)))
    return [infos[h] for h in hrefs]


@dataclass(frozen=True)
class OutGrid:
    epsg: int
    transform: Affine
    height: int
    width: int


def crop_offset(src: SourceInfo, grid: OutGrid) -> tuple[int, int] | None:
    """(row, col) of the output grid's first pixel in the source's pixels when the output grid is
    the source's grid or a crop/extension of it (same CRS, same pixel size, whole-pixel offset);
    None when the source must be warped."""
    if src.epsg is None or src.epsg != grid.epsg:
        return None
    s, g = src.transform, grid.transform
    if s.b or s.d or g.b or g.d or abs(s.a - g.a) > _EPS * abs(g.a) or abs(s.e - g.e) > _EPS * abs(g.e):
        return None
    col = (g.c - s.c) / s.a
    row = (g.f - s.f) / s.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(row)), int(round(col))


def aligned_chunks(n: int, target: int, phase: int, tile: int) -> tuple[int, ...]:
    """Chunk sizes along an axis of `n` output pixels, none larger than `target` (so later steps
    never re-split them across rows), whose inner boundaries follow the tiles: output pixel p
    starts a tile when (p + phase) % tile == 0. The step is a whole number of tiles, or — when
    `target` is smaller than a tile — a tile halved until it fits (each tile then serves a few
    chunks, through the tile cache). The first and last chunks may be thinner."""
    if target >= tile:
        step = (target // tile) * tile
    else:
        step = tile
        while step > target and step % 2 == 0 and step > 16:
            step //= 2
    edge = (-phase) % min(step, tile)
    edges = [0] + ([edge] if 0 < edge < n else [])
    edge = edge or step
    while edge < n:
        if edge != edges[-1]:
            edges.append(edge)
        edge += step
    edges.append(n)
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


def regular_chunks(n: int, target: int) -> tuple[int, ...]:
    k = max(1, math.ceil(n / target))
    return tuple(min(target, n - i * target) for i in range(k))


# ------------------------------------------------------------------ per-process state


class _TileCache:
    """Decoded tiles kept for their later users, in LRU order, within a byte budget."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tiles: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.pending: dict[tuple, threading.Event] = {}  # tiles being decoded by another thread
        self.nbytes = 0
        self.peak = 0

    @property
    def budget(self) -> int:
        """`IMALYS_TILE_CACHE_MB` when set; else 768 MB, at most a sixteenth of the memory limit
        of the Dask worker this runs in. On a cluster a tile's users are spread over the workers,
        so a worker's count of uses left rarely reaches 0 and its tiles stay until the budget
        evicts them: a fixed 768 MB grew every worker with the area (1 GB workers paused)."""
        from ..settings import current

        mb = current().tile_cache_mb
        if mb is not None:
            return int(mb * 2**20)
        limit = _worker_memory_limit()
        return min(768 * 2**20, limit // 16) if limit else 768 * 2**20

    def fetch(self, key: tuple, last: bool, decode, keep: bool) -> tuple[np.ndarray, bool]:
        """The tile from the cache, or decoded here (`decode()`) and kept when `keep`; a tile that
        another thread is decoding is waited for, not decoded twice. Returns (tile, decoded)."""
        while True:
            with self.lock:
                a = self.tiles.get(key)
                if a is not None:
                    if last:
                        del self.tiles[key]
                        self.nbytes -= a.nbytes
                    else:
                        self.tiles.move_to_end(key)
                    return a, False
                event = self.pending.get(key)
                if event is None:
                    event = self.pending[key] = threading.Event()
                    break
            event.wait()
        try:
            a = decode()
            if keep:
                self.put(key, a)
        finally:
            with self.lock:
                del self.pending[key]
            event.set()
        return a, True

    def put(self, key: tuple, a: np.ndarray) -> None:
        with self.lock:
            if key in self.tiles:
                return
            self.tiles[key] = a
            self.nbytes += a.nbytes
            while self.nbytes > self.budget and len(self.tiles) > 1:
                _, old = self.tiles.popitem(last=False)
                self.nbytes -= old.nbytes
            self.peak = max(self.peak, self.nbytes)


_LIMIT: list[int] = []  # this process's Dask worker memory limit, once found


def _worker_memory_limit() -> int | None:
    """The memory limit of the distributed worker running this thread's task (None outside one)."""
    if _LIMIT:
        return _LIMIT[0] or None
    if "distributed" not in sys.modules:
        # a distributed worker has imported distributed long before its first task; importing
        # it here to find no worker cost the threaded scheduler ~0.5 s per run
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
        limit = worker.memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):
        return None
    _LIMIT.append(int(limit or 0))
    if limit:
        _small_gdal_cache(int(limit) // 32)
        _trim_every_second(worker)
    return _LIMIT[0] or None


def _trim_every_second(worker) -> None:
    """`_trim_heap` once a second on the worker's event loop, also while no task runs: a worker
    paused for memory runs no read, so a trim after reads alone never came (measured: paused
    1 GB workers at 770–788 MB went to 509–522 MB with one trim, and ran again)."""
    def start() -> None:
        from tornado.ioloop import PeriodicCallback

        pc = PeriodicCallback(lambda: _trim_heap(every=0.0), 1000)
        worker.periodic_callbacks["imalys-trim-heap"] = pc
        pc.start()

    try:
        worker.loop.add_callback(start)
    except Exception:  # noqa: BLE001 - a worker without an event loop: trims after reads only
        pass


def _small_gdal_cache(nbytes: int) -> None:
    """GDAL's block cache on a worker: tiles are decoded once and kept (if at all) in the tile
    cache, so GDAL's copy of each is never read again; on 1 GB workers of bench_area it held
    119 MB (its whole eighth of the limit) at 1,433 × 947 px. Set through the GDAL library
    rasterio loaded; nothing happens where it cannot be found."""
    import ctypes
    import glob

    import rasterio

    here = os.path.dirname(rasterio.__file__)
    for lib in glob.glob(os.path.join(here, "..", "rasterio.libs", "libgdal*")) + glob.glob(os.path.join(here, ".libs", "libgdal*")):
        try:
            gdal = ctypes.CDLL(lib)
            gdal.GDALSetCacheMax64.argtypes = [ctypes.c_int64]
            gdal.GDALSetCacheMax64(max(16 * 2**20, nbytes))
        except (OSError, AttributeError):
            continue
        return


_TRIMMED = [0.0]


def _trim_heap(every: float = 2.0) -> None:
    """On a worker with a memory limit, at most every `every` s: give the heap's free pages back
    to the system (glibc `malloc_trim`). Tiles, source windows and blocks of many sizes come and
    go; the freed memory stayed in the process (measured on 1 GB workers of bench_area at 1,433 ×
    947 px: 705–770 MB of heap, 405 MB of it free) and counts against the worker's limit."""
    import time

    if not (_LIMIT and _LIMIT[0]) or time.monotonic() - _TRIMMED[0] < every:
        return
    _TRIMMED[0] = time.monotonic()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


_CACHE = _TileCache()


class _KeptTiles:
    """Tiles one pass decoded, kept for the next pass over the same tiles of the same files — the
    import's quality count and the reduce after it in one chain both read the quality band: kept,
    its tiles are decoded once. Within a byte budget (what does not fit is decoded again); a tile
    is handed out once and dropped (the tile cache then serves its other users)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tiles: dict[tuple, np.ndarray] = {}
        self.nbytes = 0
        self.budget = 0  # 0: not keeping

    def start(self, budget: int) -> None:
        with self.lock:
            self.tiles.clear()
            self.nbytes, self.budget = 0, budget

    def stop(self) -> None:
        with self.lock:
            self.budget = 0

    def clear(self) -> None:
        with self.lock:
            self.tiles.clear()
            self.nbytes = 0

    def offer(self, key: tuple, a: np.ndarray) -> None:
        with self.lock:
            if self.budget and self.nbytes + a.nbytes <= self.budget and key not in self.tiles:
                self.tiles[key] = a
                self.nbytes += a.nbytes

    def take(self, key: tuple) -> np.ndarray | None:
        if not self.tiles:  # unlocked peek: the common case, nothing kept
            return None
        with self.lock:
            a = self.tiles.pop(key, None)
            if a is not None:
                self.nbytes -= a.nbytes
            return a


_KEPT = _KeptTiles()


@contextlib.contextmanager
def keep_decoded_tiles(enabled: bool = True, budget_mb: float | None = None) -> Iterator[None]:
    """Tiles decoded by reads inside this block are kept for one later read of the same tiles in
    this process (at most `budget_mb`, default half the tile cache's budget; tiles kept by an
    earlier block are dropped). With a distributed client the reads run on the workers and
    nothing is kept. `enabled` False: nothing kept (only the earlier block's tiles dropped)."""
    if not enabled:
        _KEPT.start(0)
        yield
        return
    _KEPT.start(int(budget_mb * 2**20) if budget_mb is not None else _CACHE.budget // 2)
    try:
        yield
    finally:
        _KEPT.stop()


def drop_kept_tiles() -> None:
    """Forget the tiles `keep_decoded_tiles` kept (their later read did not come)."""
    _KEPT.clear()
_LOCAL = threading.local()
_OPENED = 0  # datasets opened by this process (one per source and reading thread)
_STATS_LOCK = threading.Lock()
#: per load token: tiles needed, tiles decoded, uses left, chunks, sources
STATS: dict[str, dict] = {}
#: per source plan: uses left per tile in this process
_LEFT: dict[str, np.ndarray] = {}


def _stat(token: str) -> dict:
    return STATS.setdefault(token, {"needed": 0, "decoded": 0, "reused": 0, "left": 0, "chunks": 0, "sources": 0})


def _dataset(href: str):
    """This thread's open dataset for `href` (rasterio datasets are not thread-safe)."""
    handles = getattr(_LOCAL, "handles", None)
    if handles is None:
        handles = _LOCAL.handles = OrderedDict()
    ds = handles.get(href)
    if ds is None:
        with rasterio.Env(**_GDAL_OPEN):
            ds = rasterio.open(gdal_name(href))
        handles[href] = ds
        global _OPENED
        _OPENED += 1
        while len(handles) > 256:
            _, old = handles.popitem(last=False)
            old.close()
    else:
        handles.move_to_end(href)
    return ds


def tile_stats(token: str | None = None) -> dict:
    """Counters of one load (or of all loads of this process)."""
    with _STATS_LOCK:
        rows = [STATS[token]] if token else list(STATS.values())
        keys = ("needed", "decoded", "reused", "chunks", "sources")
        out = {k: sum(r[k] for r in rows) for k in keys}
    out["cache_peak_mib"] = round(_CACHE.peak / 2**20, 1)
    out["datasets_opened"] = _OPENED
    return out


# ------------------------------------------------------------------ plans


@functools.lru_cache(maxsize=1 << 16)
def _bounds_in(epsg: int, crs_wkt: str, left: float, bottom: float, right: float, top: float) -> tuple[float, ...]:
    """A chunk's bounds in a source's CRS: shared by every band and date in that CRS (once per
    chunk and CRS instead of once per chunk and source: most of a large graph's build time)."""
    return transform_bounds(rasterio.crs.CRS.from_epsg(epsg), crs_wkt, left, bottom, right, top, densify_pts=21)


class SourcePlan:
    """How the chunks of one output grid read one source: which tiles each chunk needs and how
    many chunks use each tile. Small and picklable (a dask graph holds one per source); the
    per-process counters and cache are found again by `token` after unpickling."""

    def __init__(self, info: SourceInfo, grid: OutGrid, ychunks: Sequence[int], xchunks: Sequence[int],
                 resampling: Resampling, dtype: np.dtype, fill, token: str, origin: tuple[int, int] = (0, 0),
                 memo: dict | None = None):
        self.info = info
        self.grid = grid
        self.resampling = resampling
        self.dtype = np.dtype(dtype)
        self.fill = fill
        self.token = token
        self.key = uuid.uuid4().hex
        self.offset = crop_offset(info, grid)
        bh, bw = info.block
        self.ntiles = (math.ceil(info.height / bh), math.ceil(info.width / bw))
        # sources on the same grid and tiling (the bands of an image, and often its other dates)
        # use their tiles alike: counted once per read (`memo`), not once per source — the count
        # walks every chunk, most of a large graph's build time
        shape = (info.crs_wkt, tuple(info.transform), info.width, info.height, info.block,
                 self.resampling == Resampling.nearest, origin, tuple(ychunks), tuple(xchunks))
        if memo is not None and shape in memo:
            self.uses = memo[shape]
            return
        self.uses = self._count_uses(ychunks, xchunks, origin, {} if memo is None else memo)
        if memo is not None:
            memo[shape] = self.uses

    def _count_uses(self, ychunks: Sequence[int], xchunks: Sequence[int], origin: tuple[int, int],
                    memo: dict) -> np.ndarray:
        """Chunks using each tile: `tiles_of` of every chunk (whose first pixel in the grid is
        `origin` + the sizes before it), as arrays over all chunks at once — the same windows
        `source_window` gives, in the same floating-point steps."""
        info = self.info
        bh, bw = info.block
        hs, ws = np.asarray(ychunks, np.int64), np.asarray(xchunks, np.int64)
        ys0 = origin[0] + np.concatenate(([0], np.cumsum(hs)[:-1])).astype(np.int64)
        xs0 = origin[1] + np.concatenate(([0], np.cumsum(ws)[:-1])).astype(np.int64)
        ys1, xs1 = ys0 + hs, xs0 + ws
        if self.offset is not None:
            oy, ox = self.offset
            r0, r1 = np.broadcast_to((ys0 + oy)[:, None], (hs.size, ws.size)), np.broadcast_to((ys1 + oy)[:, None], (hs.size, ws.size))
            c0, c1 = np.broadcast_to((xs0 + ox)[None], (hs.size, ws.size)), np.broadcast_to((xs1 + ox)[None], (hs.size, ws.size))
            ok = np.ones((hs.size, ws.size), bool)
        else:
            key = ("bounds", self.grid, info.crs_wkt, origin, tuple(ychunks), tuple(xchunks))
            if key not in memo:  # once per CRS: every band and date in it shares the chunks' bounds
                memo[key] = self._chunk_bounds(ys0, ys1, xs0, xs1)
            bl, bb, br, bt, ok = memo[key]
            inv = ~info.transform
            cols = [x * inv.a + y * inv.b + inv.c for x, y in ((bl, bt), (br, bt), (bl, bb), (br, bb))]
            rows = [x * inv.d + y * inv.e + inv.f for x, y in ((bl, bt), (br, bt), (bl, bb), (br, bb))]
            margin = 2 if self.resampling == Resampling.nearest else 3
            r0 = np.floor(np.minimum.reduce(rows)) - margin
            r1 = np.ceil(np.maximum.reduce(rows)) + margin
            c0 = np.floor(np.minimum.reduce(cols)) - margin
            c1 = np.ceil(np.maximum.reduce(cols)) + margin
            r0, r1, c0, c1 = (np.where(ok, v, 0).astype(np.int64) for v in (r0, r1, c0, c1))
        r0, c0 = np.maximum(r0, 0), np.maximum(c0, 0)
        r1, c1 = np.minimum(r1, info.height), np.minimum(c1, info.width)
        ok = ok & (r0 < r1) & (c0 < c1)
        t0, t1 = r0[ok] // bh, (r1[ok] - 1) // bh + 1
        u0, u1 = c0[ok] // bw, (c1[ok] - 1) // bw + 1
        diff = np.zeros((self.ntiles[0] + 1, self.ntiles[1] + 1), np.int64)  # rectangles, summed
        np.add.at(diff, (t0, u0), 1)
        np.add.at(diff, (t0, u1), -1)
        np.add.at(diff, (t1, u0), -1)
        np.add.at(diff, (t1, u1), 1)
        return diff.cumsum(0).cumsum(1)[:-1, :-1].astype(np.int32)

    def _chunk_bounds(self, ys0, ys1, xs0, xs1):
        """Each chunk's bounds in this source's CRS (as `source_window` computes them) and
        whether they could be computed."""
        g = self.grid.transform
        shape = (ys0.size, xs0.size)
        out = [np.zeros(shape) for _ in range(4)]
        ok = np.ones(shape, bool)
        for i, (y0, y1) in enumerate(zip(ys0.tolist(), ys1.tolist())):
            for j, (x0, x1) in enumerate(zip(xs0.tolist(), xs1.tolist())):
                left, top = g @ (x0, y0)
                right, bottom = g @ (x1, y1)
                try:
                    b = _bounds_in(self.grid.epsg, self.info.crs_wkt,
                                   min(left, right), min(top, bottom), max(left, right), max(top, bottom))
                except Exception:
                    ok[i, j] = False
                    continue
                for k in range(4):
                    out[k][i, j] = b[k]
        return (*out, ok)

    # -- geometry

    def source_window(self, y0: int, y1: int, x0: int, x1: int, clip: bool = True) -> tuple[int, int, int, int] | None:
        """Source pixels (row0, row1, col0, col1) the output chunk needs, clipped to the source
        (`clip`: else as computed, possibly beyond the source's edges); None when the chunk misses
        the source."""
        info = self.info
        if self.offset is not None:
            oy, ox = self.offset
            r0, r1, c0, c1 = y0 + oy, y1 + oy, x0 + ox, x1 + ox
        else:
            g = self.grid.transform
            left, top = g @ (x0, y0)
            right, bottom = g @ (x1, y1)
            try:
                l, b, r, t = _bounds_in(self.grid.epsg, info.crs_wkt,
                                        min(left, right), min(top, bottom), max(left, right), max(top, bottom))
            except Exception:
                return None
            inv = ~info.transform
            cols, rows = zip(*(inv @ (x, y) for x, y in ((l, t), (r, t), (l, b), (r, b))))
            margin = 2 if self.resampling == Resampling.nearest else 3
            r0, r1 = math.floor(min(rows)) - margin, math.ceil(max(rows)) + margin
            c0, c1 = math.floor(min(cols)) - margin, math.ceil(max(cols)) + margin
        if not clip:
            return r0, r1, c0, c1
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, info.height), min(c1, info.width)
        if r0 >= r1 or c0 >= c1:
            return None
        return r0, r1, c0, c1

    def tiles_of(self, y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int] | None:
        w = self.source_window(y0, y1, x0, x1)
        if w is None:
            return None
        r0, r1, c0, c1 = w
        bh, bw = self.info.block
        return r0 // bh, (r1 - 1) // bh + 1, c0 // bw, (c1 - 1) // bw + 1

    # -- reading

    def _register(self) -> np.ndarray:
        """This process's count of uses left per tile (shared by every copy of the plan: a
        distributed worker unpickles one per task)."""
        with _STATS_LOCK:
            left = _LEFT.get(self.key)
            if left is None:
                left = _LEFT[self.key] = self.uses.copy()
                s = _stat(self.token)
                s["needed"] += int((self.uses > 0).sum())
                s["left"] += int(self.uses.sum())
                s["sources"] += 1
            return left

    def _tile(self, ty: int, tx: int) -> np.ndarray:
        counts = self._register()
        with _STATS_LOCK:
            counts[ty, tx] -= 1
            if counts[ty, tx] < 0:  # the same graph computed again: a new pass over the tiles
                counts[ty, tx] = self.uses[ty, tx] - 1
            left = int(counts[ty, tx])
        bh, bw = self.info.block
        kept_key = (self.info.href, self.info.block, ty, tx)
        reused = False

        def decode() -> np.ndarray:
            nonlocal reused
            a = _KEPT.take(kept_key)
            if a is not None:
                reused = True
                return a
            win = Window(tx * bw, ty * bh, min(bw, self.info.width - tx * bw), min(bh, self.info.height - ty * bh))
            try:
                a = _dataset(self.info.href).read(1, window=win)
            except rasterio.errors.RasterioIOError as exc:  # corrupt tiles: name the archive and member
                from ..archives.container import unreadable_pixels

                raise unreadable_pixels(self.info.href, exc) from exc
            _KEPT.offer(kept_key, a)
            return a

        a, decoded = _CACHE.fetch((self.key, ty, tx), left <= 0, decode, keep=left > 0)
        with _STATS_LOCK:
            s = _stat(self.token)
            s["decoded"] += decoded and not reused
            s["reused"] += reused
            s["left"] -= 1
            done = s["left"] == 0
        if done:
            _report(self.token)
        return a

    def _gather(self, src: np.ndarray, w: tuple[int, int, int, int]) -> None:
        """Fill `src` with the source pixels of window w = (row0, row1, col0, col1), tile by tile."""
        r0, r1, c0, c1 = w
        bh, bw = self.info.block
        for ty in range(r0 // bh, (r1 - 1) // bh + 1):
            for tx in range(c0 // bw, (c1 - 1) // bw + 1):
                t = self._tile(ty, tx)
                ty0, tx0 = ty * bh, tx * bw
                a0, a1 = max(r0, ty0), min(r1, ty0 + t.shape[0])
                b0, b1 = max(c0, tx0), min(c1, tx0 + t.shape[1])
                src[a0 - r0:a1 - r0, b0 - c0:b1 - c0] = t[a0 - ty0:a1 - ty0, b0 - tx0:b1 - tx0]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The output chunk rows y0:y1, cols x0:x1 of this source, `dtype`, `fill` outside."""
        if self.offset is None:
            return warp_together([self], y0, y1, x0, x1)[0]
        out = np.empty((y1 - y0, x1 - x0), dtype=self.dtype)
        self.read_into(out, y0, y1, x0, x1)
        return out

    def read_into(self, out: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> None:
        """`read` of a crop (the grid is the source's own or a crop of it) into `out`, a view of
        the chunk's block: the tiles are copied straight into it, the one copy a crop needs."""
        self._register()
        w = self.source_window(y0, y1, x0, x1)
        if w is None:
            out[...] = self.fill
            return
        r0, r1, c0, c1 = w
        assert self.offset is not None, "read_into reads crops of the grid only (see read)"
        oy, ox = self.offset
        a0, a1, b0, b1 = r0 - oy - y0, r1 - oy - y0, c0 - ox - x0, c1 - ox - x0
        out[:a0] = self.fill
        out[a1:] = self.fill
        out[a0:a1, :b0] = self.fill
        out[a0:a1, b1:] = self.fill
        inner = out[a0:a1, b0:b1]
        self._gather(inner, w)
        nodata = self.info.nodata
        if nodata is not None and not _same(nodata, self.fill):
            inner[inner == nodata] = self.fill

    def warp_key(self) -> tuple:
        """Plans with equal keys (the bands of one scene) warp alike: one GDAL call serves them all."""
        i = self.info
        return (i.crs_wkt, i.transform, i.width, i.height, i.block, repr(i.nodata), i.dtype, self.resampling,
                self.dtype.str, repr(self.fill))


#: resamplings whose GDAL kernel gives the same pixels with and without a source nodata mask
#: when the source window holds no nodata pixel and is not cut by the source's edge (bit for bit,
#: tests/test_tiles.py); GDAL's masked bilinear kernel costs 3.4× its plain one
_UNMASKED_SAME = (Resampling.nearest, Resampling.bilinear)


def _nodata_mask(a: np.ndarray, value) -> np.ndarray:
    if isinstance(value, float) and math.isnan(value):
        return np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    return a == value


def warp_together(plans: Sequence[SourcePlan], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """(len(plans), y1 - y0, x1 - x0): the output chunk of sources that warp alike (equal
    `warp_key`: the bands of one scene), pixels identical to one GDAL call per band with its
    nodata mask (what stackstac does), at less cost:

    - no nodata in any band's window, which lies inside the source: one call for all bands
      without nodata masks (GDAL's plain kernel: the same pixels, 3.4× faster for bilinear);
    - the same nodata pixels in every band (a scene's fill): one call for all bands, masked (one
      coordinate transformation instead of one per band);
    - otherwise one call per band (GDAL fills a band's masked pixel from the others' validity when
      bands are warped together and their masks differ)."""
    first = plans[0]
    for p in plans:
        p._register()
    out = np.full((len(plans), y1 - y0, x1 - x0), first.fill, dtype=first.dtype)
    w = first.source_window(y0, y1, x0, x1)
    if w is None:
        return out
    r0, r1, c0, c1 = w
    src = np.empty((len(plans), r1 - r0, c1 - c0), dtype=first.info.dtype)
    for i, p in enumerate(plans):
        p._gather(src[i], w)
    g = first.grid.transform
    kw = dict(src_transform=first.info.transform @ Affine.translation(c0, r0), src_crs=first.info.crs_wkt,
              dst_transform=g @ Affine.translation(x0, y0), dst_crs=rasterio.crs.CRS.from_epsg(first.grid.epsg),
              dst_nodata=first.fill, resampling=first.resampling, init_dest_nodata=True, num_threads=1)
    nodata = first.info.nodata
    if nodata is None:
        reproject(src, out, src_nodata=None, **kw)
        return out
    masks = [_nodata_mask(src[i], nodata) for i in range(len(plans))]
    bare = [not m.any() for m in masks]
    plain = first.resampling in _UNMASKED_SAME and w == first.source_window(y0, y1, x0, x1, clip=False)
    if plain and all(bare):
        reproject(src, out, src_nodata=None, **kw)
    elif all(np.array_equal(m, masks[0]) for m in masks[1:]):
        reproject(src, out, src_nodata=nodata, UNIFIED_SRC_NODATA="YES", **kw)
    else:
        for i in range(len(plans)):
            reproject(src[i], out[i], src_nodata=None if plain and bare[i] else nodata, **kw)
    return out


def _same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def _report(token: str) -> None:
    s = tile_stats(token)
    log.debug("read %s: %d tiles decoded (%d kept from an earlier read) for %d needed (%.2f×) over %d chunk(s) of %d "
              "source(s); tile cache peak %.1f MiB", token[:8], s["decoded"], s["reused"], s["needed"],
              s["decoded"] / max(1, s["needed"]), s["chunks"], s["sources"], s["cache_peak_mib"])
    from ..settings import current

    path = current().read_stats
    if path:
        with _STATS_LOCK, open(path, "a") as fh:
            fh.write(json.dumps({"token": token, "pid": os.getpid(), **s}) + "\n")


class _Plans:
    """The plans of one read (time × band; None for a missing asset), one graph key."""

    def __init__(self, plans: list[list[SourcePlan | None]], token: str, dtype, fills):
        self.plans, self.token, self.dtype, self.fills = plans, token, np.dtype(dtype), fills
        # per time: the bands read on their own (crops, missing) and the groups of bands warped
        # together (one GDAL call per scene and resampling, see warp_together)
        self.alone: list[list[int]] = []
        self.warped: list[list[list[int]]] = []
        # the plans of each `warped` group, beside its band numbers (never None: a missing asset is alone)
        self.warped_plans: list[list[list[SourcePlan]]] = []
        for row in plans:
            groups: dict[tuple, list[tuple[int, SourcePlan]]] = {}
            alone = []
            for b, plan in enumerate(row):
                if plan is None or plan.offset is not None:
                    alone.append(b)
                else:
                    groups.setdefault(plan.warp_key(), []).append((b, plan))
            self.alone.append(alone)
            self.warped.append([[b for b, _ in group] for group in groups.values()])
            self.warped_plans.append([[plan for _, plan in group] for group in groups.values()])


def _read_chunk(p: _Plans, y0: int, y1: int, x0: int, x1: int, clip: tuple[slice, slice] | None = None) -> np.ndarray:
    """(time, band, y, x) block: every source of every (time, band) for one spatial chunk
    (`clip`: the part of it inside a window, see read_stack)."""
    nt, nb = len(p.plans), len(p.plans[0])
    out = np.empty((nt, nb, y1 - y0, x1 - x0), dtype=p.dtype)
    for t in range(nt):
        for b in p.alone[t]:
            plan = p.plans[t][b]
            if plan is None:
                out[t, b] = p.fills[b]
            else:
                plan.read_into(out[t, b], y0, y1, x0, x1)
        for bands, group in zip(p.warped[t], p.warped_plans[t]):
            block = warp_together(group, y0, y1, x0, x1)
            for i, b in enumerate(bands):
                out[t, b] = block[i]
    with _STATS_LOCK:
        _stat(p.token)["chunks"] += 1
    _trim_heap()
    return out if clip is None else np.ascontiguousarray(out[(slice(None), slice(None)) + clip])


def window_chunks(chunks: Sequence[int], start: int, stop: int) -> tuple[int, list[int], list[tuple[int, int]]]:
    """The chunks along one axis that meet pixels start:stop: (first chunk's first pixel, their
    full sizes, the (from, to) of each inside the window, relative to the chunk)."""
    if not 0 <= start < stop <= sum(chunks):
        raise ValueError(f"window {start}:{stop} is not inside 0:{sum(chunks)}")
    first, sizes, clips, edge = None, [], [], 0
    for n in chunks:
        a, b = max(start, edge), min(stop, edge + n)
        if a < b:
            first = edge if first is None else first
            sizes.append(n)
            clips.append((a - edge, b - edge))
        edge += n
    return int(first), sizes, clips  # type: ignore[arg-type]


def plan_chunks(infos: Sequence[SourceInfo], grid: OutGrid, target: int) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """Chunks of the output grid for these sources: aligned to the tiles of the sources that are
    crops of the grid (the most common tiling and phase, when they differ), regular otherwise.
    Returns (y chunks, x chunks, how)."""
    phases: Counter[tuple[int, int, int, int]] = Counter()
    for info in infos:
        off = crop_offset(info, grid)
        if off is not None:
            bh, bw = info.block
            if bh < info.height and bw < info.width:  # tiled, not striped
                phases[(bh, bw, off[0] % bh, off[1] % bw)] += 1
    if not phases:
        return regular_chunks(grid.height, target), regular_chunks(grid.width, target), "regular"
    (bh, bw, py, px), n = phases.most_common(1)[0]
    how = "aligned" if n == len(infos) else f"aligned for {n} of {len(infos)} sources"
    return aligned_chunks(grid.height, target, py, bh), aligned_chunks(grid.width, target, px, bw), how


def read_stack(hrefs: Sequence[Sequence[str | None]], grid: OutGrid, *, chunksize: int,
               resampling: Resampling | Sequence[Resampling], dtype, fill, name: str = "imalys-read",
               band_fill: Sequence | None = None, band_resampling: Sequence[Resampling | None] | None = None,
               window: tuple[int, int, int, int] | None = None):
    """Dask array (time, band, y, x) of the sources `hrefs[time][band]` (None: missing, all
    `fill`) on `grid`, each time row with its resampling (`band_resampling[b]`, when not None,
    overrides it for band b, e.g. nearest for a quality band; `band_fill[b]` its fill): one task
    per spatial chunk reads every source, each tile decoded once (see the module doc). Returns
    (array, how the chunks were planned).

    `window` = (row0, row1, col0, col1): only these pixels of `grid` (a part of a large grid, its
    graph bounded by the window). The chunks are still those of the whole grid, read whole and
    cut to the window where it crosses them, so every pixel is computed exactly as without a
    window (a warp depends on the chunk it is computed for)."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    nt, nb = len(hrefs), len(hrefs[0])
    rs = list(resampling) if isinstance(resampling, (list, tuple)) else [resampling] * nt
    flat = [h for row in hrefs for h in row if h is not None]
    infos = dict(zip(flat, source_infos(flat)))
    ychunks, xchunks, how = plan_chunks(list(infos.values()), grid, chunksize)
    oy = ox = 0
    yclip = [(0, h) for h in ychunks]
    xclip = [(0, w) for w in xchunks]
    if window is not None:
        oy, ychunks, yclip = window_chunks(ychunks, window[0], window[1])  # type: ignore[assignment]
        ox, xchunks, xclip = window_chunks(xchunks, window[2], window[3])  # type: ignore[assignment]
    token = uuid.uuid4().hex
    memo: dict = {}  # tile uses shared by sources on the same grid (see SourcePlan)
    fills = list(band_fill) if band_fill is not None else [fill] * nb
    brs = list(band_resampling) if band_resampling is not None else [None] * nb
    plans = [[None if h is None else SourcePlan(infos[h], grid, ychunks, xchunks, brs[b] if brs[b] is not None else rs[t],
                                                dtype, fills[b], token, origin=(oy, ox), memo=memo)
              for b, h in enumerate(hrefs[t])] for t in range(nt)]
    needed = sum(int((p.uses > 0).sum()) for row in plans for p in row if p is not None)
    log.debug("read plan %s: %d source(s) on %d×%d px, %s chunks %s×%s, %d tiles needed",
              token[:8], len(flat), grid.width, grid.height, how, ychunks[:3], xchunks[:3], needed)
    out_name = f"{name}-{token}"
    # the plans go into every task as a literal (the same object in-process; ~1 kB per source when
    # pickled): a shared graph key would be a common root of every read, and dask's ordering then
    # may run the reads of a whole row ahead of their consumers
    plans_obj = _Plans(plans, token, dtype, fills)
    layer: dict = {}
    y0 = oy
    for iy, (h, (ya, yb)) in enumerate(zip(ychunks, yclip)):
        x0 = ox
        for ix, (w, (xa, xb)) in enumerate(zip(xchunks, xclip)):
            whole = (ya, yb, xa, xb) == (0, h, 0, w)
            layer[(out_name, 0, 0, iy, ix)] = (_read_chunk, plans_obj, y0, y0 + h, x0, x0 + w) if whole else \
                (_read_chunk, plans_obj, y0, y0 + h, x0, x0 + w, (slice(ya, yb), slice(xa, xb)))
            x0 += w
        y0 += h
    graph = HighLevelGraph.from_collections(out_name, layer, dependencies=[])
    out_chunks = ((nt,), (nb,), tuple(b - a for a, b in yclip), tuple(b - a for a, b in xclip))
    return da.Array(graph, out_name, chunks=out_chunks, dtype=np.dtype(dtype)), how
