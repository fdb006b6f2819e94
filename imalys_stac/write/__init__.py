"""Writing products: COG (streamed, overviews checked), ENVI, VRT, netCDF, Zarr, PNG quicklooks.

Every writer streams chunk by chunk from the dask graph (the threaded scheduler or a distributed
Client computes, this process writes) and is atomic (temporary name beside the target, rename).

The writers are imported when first used (PEP 562 ``__getattr__``): ``write.atomic`` is needed by
every command (the working directory's items), while the writers pull in xarray, pandas, dask.array
and numba — about a second of start-up that a `catalog` or `check` never uses."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..registry import FORMATS as FORMAT_REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from .atomic import atomic_path
    from .cog import check_cog, write_cog
    from .envi import write_envi
    from .formats import write_netcdf, write_vrt, write_zarr
    from .quicklook import write_quicklook

#: ending → description, from the one registry of formats (imalys_stac.registry)
FORMATS: dict[str, str] = {ending: f.description for ending, f in FORMAT_REGISTRY.items()}

#: public name → the submodule that defines it
_LAZY = {"atomic_path": "atomic", "check_cog": "cog", "write_cog": "cog", "write_envi": "envi",
         "write_netcdf": "formats", "write_vrt": "formats", "write_zarr": "formats", "write_quicklook": "quicklook"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def format_of(target: str | os.PathLike) -> str:
    """The FORMATS key for `target`, or ValueError naming the accepted endings."""
    ending = Path(target).suffix.lower()
    if ending not in FORMATS:
        accepted = ", ".join(e for e in FORMATS if e)
        raise ValueError(f"unknown output format {ending!r} for {target}: use one of {accepted}, "
                         "or no ending for ENVI")
    return ending


def write_image(da: xr.DataArray, target: str | os.PathLike, *, tags: dict[str, Any] | None = None,
                band_names: Sequence[str] | None = None, **options: Any) -> Path:
    """Write `da` (dims band, y, x or y, x; georeferenced by rioxarray) to `target`; the format
    follows the ending (see FORMATS). Returns the written path. `options` go to the COG writer
    (and the COG beside a VRT), e.g. ``scaling=`` for scaled integers."""
    target = Path(target).expanduser()
    ending = format_of(target)
    if ending in (".tif", ".tiff"):
        from .cog import write_cog

        return write_cog(da, target, tags=tags, band_names=band_names, **options)
    if ending == ".vrt":
        from .formats import write_vrt

        return write_vrt(da, target, tags=tags, band_names=band_names, **options)
    if options:
        raise ValueError(f"{', '.join(options)}: only COG (.tif) and VRT exports take these options, not {ending or 'ENVI'}")
    if ending == ".nc":
        from .formats import write_netcdf

        return write_netcdf(da, target, tags=tags, band_names=band_names)
    if ending == ".zarr":
        from .formats import write_zarr

        return write_zarr(da, target, tags=tags, band_names=band_names)
    if ending == ".png":
        from .quicklook import write_quicklook

        if band_names is not None:
            da = da.assign_coords({da.dims[0]: list(band_names)}) if da.ndim == 3 else da
        return write_quicklook(da, target)
    from .envi import write_envi

    return write_envi(da, target, tags=tags, band_names=band_names)


__all__ = ["FORMATS", "atomic_path", "check_cog", "format_of", "write_cog", "write_envi", "write_image",
           "write_netcdf", "write_quicklook", "write_vrt", "write_zarr"]
