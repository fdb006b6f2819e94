"""Cubes from STAC items: stackstac reads, QA masking, calibration and same-day merging.

Nothing here decides which items to use (search does) or what to compute from the cube
(composite does). Everything is lazy: the functions return Dask-backed DataArrays and a later
step computes only the blocks it needs.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pystac
from rasterio.enums import Resampling

from ..errors import InputError
from .bands import Calibration
from .fuse import auto_chunk, fuse_stack, group_tables
from .grid import Grid, geometry_mask, reproject_geometry
from .quality import QualityBand, quality_band_of
from .reader import OutputGrid, StackReader, StackRequest, default_reader

RESAMPLING = {
    "nearest": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "average": Resampling.average,
}


class _OnFirstUse:
    """A module imported when one of its names is first read: dask.array brings xarray and pandas
    along (~0.6 s of CPU), which a chain that builds no cube here (compile, an up-to-date reduce)
    never needs."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if self._name == "xarray":
            importlib.import_module("rioxarray")  # registers the .rio accessor the cubes are written with
        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    import dask.array as da
    import xarray as xr
else:
    da, xr = _OnFirstUse("dask.array"), _OnFirstUse("xarray")


@dataclass(frozen=True)
class SceneGroup:
    """Tiles of one acquisition (same sensor, path and date) that become one seamless image.
    Frozen: a changed name or quality is a new value (`dataclasses.replace`)."""

    name: str
    items: list[pystac.Item]
    keys: list[str]
    calibration: Calibration
    rule: str | None  # QA rule for per-pixel masking; None keeps disturbed pixels (fill is always masked)
    resampling: str = "bilinear"
    quality: float | None = None
    #: exact frame polygon (WKT in `region_epsg`): pixels outside become nodata (`import polygon = true`)
    region_wkt: str | None = None
    region_epsg: int | None = None

    def region_mask(self, grid: Grid) -> np.ndarray | None:
        if not self.region_wkt:
            return None
        from shapely import wkt

        geom = reproject_geometry(wkt.loads(self.region_wkt), self.region_epsg or grid.epsg, grid.epsg)
        return geometry_mask(geom, grid)

    @property
    def datetime(self) -> datetime:
        return self.items[0].datetime  # type: ignore[return-value]


def _href(item: pystac.Item, key: str) -> str | None:
    asset = item.assets.get(key)
    return None if asset is None else asset.href  # as written in the item, as stackstac reads it


def _stack(items: Sequence[pystac.Item], keys: list[str], grid: Grid, resampling: str | Sequence[str], chunksize: int,
           dtype: str = "float32", fill: float = np.nan, quality: QualityBand | None = None,
           window: tuple[int, int, int, int] | None = None, reader: StackReader | None = None) -> xr.DataArray:
    """(time=item, band=asset, y, x) DNs on `grid`; `fill` where the file has nodata or the grid
    leaves the raster (stackstac's semantics), read by `reader` (`cube.reader`; default: the
    project's tile reader, or stackstac with IMALYS_READER=stackstac). `resampling`: one for all
    items or one per item. With `quality`, its band is read as well (the last band: nearest
    neighbour, its own fill value). `window` (row0, row1, col0, col1): only that part of the grid,
    pixels as in the whole (see tiles.read_stack)."""
    rs = [resampling] * len(items) if isinstance(resampling, str) else list(resampling)
    ny, nx = grid.shape
    r0, r1, c0, c1 = window or (0, ny, 0, nx)
    keys = list(keys) + ([quality.asset] if quality else [])
    band_fill = [float(fill)] * len(keys)
    band_rs: list[str | None] = [None] * len(keys)
    if quality:
        band_fill[-1], band_rs[-1] = float(quality.fill_value), "nearest"
    t = grid.transform
    request = StackRequest(
        hrefs=tuple(tuple(_href(it, k) for k in keys) for it in items),
        grid=OutputGrid(grid.epsg, (t.a, t.b, t.c, t.d, t.e, t.f), ny, nx), chunksize=chunksize,
        dtype=np.dtype(dtype).name, resampling=tuple(RESAMPLING[r].name for r in rs), band_fill=tuple(band_fill),
        band_resampling=tuple(band_rs), window=window,
        items=tuple(items), keys=tuple(keys))
    data = (reader or default_reader()).stack(request)
    return xr.DataArray(data, dims=("time", "band", "y", "x"), coords={
        "band": list(keys),
        "y": t.f + t.e * (np.arange(r0, r1) + 0.5),
        "x": t.c + t.a * (np.arange(c0, c1) + 0.5),
    })


