"""The reader seam: how a cube's (time, band, y, x) digital numbers are read from its assets.

A cube (``cube.load``) asks a :class:`StackReader` for the stack of a :class:`StackRequest` (the
items' asset hrefs on an output grid, with resampling, fill and chunking) and gets a lazy Dask
array back. Three readers answer through this one seam:

* :class:`TilesReader` — the project's reader (``cube/tiles.py``: chunks on the sources' tile
  edges, each compressed tile decoded once); the default;
* :class:`StackstacReader` — stackstac (``stackstac.stack``), the design dependency, as before
  the tile reader; ``IMALYS_READER=stackstac`` picks it for a whole run (see :mod:`..settings`);
* :class:`AssetStack` with any per-asset :class:`Reader` (as stackstac's ``Reader`` protocol: made
  from an asset spec, ``read(window)`` → array): one task per chunk reads each asset's window.
  :class:`FakeReader` is such a reader with no files at all — for graph and planning tests.

Every reader is a small frozen value that pickles (it travels inside the graph to the workers).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class OutputGrid:
    """The pixel grid a stack is read onto (an affine transform's six numbers, north up or not)."""

    epsg: int
    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f
    height: int
    width: int


@dataclass(frozen=True)
class StackRequest:
    """What a cube asks of its reader: ``hrefs[time][band]`` (None: a missing asset, all fill) read
    onto ``grid``, each time with its resampling (``band_resampling[b]`` overrides it for band b,
    e.g. nearest for a quality band), ``band_fill[b]`` where a source has nodata or no pixel; only
    the rows/columns of ``window`` (row0, row1, col0, col1) if given, every pixel as in the whole.
    Resampling names are rasterio's (``"nearest"``, ``"bilinear"``, …)."""

    hrefs: tuple[tuple[str | None, ...], ...]
    grid: OutputGrid
    chunksize: int
    dtype: str
    resampling: tuple[str, ...]  # one per time
    band_fill: tuple[float, ...]
    band_resampling: tuple[str | None, ...]
    window: tuple[int, int, int, int] | None = None
    #: the items (pystac.Item or item dicts) and asset keys behind ``hrefs`` (what stackstac reads):
    #: ``items[t]``, ``keys[b]``
    items: tuple[Any, ...] = ()
    keys: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        r0, r1, c0, c1 = self.window or (0, self.grid.height, 0, self.grid.width)
        return len(self.hrefs), len(self.hrefs[0]) if self.hrefs else 0, r1 - r0, c1 - c0


@runtime_checkable
class StackReader(Protocol):
    """Reads a whole request into a lazy ``(time, band, y, x)`` Dask array of ``request.dtype``."""

    def stack(self, request: StackRequest) -> Any:
        ...


@dataclass(frozen=True)
class AssetSpec:
    """One asset of a request: its href, the grid it is read onto, its resampling, dtype and fill."""

    href: str
    grid: OutputGrid
    resampling: str
    dtype: str
    fill: float


@runtime_checkable
class Reader(Protocol):
    """One asset, opened from its spec (``open``) and read window by window, as stackstac's
    ``Reader``: ``read((row0, row1, col0, col1))`` → ``(row1 - row0, col1 - col0)`` array of the
    spec's dtype on the spec's grid. Pickleable."""

    def open(self, spec: AssetSpec) -> Reader:
        ...

    def read(self, window: tuple[int, int, int, int]) -> np.ndarray:
        ...


# --------------------------------------------------------------------------------- the project's
@dataclass(frozen=True)
class TilesReader:
    """The project's reader (:func:`imalys_stac.cube.tiles.read_stack`)."""

    name: str = "imalys-read"

    def stack(self, request: StackRequest) -> Any:
        from affine import Affine
        from rasterio.enums import Resampling

        from .tiles import OutGrid, read_stack

        g = request.grid
        dtype = np.dtype(request.dtype)
        cast = dtype.type
        data, _ = read_stack([list(row) for row in request.hrefs], OutGrid(g.epsg, Affine(*g.transform), g.height, g.width),
                             chunksize=request.chunksize, resampling=[Resampling[r] for r in request.resampling],
                             dtype=dtype, fill=cast(request.band_fill[0]) if request.band_fill else cast(0),
                             band_fill=[cast(f) for f in request.band_fill],
                             band_resampling=[None if r is None else Resampling[r] for r in request.band_resampling],
                             window=request.window, name=self.name)
        return data


# ------------------------------------------------------------------------------------- stackstac
@dataclass(frozen=True)
class StackstacReader:
    """stackstac reads the request (chunks from the grid's corner; one stackstac graph per
    resampling and per band fill, put back in the request's order)."""

    def stack(self, request: StackRequest) -> Any:
        import dask.array as da
        import stackstac  # only this reader needs it (its import pulls in distributed: start-up time)
        from rasterio.enums import Resampling

        if not request.items or len(request.keys) != len(request.hrefs[0]):
            raise ValueError("stackstac reads STAC items: the request has no items and keys")
        g = request.grid
        a, _, c, _, e, f = g.transform
        r0, r1, c0, c1 = request.window or (0, g.height, 0, g.width)
        bounds = (c + a * c0, f + e * r1, c + a * c1, f + e * r0)
        dtype = np.dtype(request.dtype)

        def one(times: list[int], bands: list[int], resampling: str, fill: float) -> Any:
            arr = stackstac.stack(
                [_item_dict(request.items[t]) for t in times], assets=[request.keys[b] for b in bands], epsg=g.epsg,
                resolution=(abs(a), abs(e)), bounds=bounds, snap_bounds=False, resampling=Resampling[resampling],
                dtype=dtype, fill_value=dtype.type(fill), rescale=False, sortby_date=False, xy_coords="center",
                properties=False, band_coords=False, chunksize=request.chunksize)
            return arr.data

        nt, nb = len(request.hrefs), len(request.keys)
        # group bands by (their own resampling or None, fill); times by their resampling
        columns = []
        for b in range(nb):
            rs_b = request.band_resampling[b]
            rows = []
            for r in sorted({rs_b or request.resampling[t] for t in range(nt)}):
                times = [t for t in range(nt) if (rs_b or request.resampling[t]) == r]
                rows.append((times, one(times, [b], r, request.band_fill[b])))
            order = np.argsort([t for times, _ in rows for t in times])
            columns.append(da.concatenate([part for _, part in rows], axis=0)[order])
        return da.concatenate(columns, axis=1)


def _item_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    return item.to_dict(include_self_link=False, transform_hrefs=False)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- per-asset readers
@dataclass(frozen=True)
class AssetStack:
    """A request read asset by asset with a :class:`Reader` (as stackstac builds its graph around
    its ``Reader``): one task per chunk, each asset opened from its spec and its window read."""

    reader: Any  # a Reader
    name: str = "imalys-asset-read"

    def stack(self, request: StackRequest) -> Any:
        import dask.array as da
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph

        from .tiles import regular_chunks

        nt, nb, ny, nx = request.shape
        r0, _, c0, _ = request.window or (0, 0, 0, 0)
        specs = [[None if h is None else AssetSpec(h, request.grid, request.band_resampling[b] or request.resampling[t],
                                                    request.dtype, request.band_fill[b])
                  for b, h in enumerate(row)] for t, row in enumerate(request.hrefs)]
        ychunks, xchunks = regular_chunks(ny, request.chunksize), regular_chunks(nx, request.chunksize)
        name = f"{self.name}-{tokenize(self.reader, specs, request.window, request.chunksize)}"
        layer: dict = {}
        y0 = r0
        for iy, h in enumerate(ychunks):
            x0 = c0
            for ix, w in enumerate(xchunks):
                layer[(name, 0, 0, iy, ix)] = (_read_assets, self.reader, specs, (y0, y0 + h, x0, x0 + w),
                                               request.band_fill, request.dtype)
                x0 += w
            y0 += h
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
        return da.Array(graph, name, chunks=((nt,), (nb,), ychunks, xchunks), dtype=np.dtype(request.dtype))


def _read_assets(reader: Any, specs: list, window: tuple[int, int, int, int], fills: Sequence[float],
                 dtype: str) -> np.ndarray:
    """One chunk: every asset opened from its spec and its window read (fill where it is missing)."""
    nt, nb = len(specs), len(specs[0]) if specs else 0
    out = np.empty((nt, nb, window[1] - window[0], window[3] - window[2]), dtype=dtype)
    for t in range(nt):
        for b in range(nb):
            spec = specs[t][b]
            out[t, b] = fills[b] if spec is None else reader.open(spec).read(window)
    return out


@dataclass(frozen=True)
class FakeReader:
    """A :class:`Reader` with no files: the value of pixel (row, col) of an asset is
    ``values(href, rows, cols)`` (a pickleable function of the href and two index arrays on the
    output grid; default: a number from the href's hash plus ``row * 1000 + col``, modulo 60000).
    ``opened`` names no file: graph and planning tests build whole cubes with it."""

    values: Callable[[str, np.ndarray, np.ndarray], np.ndarray] | None = None
    spec: AssetSpec | None = field(default=None, compare=False)

    def open(self, spec: AssetSpec) -> FakeReader:
        return FakeReader(self.values, spec)

    def read(self, window: tuple[int, int, int, int]) -> np.ndarray:
        if self.spec is None:
            raise ValueError("FakeReader.read before open(spec)")
        rows, cols = np.meshgrid(np.arange(window[0], window[1]), np.arange(window[2], window[3]), indexing="ij")
        fn = self.values or fake_values
        return np.asarray(fn(self.spec.href, rows, cols)).astype(self.spec.dtype, copy=False)


def fake_values(href: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """FakeReader's default pixel values (see there): deterministic across processes."""
    import zlib

    base = zlib.crc32(href.encode()) % 1000
    return (base + rows * 1000 + cols) % 60000


def default_reader() -> StackReader:
    """The reader a run uses: the project's, or stackstac with ``IMALYS_READER=stackstac`` (read,
    like every setting, by :mod:`imalys_stac.settings`)."""
    from ..settings import current

    return StackstacReader() if current().reader == "stackstac" else TilesReader()


__all__ = ["AssetSpec", "AssetStack", "FakeReader", "OutputGrid", "Reader", "StackReader", "StackRequest",
           "StackstacReader", "TilesReader", "default_reader", "fake_values"]
