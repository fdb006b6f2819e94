"""PNG quicklooks from a decimated read: a coarsened dask array or the overviews of a raster file."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..gdalnames import gdal_name
from .atomic import atomic_path

if TYPE_CHECKING:  # imported for an array: a quicklook of a file (reduce's COG) needs no xarray
    import xarray as xr

#: the largest side of a quicklook in pixels
QUICKLOOK_SIDE = 1024
FALSE_COLOUR = ("nir08", "red", "green")
TRUE_COLOUR = ("red", "green", "blue")
_ALIASES = {"nir08": ("nir08", "nir", "nir1"), "red": ("red",), "green": ("green",), "blue": ("blue",)}


def _base(name: str) -> str:
    """'20220515_nir08' → 'nir08': stacks name their layers date_band."""
    return str(name).lower().rsplit("_", 1)[-1]


def guess_rgb(names: Sequence[str] | None, count: int) -> list[int]:
    """Band indices (0-based) for the display: false colour nir08/red/green when available, else
    red/green/blue, else the first three bands, else the first band."""
    if names:
        base = [_base(n) for n in names]
        for combo in (FALSE_COLOUR, TRUE_COLOUR):
            idx = []
            for want in combo:
                hit = next((i for i, b in enumerate(base) if b in _ALIASES[want]), None)
                if hit is None:
                    break
                idx.append(hit)
            else:
                return idx
    return [0, 1, 2] if count >= 3 else [0]


def _resolve(rgb: Sequence[int | str] | None, names: Sequence[str] | None, count: int) -> list[int]:
    if rgb is None:
        return guess_rgb(names, count)
    out = []
    for b in rgb:
        if isinstance(b, (int, np.integer)):
            if not 0 <= b < count:
                raise ValueError(f"rgb band index {b} is out of range: the image has bands 0…{count - 1}")
            out.append(int(b))
        else:
            if not names or str(b) not in names:
                raise ValueError(f"rgb band {b!r} not found; bands are {list(names or [])}")
            out.append(list(names).index(str(b)))
    if len(out) not in (1, 3):
        raise ValueError(f"rgb takes 1 or 3 bands, got {len(out)}")
    return out


def _decimated_array(da: xr.DataArray, rgb, max_size: int) -> np.ndarray:
    if da.ndim == 2:
        da = da.expand_dims("band")
    ydim, xdim = da.rio.y_dim, da.rio.x_dim
    bdim = next(d for d in da.dims if d not in (ydim, xdim))
    da = da.transpose(bdim, ydim, xdim)
    names = [str(b) for b in da[bdim].values] if bdim in da.coords and da[bdim].dtype.kind in "UO" else None
    idx = _resolve(rgb, names, da.shape[0])
    sel = da.isel({bdim: idx}).astype("float32")
    f = max(1, math.ceil(max(sel.shape[1:]) / max_size))
    if f > 1:  # block means: computed chunk by chunk, only the small result is gathered
        sel = sel.coarsen({ydim: f, xdim: f}, boundary="pad").mean()  # NaN skipped (float default)
    return np.asarray(sel.values, dtype="float32")


def _file_of(da: xr.DataArray) -> Path | None:
    """The raster file a DataArray is, unchanged (opened lazily by rioxarray, nothing computed on
    top: every graph layer is the file's own), or None. Its quicklook is then read from the
    file's overviews instead of computing every pixel at full resolution."""
    source = da.encoding.get("source")
    graph = getattr(getattr(da.data, "dask", None), "layers", None)
    if not source or graph is None or not all("open_rasterio" in str(name) for name in graph):
        return None
    path = Path(source)
    if not path.is_file():
        return None
    import rasterio

    try:
        with rasterio.open(path) as src:
            shape = (src.count, src.height, src.width)
    except rasterio.errors.RasterioIOError:
        return None
    return path if tuple(da.shape) == shape else None


def _decimated_file(path: Path, rgb, max_size: int, names: Sequence[str] | None = None) -> np.ndarray:
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(gdal_name(path)) as src:
        if names is None:
            names = list(src.descriptions) if all(src.descriptions) else None
        idx = _resolve(rgb, names, src.count)
        f = max(1.0, max(src.width, src.height) / max_size)
        shape = (len(idx), max(1, round(src.height / f)), max(1, round(src.width / f)))
        # out_shape lets GDAL read from the closest overview instead of the full resolution
        a = src.read([i + 1 for i in idx], out_shape=shape, resampling=Resampling.average, masked=True)
        return a.astype("float32").filled(np.nan)


def stretch_to_uint8(a: np.ndarray, stretch: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band percentile stretch to 1…255 (0 stays for nodata); alpha 0 where any band is NaN."""
    valid = np.all(np.isfinite(a), axis=0)
    out = np.zeros(a.shape, dtype=np.uint8)
    for i, band in enumerate(a):
        v = band[valid]
        if v.size == 0:
            continue
        lo, hi = np.percentile(v, stretch)
        scale = 254.0 / (hi - lo) if hi > lo else 0.0
        out[i] = np.where(valid, np.clip((band - lo) * scale, 0, 254) + 1, 0).astype(np.uint8)
    return out, (valid * 255).astype(np.uint8)


def write_quicklook(da: xr.DataArray | str | os.PathLike, path_png: str | os.PathLike, *,
                    rgb: Sequence[int | str] | None = None, stretch: tuple[float, float] = (2, 98),
                    max_size: int = QUICKLOOK_SIDE) -> Path:
    """An 8-bit PNG (RGBA, or grey + alpha for one band) no larger than `max_size` pixels a side.

    da: a DataArray (band, y, x) — reduced by block means before computing; a DataArray that is a
    raster file opened lazily and unchanged is read through the file's overviews — or the path of
    a raster file, read through its overviews. rgb: three (or one) band indices (0-based) or names;
    default: false colour nir08/red/green, else red/green/blue, else the first bands.
    NaN is black and transparent."""
    from PIL import Image

    if max_size < 1:
        raise ValueError(f"max_size must be ≥ 1, got {max_size}")
    lo, hi = stretch
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"stretch must be two percentiles 0 ≤ low < high ≤ 100, got {stretch}")
    if isinstance(da, (str, os.PathLike)):
        a = _decimated_file(Path(da), rgb, max_size)
    else:
        import rioxarray  # noqa: F401  (registers the .rio accessor)
        import xarray as xr

        if not isinstance(da, xr.DataArray):
            raise TypeError(f"write_quicklook needs a DataArray or a raster file's path, got {type(da).__name__}")
        source = _file_of(da) if da.ndim == 3 else None
        if source is not None:
            bdim = da.dims[0]
            names = [str(b) for b in da[bdim].values] if bdim in da.coords and da[bdim].dtype.kind in "UO" else None
            a = _decimated_file(source, rgb, max_size, names)
        else:
            a = _decimated_array(da, rgb, max_size)
    bands, alpha = stretch_to_uint8(a, stretch)
    if bands.shape[0] == 3:
        img = Image.fromarray(np.dstack([bands[0], bands[1], bands[2], alpha]), mode="RGBA")
    else:
        img = Image.fromarray(np.dstack([bands[0], alpha]), mode="LA")
    path_png = Path(path_png).expanduser()
    with atomic_path(path_png) as tmp:
        img.save(tmp, format="PNG", optimize=False)
    return path_png


def write_png(da: xr.DataArray, target: str | os.PathLike, *, tags: dict[str, Any] | None = None,
              band_names: Sequence[str] | None = None) -> Path:
    """The `.png` export (the writer of its format registry entry): a quicklook of `da`; `tags`
    have no place in a PNG and are left out."""
    if band_names is not None and da.ndim == 3:
        da = da.assign_coords({da.dims[0]: list(band_names)})
    return write_quicklook(da, target)
