"""Cubes from STAC items: stackstac reads, QA masking, calibration and same-day merging.

Nothing here decides which items to use (search does) or what to compute from the cube
(composite does). Everything is lazy: the functions return Dask-backed DataArrays and a later
step computes only the blocks it needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
import pystac
import stackstac
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from rasterio.enums import Resampling

from ..archives.qa import MaskRule
from .bands import QA_ASSET, Calibration
from .grid import Grid, geometry_mask, reproject_geometry

DEFAULT_CHUNK = 1024
RESAMPLING = {
    "nearest": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "average": Resampling.average,
}


@dataclass
class SceneGroup:
    """Tiles of one acquisition (same sensor, path and date) that become one seamless image."""

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


def _stack(items: Sequence[pystac.Item], keys: list[str], grid: Grid, resampling: str, chunksize: int) -> xr.DataArray:
    """(time=item, band=asset, y, x) float32, NaN where the file has nodata or the grid leaves the raster."""
    # plain dicts: pystac's to_dict() would try to resolve links (e.g. an API item's root) over the network
    return stackstac.stack(
        [it.to_dict(include_self_link=False, transform_hrefs=False) for it in items],
        assets=keys,
        epsg=grid.epsg,
        resolution=grid.res_xy,
        bounds=grid.bounds,
        snap_bounds=False,
        resampling=RESAMPLING[resampling],
        dtype=np.dtype("float32"),
        fill_value=np.float32(np.nan),
        rescale=False,  # we calibrate ourselves: stackstac's rescale on integer data is the trap of its issue 206
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        chunksize=chunksize,
    )


def _valid(qa: xr.DataArray, rule: str | None) -> xr.DataArray:
    """True where the QA value marks a usable pixel (not fill; not disturbed unless rule is None)."""
    mask_rule = MaskRule(rule or "flags")

    def fn(q: np.ndarray) -> np.ndarray:
        return ~mask_rule.fill(q) if rule is None else mask_rule.valid(q)

    return xr.apply_ufunc(fn, qa, dask="parallelized", output_dtypes=[bool])


def qa_cube(groups: Sequence[SceneGroup], grid: Grid, chunksize: int = DEFAULT_CHUNK) -> list[xr.DataArray]:
    """Per group the merged QA_PIXEL (y, x) on `grid`, nearest neighbour, NaN outside every tile.

    Same-day tiles merge by taking, per pixel, the first tile whose QA is not fill — fill in one
    tile never hides data in its neighbour (the odc-stac 138/162 trap)."""
    items = [it for g in groups for it in g.items]
    if not items:
        return []
    qa = _stack(items, [QA_ASSET], grid, "nearest", chunksize).isel(band=0, drop=True)
    out, i = [], 0
    for g in groups:
        part = qa.isel(time=slice(i, i + len(g.items)))
        i += len(g.items)
        fill = ~_valid(part, None)
        part = part.where(~fill)
        merged = part.isel(time=0, drop=True) if len(g.items) == 1 else stackstac.mosaic(part, dim="time", reverse=True)
        out.append(merged.drop_vars([c for c in merged.coords if c not in ("x", "y")]))
    return out


def load_groups(
    groups: Sequence[SceneGroup],
    grid: Grid,
    *,
    chunksize: int = DEFAULT_CHUNK,
    region: np.ndarray | None = None,
) -> xr.DataArray:
    """The calibrated, masked cube (time, band, y, x) float32 of the groups on `grid`.

    One stackstac graph reads every tile; per group: value = DN·factor + offset where the QA says
    the pixel is usable, NaN elsewhere; tiles of the same acquisition are merged (first valid
    value). `region` (bool y×x) sets pixels outside an exact frame polygon to NaN."""
    if not groups:
        raise ValueError("no images to load")
    keys = groups[0].keys
    for g in groups:
        if g.keys != keys:
            raise ValueError(f"{g.name} has bands {g.keys}, {groups[0].name} has {keys}: compile needs the same bands")
    items = [it for g in groups for it in g.items]
    resampling = groups[0].resampling
    bands = _stack(items, keys, grid, resampling, chunksize)
    qa = _stack(items, [QA_ASSET], grid, "nearest", chunksize).isel(band=0, drop=True)
    layers, i = [], 0
    for g in groups:
        sl = slice(i, i + len(g.items))
        i += len(g.items)
        b = bands.isel(time=sl)
        factor = xr.DataArray(np.asarray(g.calibration.factors, dtype="float32"), dims="band")
        offset = xr.DataArray(np.asarray(g.calibration.offsets, dtype="float32"), dims="band")
        calibrated = (b * factor + offset).where(_valid(qa.isel(time=sl), g.rule))
        merged = calibrated.isel(time=0, drop=True) if len(g.items) == 1 else stackstac.mosaic(calibrated, dim="time", reverse=True)
        merged = merged.drop_vars([c for c in merged.coords if c not in ("x", "y", "band")], errors="ignore")
        own = g.region_mask(grid)
        if own is not None:
            merged = merged.where(xr.DataArray(own, dims=("y", "x"), coords={"y": merged.y, "x": merged.x}))
        layers.append(merged.astype("float32"))
    cube = xr.concat(layers, dim="time", coords="minimal", compat="override", join="override")
    cube = cube.assign_coords(
        time=("time", np.array([np.datetime64(g.datetime.replace(tzinfo=None), "ns") for g in groups])),
        band=("band", list(keys)),
        quality=("time", np.array([np.nan if g.quality is None else g.quality for g in groups], dtype="float64")),
        product=("time", [g.name for g in groups]),
    )
    if region is not None:
        cube = cube.where(xr.DataArray(region, dims=("y", "x"), coords={"y": cube.y, "x": cube.x}))
    cube = cube.rio.write_crs(grid.epsg)
    cube.attrs = {"_FillValue": np.nan}
    return cube
