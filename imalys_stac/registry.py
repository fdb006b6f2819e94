"""One registry each for the reducers and the output formats.

The chain validator, the commands, the compositing code and the writers all read these tables,
so adding a reducer or a format is one entry here plus its kernel or writer (see
`docs/extending.md`). Nothing heavy is imported: `imalys-stac check` uses this without loading
GDAL, numba or Dask.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the providers load on first use (GDAL, numpy): `check` never needs them
    from .providers.base import Provider, SceneMetadata


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


# ------------------------------------------------------------------------------------------ providers
#: One line per product line: name → "module:attribute" of its provider object (see
#: `imalys_stac.providers.base.Provider`), loaded on first use so that `check` stays light. The order
#: decides between providers that both claim an item by its properties (collection ids decide first).
PROVIDERS: dict[str, object] = {
    "landsat": "imalys_stac.providers.landsat:PROVIDER",
    "sentinel-2": "imalys_stac.providers.sentinel2:PROVIDER",
}


def _load(spec: object) -> "Provider":
    if not isinstance(spec, str):
        return spec  # type: ignore[return-value]  # a provider object (tests register one directly)
    import importlib

    module, _, attr = spec.partition(":")
    found: Provider = getattr(importlib.import_module(module), attr)
    return found


def providers() -> "list[Provider]":
    """The registered providers, in registry order."""
    return [_load(spec) for spec in PROVIDERS.values()]


def provider(name: str) -> "Provider":
    """The provider registered as `name`."""
    if name not in PROVIDERS:
        raise KeyError(f"no provider {name!r}; registered: {', '.join(PROVIDERS)}")
    return _load(PROVIDERS[name])


def provider_for_path(path: Path) -> "Provider":
    """The provider whose containers `path` is (a pathlib.Path): the longest matching file name
    ending decides, else the magic bytes of the file's head. Raises `ArchiveError` for a file no
    provider reads."""
    from .archives.container import fail, read_head

    found = providers()
    best = max(found, key=lambda p: p.container.name_match(path.name), default=None)
    if best is not None and best.container.name_match(path.name):
        return best
    head = read_head(path)
    for p in found:
        if p.container.head_match(head):
            return p
    accepted = "; ".join(p.container.description for p in found)
    if not path.is_file():
        raise fail(path, "no such file")
    raise fail(path, f"not an archive any provider reads (accepted: {accepted})")


def open_archive(path: str | Path) -> "SceneMetadata":
    """Read one provider archive in place (Landsat C2 L2 ``.tar``, Sentinel-2 L2A ``.zip``, …) into
    its provider's :class:`~imalys_stac.providers.base.SceneMetadata`.

    Raises :class:`~imalys_stac.archives.ArchiveError` (``"<file>: <reason>"``) for archives that
    cannot be catalogued."""
    path = Path(path).expanduser().resolve()
    return provider_for_path(path).open(path)


def provider_for_collection(collection_id: str) -> "Provider | None":
    """The provider owning a collection id, or None."""
    return next((p for p in providers() if collection_id in p.collections), None)


def provider_for_item(item: Any) -> "Provider | None":
    """The provider of an item (a pystac.Item or an item dict): the one listing its collection id,
    else the first whose `owns` claims it by its properties; None for items no provider knows."""
    from .providers.base import item_parts

    found = providers()
    _, collection, _, _ = item_parts(item)
    if collection:
        for p in found:
            if collection in p.collections:
                return p
    return next((p for p in found if p.owns(item)), None)