def load_groups(
    groups: Sequence[SceneGroup],
    grid: Grid,
    *,
    chunksize: int | None = None,
    region: np.ndarray | None = None,
    window: tuple[int, int, int, int] | None = None,
    reader: StackReader | None = None,
) -> xr.DataArray:
    """The calibrated, masked cube (time, band, y, x) float32 of the groups on `grid`.

    One stackstac graph reads every tile's DNs (uint16) and QA; per spatial block one compiled
    pass (`fuse.fuse_stack`) computes value = DN·factor + offset where the QA says the pixel is
    usable, NaN elsewhere, merging tiles of the same acquisition (first usable value). Time comes
    out in one chunk, ready for the compositing kernels. `region` (bool y×x) sets pixels outside
    an exact frame polygon to NaN. `window` = (row0, row1, col0, col1): only that part of the grid
    (`region` then covers the window), every pixel as in the whole cube — a large grid is
    computed in parts, each its own bounded graph. `reader`: see `cube.reader` (default: the
    project's tile reader)."""
    if not groups:
        raise InputError("no images to load")
    keys = groups[0].keys
    for g in groups:
        if g.keys != keys:
            raise InputError(f"{g.name} has bands {g.keys}, {groups[0].name} has {keys}: compile needs the same bands")
    items = [it for g in groups for it in g.items]
    chunk = chunksize or auto_chunk(len(items), len(keys))
    nodata = np.array([_nodata(items[0], k) for k in keys], dtype=np.float64)
    if len(set(nodata)) > 1:
        raise InputError(f"bands {keys} have different nodata values {sorted(set(nodata))}")
    # each image is read with its own resampling (nearest on its native grid, bilinear where
    # compile reprojects it): one stackstac graph per resampling, back in item order
    resamplings = [g.resampling for g in groups for _ in g.items]
    qband = quality_band_of(groups)
    # DNs and QA in one read: one task per chunk, QA as the last band, every tile decoded once
    both = _stack(items, keys, grid, resamplings, chunk, "uint16", nodata[0], quality=qband, window=window,
                  reader=reader)
    part = grid if window is None else grid.window(*window)
    dn = both.isel(band=slice(0, len(keys)))
    group_of = np.array([gi for gi, g in enumerate(groups) for _ in g.items], dtype=np.int64)
    factors = np.array([g.calibration.factors for g in groups], dtype=np.float64)
    offsets = np.array([g.calibration.offsets for g in groups], dtype=np.float64)
    tables, table_of = group_tables([qband.table(g.rule) for g in groups])
    # the reader's block (DNs and QA as its last band) goes to the kernel whole: slicing it into
    # DNs and QA first made a strided view the kernel had to copy (25 MB per 512-px chunk of 8 dates)
    both_d = both.data.rechunk({0: -1, 1: -1})
    # frame polygons (per image and the compile's) applied inside the same task, in place: a
    # `where` afterwards would copy every block of the float32 cube once more
    regions = [g.region_mask(part) for g in groups]
    keep = None
    if any(r is not None for r in regions) or region is not None:
        # one plane for all images unless an image has a polygon of its own (groups × pixels of bool
        # in the graph otherwise: 32 × a 16,384² part = 8.6 GB)
        if any(r is not None for r in regions):
            keep = np.stack([np.ones(part.shape, bool) if r is None else r for r in regions])
        else:
            keep = np.ones((1,) + part.shape, bool)
        if region is not None:
            keep &= np.asarray(region, bool)[None]
    args = [both_d]
    if keep is not None:
        args.append(da.from_array(keep[:, None], chunks=((len(keep),), (1,), both_d.chunks[2], both_d.chunks[3])))
    # a small load (a tutorial's frame) computed in this process is fused by numpy: no compiled
    # kernel to load for it (a distributed cluster's workers load it once for their whole life)
    from ..runtime.client import active_client
    from .fuse import SMALL_FUSE

    small = both_d.size <= SMALL_FUSE and active_client() is None
    data = da.map_blocks(
        _fuse_and_keep, *args, dtype=np.float32,
        chunks=((len(groups),), (len(keys),), both_d.chunks[2], both_d.chunks[3]), small=small,
        nbands=len(keys), group_of=group_of, factors=factors, offsets=offsets, tables=tables, table_of=table_of, nodata=nodata, ngroups=len(groups),
        token="imalys-calibrate-mask-merge", meta=np.empty((0, 0, 0, 0), np.float32),
    )
    cube = xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={
            "time": np.array([np.datetime64(g.datetime.replace(tzinfo=None), "ns") for g in groups]),
            "band": list(keys), "y": dn.y.values, "x": dn.x.values,
            "quality": ("time", np.array([np.nan if g.quality is None else g.quality for g in groups], dtype="float64")),
            "product": ("time", [g.name for g in groups]),
        },
    )
    cube = cube.rio.write_crs(grid.epsg)
    cube.attrs = {"_FillValue": np.nan}
    return cube


def _fuse_and_keep(stack: np.ndarray, keep: np.ndarray | None = None, **kw) -> np.ndarray:
    """fuse_stack, then NaN outside the frame polygons (`keep`: groups × 1 × y × x), in place."""
    out = fuse_stack(stack, **kw)
    if keep is not None:
        np.copyto(out, np.float32(np.nan), where=~keep)
    return out


def _nodata(item: pystac.Item, key: str) -> float:
    rb = item.assets[key].extra_fields.get("raster:bands") or [{}]
    value = rb[0].get("nodata")
    return 0.0 if value is None else float(value)
