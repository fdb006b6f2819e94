"""The registries: reducers, output formats and providers — each entry carries its behaviour.

A reducer entry names its block kernel and its plain-numpy reference, a format entry its writer,
a provider entry its object; the chain validator, the commands, the compositing code, the writers
and the archive dispatch all read these tables. So a new reducer or a new format is ONE entry
(``register_reducer`` / ``register_format``, or a line below) plus its code, and a new product line
is one ``register_provider`` call or one ``imalys_stac.providers`` entry point (see
``docs/extending.md``).

Behaviour is named as ``"module:attribute"`` and imported on first use (a callable works too):
nothing heavy is imported here, so ``imalys-stac check`` uses this without GDAL, numba or Dask.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the providers load on first use (GDAL, numpy): `check` never needs them
    from .providers.base import CollectionProfile, Provider, SceneMetadata



def load(ref: Any) -> Any:
    """The object an entry names: ``"module:attribute"`` imported (once, by Python's module
    cache), anything else returned as it is."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    if not attr:
        raise ValueError(f"{ref!r} is not 'module:attribute'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# ------------------------------------------------------------------------------------------- reducers
@dataclass(frozen=True)
class Reducer:
    """A process of `reduce execute = …`.

    ``kernel`` reduces one block: ``kernel(block, quality, threshold, want_source)`` with ``block``
    a C-contiguous float32 ``(time, band, y, x)`` array (for a reducer with ``needs``: only those
    bands, in that order), ``quality`` one clear fraction per time, and returns ``(result, source,
    count)``: float32 ``(band_out, y, x)`` and two ``(y, x)`` planes or None (None: the generic
    ones — no single source; times valid in any band). ``reference`` is the plain-numpy version the
    tests compare the kernel with: ``reference(stack, **bands)`` → ``(band_out, y, x)``, ``bands``
    the 1-based numbers of ``needs`` (``red=3, nir=4``), and for ``uses_quality`` also
    ``quality=…, threshold=…`` (see :func:`reference_call`).
    """

    name: str
    #: reduces each band over time (True) or makes one index band from several bands (False)
    per_band: bool
    #: band parameters (`red`, `nir`, `blue`) the process needs, in the order its kernel reads them
    needs: tuple[str, ...] = ()
    summary: str = ""
    kernel: Any = ""  # "module:function" or the function
    reference: Any = ""  # "module:function" or the function
    #: reads the images' quality (clear fractions per time; `bestof`)
    uses_quality: bool = False
    #: a per-band reducer that still compares all bands of a pixel (`medoid`): bands stay one chunk
    spans_bands: bool = False

    def load_kernel(self) -> Callable[..., Any]:
        return load(self.kernel)  # type: ignore[no-any-return]

    def load_reference(self) -> Callable[..., Any]:
        return load(self.reference)  # type: ignore[no-any-return]


def reference_call(reducer: Reducer, stack: Any, *, quality: Any = None, threshold: float = 0.5,
                   **bands: int) -> Any:
    """The reference result of `reducer` on a ``(time, band, y, x)`` numpy stack (for tests)."""
    extra: dict[str, Any] = {n: bands[n] for n in reducer.needs}
    if reducer.uses_quality:
        extra.update(quality=quality, threshold=threshold)
    return reducer.load_reference()(stack, **extra)


_K = "imalys_stac.composite.methods:"
_R = "imalys_stac.composite.reference:"


def _reducer(name: str, per_band: bool, summary: str, **kw: Any) -> Reducer:
    return Reducer(name, per_band, summary=summary, kernel=_K + name, reference=_R + name, **kw)


REDUCERS: dict[str, Reducer] = {r.name: r for r in (
    _reducer("bestof", True, "median of ≥ 3 valid dates, mean or the better of 2 (by quality), the one of 1",
             uses_quality=True),
    _reducer("median", True, "median of the valid dates"),
    _reducer("mean", True, "mean of the valid dates"),
    _reducer("medoid", True, "the date closest to the median in all bands", spans_bands=True),
    _reducer("variance", True, "variance over the valid dates"),
    _reducer("brightness", False, "root mean square over bands"),
    _reducer("difference", True, "last minus first valid date"),
    _reducer("ndvi", False, "normalised difference vegetation index", needs=("red", "nir")),
    _reducer("nirv", False, "near-infrared reflectance of vegetation", needs=("red", "nir")),
    _reducer("evi", False, "enhanced vegetation index", needs=("red", "nir", "blue")),
    _reducer("count", True, "number of valid dates"),
)}

#: Processes of the original Imalys that this version does not run (named so the message is specific).
UNSUPPORTED_REDUCERS = ("regression", "principal")

#: the band parameters a reducer may need (what the chain's `reduce` command can pass)
BAND_PARAMETERS = ("red", "nir", "blue")


def register_reducer(reducer: Reducer, *, replace: bool = False) -> Reducer:
    """Add a reducer: `reduce execute = <name>`, `api.reduce` and the docs take it up."""
    name = reducer.name.strip().lower()
    if name != reducer.name or not name:
        raise ValueError(f"a reducer name is lower case without spaces, got {reducer.name!r}")
    if name in REDUCERS and not replace:
        raise ValueError(f"a reducer {name!r} is registered already (replace=True to replace it)")
    if name in UNSUPPORTED_REDUCERS:
        raise ValueError(f"{name!r} is reserved for the original Imalys process of that name")
    unknown = [n for n in reducer.needs if n not in BAND_PARAMETERS]
    if unknown:
        raise ValueError(f"reducer {name!r} needs {unknown}; a chain can pass: {', '.join(BAND_PARAMETERS)}")
    if not reducer.kernel or not reducer.reference:
        raise ValueError(f"reducer {name!r} needs its kernel and its reference")
    REDUCERS[name] = reducer
    return reducer


def unregister_reducer(name: str) -> None:
    REDUCERS.pop(name, None)


# -------------------------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class OutputFormat:
    """What `export target = …` writes for one file ending ('' = no ending).

    ``writer(dataarray, target, *, tags, band_names)`` → the written path: ``dataarray`` has dims
    ``(band, y, x)`` (georeferenced by rioxarray), ``tags`` is a dict of text metadata or None,
    ``band_names`` a sequence or None. It writes atomically (``write.atomic.atomic_path``).
    """

    ending: str
    description: str
    media_type: str
    #: endings of files written beside the target (ENVI's header, the VRT's COG)
    companions: tuple[str, ...] = ()
    #: whether the companion ending is appended to the name (`x` → `x.hdr`) or replaces the ending
    companions_appended: bool = False
    writer: Any = ""  # "module:function" or the function
    #: the target is a directory (Zarr), not a file
    directory: bool = False
    #: written uncompressed or by a library that cannot report a full disk: checked against the
    #: free space before anything is written
    needs_free_space: bool = False
    #: modules the writer imports that are optional (checked when the chain is read) and the
    #: extra that installs them (`pip install 'imalys-stac[<extra>]'`)
    requires: tuple[str, ...] = ()
    extra: str | None = None
    #: roles of the file's asset in its exported item (a PNG is its own thumbnail)
    roles: tuple[str, ...] = ("data",)
    #: the file holds the product's bands as bands: the item's asset gets their eo:bands/raster:bands
    band_fields: bool = True

    def load_writer(self) -> Callable[..., Any]:
        return load(self.writer)  # type: ignore[no-any-return]


_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_W = "imalys_stac.write."

FORMATS: dict[str, OutputFormat] = {f.ending: f for f in (
    OutputFormat(".tif", "Cloud Optimized GeoTIFF (tiled, ZSTD + predictor, overviews, NaN nodata)", _COG,
                 writer=_W + "cog:write_cog"),
    OutputFormat(".tiff", "Cloud Optimized GeoTIFF (same as .tif)", _COG, writer=_W + "cog:write_cog"),
    OutputFormat(".vrt", "GDAL VRT pointing at a COG <name>.tif written beside it", "application/xml", (".tif",),
                 writer=_W + "formats:write_vrt"),
    OutputFormat(".nc", "netCDF-4 (HDF5 via h5netcdf, CF grid mapping)", "application/netcdf",
                 writer=_W + "formats:write_netcdf", needs_free_space=True, requires=("h5netcdf", "h5py"), extra="nc"),
    OutputFormat(".zarr", "Zarr store (a directory)", "application/vnd+zarr", writer=_W + "formats:write_zarr",
                 directory=True, band_fields=False, requires=("zarr",), extra="nc"),
    OutputFormat(".png", "PNG quicklook (8-bit stretched RGBA, at most 1024 pixels a side)", "image/png",
                 writer=_W + "quicklook:write_png", roles=("data", "thumbnail"), band_fields=False),
    OutputFormat("", "no ending: ENVI labelled format as the original (raw band-sequential file + .hdr)",
                 "application/octet-stream", (".hdr",), companions_appended=True, writer=_W + "envi:write_envi",
                 needs_free_space=True),
)}


def register_format(fmt: OutputFormat, *, replace: bool = False) -> OutputFormat:
    """Add an output format: `export target = x<ending>` and `write.write_image` take it up."""
    ending = fmt.ending.lower()
    if ending != fmt.ending or (ending and not ending.startswith(".")):
        raise ValueError(f"a format ending is lower case and starts with '.', got {fmt.ending!r}")
    if ending in FORMATS and not replace:
        raise ValueError(f"a format for {ending!r} is registered already (replace=True to replace it)")
    if not fmt.writer:
        raise ValueError(f"format {ending!r} needs its writer")
    FORMATS[ending] = fmt
    return fmt


def unregister_format(ending: str) -> None:
    FORMATS.pop(ending, None)


def companion_paths(target):
    """Every file an export to `target` (a pathlib.Path) writes besides its STAC item."""
    fmt = FORMATS[target.suffix.lower()]
    out = [target]
    for ending in fmt.companions:
        out.append(target.with_name(target.name + ending) if fmt.companions_appended else target.with_suffix(ending))
    return out


# ------------------------------------------------------------------------------------------ providers
#: One line per product line: name → "module:attribute" of its provider object (see
#: `imalys_stac.providers.base`), loaded on first use so that `check` stays light. The order
#: decides between providers that both claim an item by its properties (collection ids decide first).
#: Add to it with `register_provider`, or from another distribution with an entry point in the
#: `imalys_stac.providers` group (read once, on the first look-up).
PROVIDERS: dict[str, Any] = {
    "landsat": "imalys_stac.providers.landsat:PROVIDER",
    "sentinel-2": "imalys_stac.providers.sentinel2:PROVIDER",
}

#: the entry-point group other distributions register providers in (`name = "module:attribute"`)
ENTRY_POINT_GROUP = "imalys_stac.providers"
_entry_points_read = False


def register_provider(name: str, provider: Any, *, replace: bool = False) -> None:
    """Add a product line: `provider` is a provider object — a collection profile (items from a
    STAC API), with an archive format too if it reads containers — or its ``"module:attribute"``."""
    _read_entry_points()
    if name in PROVIDERS and not replace:
        raise ValueError(f"a provider {name!r} is registered already (replace=True to replace it)")
    if not isinstance(provider, str):
        from .providers.base import missing_members

        missing = missing_members(provider)
        if missing:
            raise TypeError(f"provider {name!r} lacks {', '.join(missing)} (see imalys_stac.providers.base)")
    PROVIDERS[name] = provider


def unregister_provider(name: str) -> None:
    PROVIDERS.pop(name, None)


def _read_entry_points() -> None:
    """Providers of other distributions (entry-point group `imalys_stac.providers`), added after the
    built-in ones the first time any provider is asked for; a name registered already wins."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        PROVIDERS.setdefault(ep.name, ep.value)


def providers() -> list[CollectionProfile]:
    """The registered providers, in registry order (a profile without archive format included)."""
    _read_entry_points()
    return [load(spec) for spec in list(PROVIDERS.values())]


def archive_providers() -> list[Provider]:
    """The registered providers that read containers (an archive format as well as a profile)."""
    from .providers.base import has_archive_format

    return [p for p in providers() if has_archive_format(p)]  # type: ignore[misc]


def provider(name: str) -> CollectionProfile:
    """The provider registered as `name`."""
    _read_entry_points()
    if name not in PROVIDERS:
        raise KeyError(f"no provider {name!r}; registered: {', '.join(PROVIDERS)}")
    return load(PROVIDERS[name])  # type: ignore[no-any-return]


def provider_for_path(path: Path) -> Provider:
    """The provider whose containers `path` is (a pathlib.Path): the longest matching file name
    ending decides, else the magic bytes of the file's head. Raises `ArchiveError` for a file no
    provider reads."""
    from .archives.container import fail, read_head

    found = archive_providers()
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


def open_archive(path: str | Path) -> SceneMetadata:
    """Read one provider archive in place (Landsat C2 L2 ``.tar``, Sentinel-2 L2A ``.zip``, …) into
    its provider's :class:`~imalys_stac.providers.base.SceneMetadata`.

    Raises :class:`~imalys_stac.archives.ArchiveError` (``"<file>: <reason>"``) for archives that
    cannot be catalogued."""
    path = Path(path).expanduser().resolve()
    return provider_for_path(path).open(path)


def provider_for_collection(collection_id: str) -> CollectionProfile | None:
    """The provider owning a collection id, or None."""
    return next((p for p in providers() if collection_id in p.collections), None)


def provider_for_item(item: Any) -> CollectionProfile | None:
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
