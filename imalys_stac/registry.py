"""One registry each for the reducers and the output formats.

The chain validator, the commands, the compositing code and the writers all read these tables,
so adding a reducer or a format is one entry here plus its kernel or writer (see
`docs/extending.md`). Nothing heavy is imported: `imalys-stac check` uses this without loading
GDAL, numba or Dask.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reducer:
    """A process of `reduce execute = …`."""

    name: str
    #: reduces each band over time (True) or makes one index band from several bands (False)
    per_band: bool
    #: band parameters (`red`, `nir`, `blue`) the process needs
    needs: tuple[str, ...] = ()
    summary: str = ""


REDUCERS: dict[str, Reducer] = {r.name: r for r in (
    Reducer("bestof", True, summary="median of ≥ 3 valid dates, mean or the better of 2 (by quality), the one of 1"),
    Reducer("median", True, summary="median of the valid dates"),
    Reducer("mean", True, summary="mean of the valid dates"),
    Reducer("medoid", True, summary="the date closest to the median in all bands"),
    Reducer("variance", True, summary="variance over the valid dates"),
    Reducer("brightness", False, summary="root mean square over bands"),
    Reducer("difference", True, summary="last minus first valid date"),
    Reducer("ndvi", False, needs=("red", "nir"), summary="normalised difference vegetation index"),
    Reducer("nirv", False, needs=("red", "nir"), summary="near-infrared reflectance of vegetation"),
    Reducer("evi", False, needs=("red", "nir", "blue"), summary="enhanced vegetation index"),
    Reducer("count", True, summary="number of valid dates"),
)}

#: Processes of the original Imalys that this version does not run (named so the message is specific).
UNSUPPORTED_REDUCERS = ("regression", "principal")


@dataclass(frozen=True)
class OutputFormat:
    """What `export target = …` writes for one file ending ('' = no ending)."""

    ending: str
    description: str
    media_type: str
    #: endings of files written beside the target (ENVI's header, the VRT's COG)
    companions: tuple[str, ...] = ()
    #: whether the companion ending is appended to the name (`x` → `x.hdr`) or replaces the ending
    companions_appended: bool = False


_COG = "image/tiff; application=geotiff; profile=cloud-optimized"

FORMATS: dict[str, OutputFormat] = {f.ending: f for f in (
    OutputFormat(".tif", "Cloud Optimized GeoTIFF (tiled, ZSTD + predictor, overviews, NaN nodata)", _COG),
    OutputFormat(".tiff", "Cloud Optimized GeoTIFF (same as .tif)", _COG),
    OutputFormat(".vrt", "GDAL VRT pointing at a COG <name>.tif written beside it", "application/xml", (".tif",)),
    OutputFormat(".nc", "netCDF-4 (HDF5 via h5netcdf, CF grid mapping)", "application/netcdf"),
    OutputFormat(".zarr", "Zarr store (a directory)", "application/vnd+zarr"),
    OutputFormat(".png", "PNG quicklook (8-bit stretched RGBA, at most 1024 pixels a side)", "image/png"),
    OutputFormat("", "no ending: ENVI labelled format as the original (raw band-sequential file + .hdr)",
                 "application/octet-stream", (".hdr",), companions_appended=True),
)}


def companion_paths(target):
    """Every file an export to `target` (a pathlib.Path) writes besides its STAC item."""
    fmt = FORMATS[target.suffix.lower()]
    out = [target]
    for ending in fmt.companions:
        out.append(target.with_name(target.name + ending) if fmt.companions_appended else target.with_suffix(ending))
    return out
