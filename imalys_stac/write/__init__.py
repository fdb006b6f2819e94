"""Writing products: COG (streamed, overviews checked), ENVI, VRT, netCDF, Zarr, PNG quicklooks.

Every writer streams chunk by chunk from the dask graph (the threaded scheduler or a distributed
Client computes, this process writes) and is atomic (temporary name beside the target, rename)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import xarray as xr

from ..registry import FORMATS as FORMAT_REGISTRY
from .atomic import atomic_path
from .cog import check_cog, write_cog
from .envi import write_envi
from .formats import write_netcdf, write_vrt, write_zarr
from .quicklook import write_png, write_quicklook

#: ending → description of the built-in formats; `write_image` reads the registry itself
#: (imalys_stac.registry.FORMATS), so a format registered later is written too
FORMATS: dict[str, str] = {ending: f.description for ending, f in FORMAT_REGISTRY.items()}


def format_of(target: str | os.PathLike) -> str:
    """The registry key for `target`, or ValueError naming the accepted endings."""
    ending = Path(target).suffix.lower()
    if ending not in FORMAT_REGISTRY:
        accepted = ", ".join(e for e in FORMAT_REGISTRY if e)
        raise ValueError(f"unknown output format {ending!r} for {target}: use one of {accepted}, "
                         "or no ending for ENVI")
    return ending


def write_image(da: xr.DataArray, target: str | os.PathLike, *, tags: dict[str, Any] | None = None,
                band_names: Sequence[str] | None = None) -> Path:
    """Write `da` (dims band, y, x or y, x; georeferenced by rioxarray) to `target`; the format
    follows the ending: the writer of its registry entry. Returns the written path."""
    target = Path(target).expanduser()
    writer = FORMAT_REGISTRY[format_of(target)].load_writer()
    return Path(writer(da, target, tags=tags, band_names=band_names))


__all__ = ["FORMATS", "atomic_path", "check_cog", "format_of", "write_cog", "write_envi", "write_image",
           "write_netcdf", "write_png", "write_quicklook", "write_vrt", "write_zarr"]
