"""Writing products: COG (streamed, overviews checked), ENVI, VRT, netCDF, Zarr, PNG quicklooks.

Every writer streams chunk by chunk from the dask graph (the threaded scheduler or a distributed
Client computes, this process writes) and is atomic (temporary name beside the target, rename).

The writers are imported when first used (PEP 562 ``__getattr__``): ``write.atomic`` is needed by
every command (the working directory's items), while the writers pull in xarray, pandas, dask.array
and numba — about a second of start-up that a `catalog` or `check` never uses."""
from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..gdalnames import gdal_name
from ..registry import FORMATS as FORMAT_REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from .atomic import atomic_path
    from .cog import check_cog, write_cog
    from .envi import write_envi
    from .formats import write_netcdf, write_vrt, write_zarr
    from .quicklook import write_png, write_quicklook

#: ending → description of the built-in formats; `write_image` reads the registry itself
#: (imalys_stac.registry.FORMATS), so a format registered later is written too
FORMATS: dict[str, str] = {ending: f.description for ending, f in FORMAT_REGISTRY.items()}

#: public name → the submodule that defines it
_LAZY = {"atomic_path": "atomic", "check_cog": "cog", "write_cog": "cog", "write_envi": "envi",
         "write_netcdf": "formats", "write_vrt": "formats", "write_zarr": "formats", "write_quicklook": "quicklook",
         "write_png": "quicklook"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def format_of(target: str | os.PathLike) -> str:
    """The registry key for `target`, or ValueError naming the accepted endings."""
    ending = Path(target).suffix.lower()
    if ending not in FORMAT_REGISTRY:
        accepted = ", ".join(e for e in FORMAT_REGISTRY if e)
        raise ValueError(f"unknown output format {ending!r} for {target}: use one of {accepted}, "
                         "or no ending for ENVI")
    return ending


def write_image(da: xr.DataArray, target: str | os.PathLike, *, tags: dict[str, Any] | None = None,
                band_names: Sequence[str] | None = None, **options: Any) -> Path:
    """Write `da` (dims band, y, x or y, x; georeferenced by rioxarray) to `target`; the format
    follows the ending: the writer of its registry entry. Returns the written path. `options` go
    to the COG writer (and the COG beside a VRT), e.g. ``scaling=`` for scaled integers."""
    target = Path(target).expanduser()
    ending = format_of(target)
    if options and ending not in (".tif", ".tiff", ".vrt"):
        raise ValueError(f"{', '.join(options)}: only COG (.tif) and VRT exports take these options, not {ending or 'ENVI'}")
    writer = FORMAT_REGISTRY[ending].load_writer()
    # a folder name that is not UTF-8 (Latin-1) is written through a plain-named link to it: GDAL
    # takes names as UTF-8 text (imalys_stac.gdalnames)
    writer(da, Path(gdal_name(target)), tags=tags, band_names=band_names, **options)
    return target


__all__ = ["FORMATS", "atomic_path", "check_cog", "format_of", "write_cog", "write_envi", "write_image",
           "write_netcdf", "write_png", "write_quicklook", "write_vrt", "write_zarr"]
