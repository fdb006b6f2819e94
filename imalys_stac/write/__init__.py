"""Writing products: COG (streamed, overviews checked), ENVI, VRT, netCDF, Zarr, PNG quicklooks.

Every writer streams chunk by chunk from the dask graph (the threaded scheduler or a distributed
Client computes, this process writes) and is atomic (temporary name beside the target, rename)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import xarray as xr

from ..gdalnames import gdal_name
from ..registry import FORMATS as FORMAT_REGISTRY
from .atomic import atomic_path
from .cog import check_cog, write_cog
from .envi import write_envi
from .formats import write_netcdf, write_vrt, write_zarr
from .quicklook import write_quicklook

#: ending → description, from the one registry of formats (imalys_stac.registry)
FORMATS: dict[str, str] = {ending: f.description for ending, f in FORMAT_REGISTRY.items()}


def format_of(target: str | os.PathLike) -> str:
    """The FORMATS key for `target`, or ValueError naming the accepted endings."""
    ending = Path(target).suffix.lower()
    if ending not in FORMATS:
        accepted = ", ".join(e for e in FORMATS if e)
        raise ValueError(f"unknown output format {ending!r} for {target}: use one of {accepted}, "
                         "or no ending for ENVI")
    return ending


def write_image(da: xr.DataArray, target: str | os.PathLike, *, tags: dict[str, Any] | None = None,
                band_names: Sequence[str] | None = None) -> Path:
    """Write `da` (dims band, y, x or y, x; georeferenced by rioxarray) to `target`; the format
    follows the ending (see FORMATS). Returns the written path."""
    target = Path(target).expanduser()
    # a folder name that is not UTF-8 (Latin-1) is written through a plain-named link to it: GDAL
    # takes names as UTF-8 text (imalys_stac.gdalnames)
    _write_image(da, Path(gdal_name(target)), tags=tags, band_names=band_names)
    return target


def _write_image(da: xr.DataArray, target: Path, *, tags: dict[str, Any] | None,
                 band_names: Sequence[str] | None) -> Path:
    ending = format_of(target)
    if ending in (".tif", ".tiff"):
        return write_cog(da, target, tags=tags, band_names=band_names)
    if ending == ".vrt":
        return write_vrt(da, target, tags=tags, band_names=band_names)
    if ending == ".nc":
        return write_netcdf(da, target, tags=tags, band_names=band_names)
    if ending == ".zarr":
        return write_zarr(da, target, tags=tags, band_names=band_names)
    if ending == ".png":
        if band_names is not None:
            da = da.assign_coords({da.dims[0]: list(band_names)}) if da.ndim == 3 else da
        return write_quicklook(da, target)
    return write_envi(da, target, tags=tags, band_names=band_names)


__all__ = ["FORMATS", "atomic_path", "check_cog", "format_of", "write_cog", "write_envi", "write_image",
           "write_netcdf", "write_quicklook", "write_vrt", "write_zarr"]
