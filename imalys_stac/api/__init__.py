"""The Python API: what a notebook needs, the same functions the chain commands and the CLI use.

```python
import imalys_stac as ims

items = ims.search("archives/bonds", bbox=(7.5, 47.9, 7.9, 48.1), datetime="2022-05-01/2022-09-30")
cube = ims.load(items, bands=["red", "nir08"], quality=0.7)      # lazy (time, band, y, x)
best = ims.reduce(cube, "bestof")                                  # lazy (band, y, x)
item = ims.to_cog(best, "results/bestof.tif")                     # the COG and its STAC item

result = ims.run_chain("chain2a.txt")                             # or the chain's text
result.products["bestof"], result.open("bestof")
```

Every function is lazy where it can be (nothing is computed before `to_cog` or `.compute()`),
raises an :class:`~imalys_stac.errors.ImalysError` (a :class:`~imalys_stac.chain.ChainError` for
chains) for what the caller can fix, and leaves the caller's logging, warning filters and Dask
client alone: the work runs on the active `distributed` client when there is one, else on
in-process threads. Only the command line configures logging and warnings.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..product_records import WRITER as _WRITER

if TYPE_CHECKING:  # pragma: no cover - the heavy imports stay out of `import imalys_stac`
    import pystac
    import xarray as xr

    from ..chain import Chain
    from ..cube.grid import Frame
    from ..stac.catalog import CatalogReport

log = logging.getLogger("imalys_stac.api")

__all__ = ["ChainResult", "catalog", "load", "plan", "reduce", "run_chain", "search", "to_cog"]

# ------------------------------------------------------------------------------------------ chains
def read_chain(chain: str | os.PathLike[str], variables: Mapping[int | str, Any] | Sequence[Any] | None = None,
               check_files: bool = True) -> Chain:
    """A validated chain from a file path or from the chain's text (text starts with ``IMALYS``
    or holds a line break). ``variables``: ``{1: "c7934"}``, ``{"$1": "c7934"}`` or a list of the
    values for ``$1``, ``$2``, … (they override the chain's ``replace``). Raises ChainError."""
    from ..chain import load_chain, parse_chain_text

    values = _variables(variables)
    if isinstance(chain, str) and ("\n" in chain or chain.lstrip("\ufeff \t").upper().startswith("IMALYS")):
        return parse_chain_text(chain, "<chain>", values, check_files)
    return load_chain(Path(os.path.expanduser(os.fspath(chain))), values, check_files)


def _variables(variables: Mapping[int | str, Any] | Sequence[Any] | None) -> dict[int, str] | None:
    if variables is None:
        return None
    if isinstance(variables, Mapping):
        out = {}
        for key, value in variables.items():
            number = str(key).lstrip("$")
            if not number.isdigit():
                raise InputError(f"variable {key!r}: accepted are the numbers 1 … 9 (or '$1' … '$9')")
            out[int(number)] = str(value)
        return out
    if isinstance(variables, (str, bytes)):
        raise InputError("variables: give a list of values for $1, $2, … or a mapping {1: value}, not one string")
    return {i: str(v) for i, v in enumerate(variables, start=1)}


@dataclass
class ChainResult:
    """What a chain run left: its working directory's products and the files it exported.

    ``products``: product name → its STAC item (every product of the working directory after the
    run, also those an earlier chain made); ``exports``: exported file → the STAC item written
    beside it; ``log``: the run log. :meth:`open` gives any of them as a lazy DataArray."""

    workdir: Path
    products: dict[str, pystac.Item] = field(default_factory=dict)
    exports: dict[Path, pystac.Item] = field(default_factory=dict)
    log: Path | None = None

    def open(self, name: str | os.PathLike[str], chunks: int | None = None) -> xr.DataArray:
        """A product (by name) or an exported file (path or file name) as a lazy DataArray with its
        CRS and band names: ``(band, y, x)`` for a composite or an exported file, ``(time, band,
        y, x)`` with the ``quality`` coordinate for an imported image or a compiled stack."""
        from ..products import KIND, cube_of
        from ..workdir import WorkDir

        key = os.fspath(name)
        if key in self.products:
            item = self.products[key]
            if item.properties.get(KIND) in ("import", "compile"):
                return cube_of(WorkDir(self.workdir), item, chunksize=chunks)
            return _open_raster(item.assets["data"].get_absolute_href() or item.assets["data"].href,
                                _band_names(item), chunks)
        for path, item in self.exports.items():
            if key in (str(path), path.name):
                return _open_raster(str(path), _band_names(item), chunks)
        raise InputError(f"no product or export {key!r} in this result (products: {', '.join(self.products) or 'none'}; "
                         f"exports: {', '.join(p.name for p in self.exports) or 'none'})")


def _band_names(item: pystac.Item) -> list[str] | None:
    asset = item.assets.get("data")
    bands = (asset.extra_fields.get("eo:bands") if asset is not None else None) or item.properties.get("eo:bands")
    names = [b.get("name") for b in bands or []]
    if names and all(names):
        return names
    from ..product_records import CompositeRecord, RecordError

    try:
        return list(CompositeRecord.from_item(item).bands) or None
    except (RecordError, KeyError, TypeError, ValueError):
        return None


def _open_raster(path: str, names: Sequence[str] | None, chunks: int | None) -> xr.DataArray:
    import rioxarray
    import xarray as xr

    from ..gdalnames import gdal_name

    side = chunks or 1024
    arr = rioxarray.open_rasterio(gdal_name(path), chunks={"band": -1, "y": side, "x": side}, masked=True)
    if not isinstance(arr, xr.DataArray):  # a file of subdatasets (netCDF): not one raster
        raise InputError(f"{path} holds several rasters; open it with xarray.open_dataset")
    if names is None:
        described = arr.attrs.get("long_name")
        names = [described] if isinstance(described, str) else list(described or [])
    if names and len(names) == arr.sizes["band"]:
        arr = arr.assign_coords(band=[str(n) for n in names])
    return arr


def run_chain(chain: str | os.PathLike[str], variables: Mapping[int | str, Any] | Sequence[Any] | None = None,
              scheduler: Any = None) -> ChainResult:
    """Run a chain (a file path, or the chain's text) and return what it made.

    ``variables`` fill ``$1`` … ``$9`` (see :func:`read_chain`). ``scheduler`` overrides the
    chain's ``home scheduler``: ``"processes"``, ``"tcp://host:8786"``, ``"kubernetes"`` or a
    ``distributed.Client``; by default the active client is used when there is one, else what the
    chain says. Messages go to the ``imalys_stac`` logger (the caller's handlers show what their
    levels allow) and to the run log file. Raises :class:`~imalys_stac.chain.ChainError`.
    """
    from ..commands import run_chain as run_commands
    from ..commands.export import item_path_for
    from ..stac import read_item

    parsed = read_chain(chain, variables)
    ctx = run_commands(parsed, terminal=False, scheduler=scheduler)
    wd = ctx.workdir
    products = {name: wd.load(name) for name in wd.names()}
    exports = {Path(p): read_item(item_path_for(Path(p))) for p in ctx.outputs}
    return ChainResult(Path(wd.path), products, exports, ctx.runlog.path)


def plan(chain: str | os.PathLike[str], variables: Mapping[int | str, Any] | Sequence[Any] | None = None) -> dict:
    """What running ``chain`` would do, without writing anything: per command the archives found,
    each acquisition's quality and cover and whether it is kept (and why not), the grids and their
    sizes, the files an export would write. Reads the archives' quality bands (that is how quality
    is known); a JSON-ready dict (see docs/cli.md for its fields)."""
    from .dryrun import plan_chain

    return plan_chain(read_chain(chain, variables))


# ------------------------------------------------------------------------------------------- catalog
def catalog(archives: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], target: str | os.PathLike[str],
            workers: int | None = None) -> CatalogReport:
    """Catalog archives (a folder, a wildcard pattern or a list of files) into a static STAC
    catalog at ``target`` (a folder, ``…/catalog.json``, or ``….csv`` for the Imalys table with
    the catalog beside it), incrementally: what is unchanged is not read again. Returns the report
    (``.catalog_path``, ``.added``, ``.updated``, ``.removed``, ``.skipped``)."""
    from ..stac import build_catalog

    source: Any = archives
    if isinstance(archives, (str, os.PathLike)) and Path(os.path.expanduser(os.fspath(archives))).is_dir():
        folder = Path(os.path.expanduser(os.fspath(archives)))
        source = [p for p in sorted(folder.iterdir()) if p.is_file() and _is_archive(p)]
        if not source:
            raise InputError(f"no Landsat or Sentinel-2 archive (.tar, .zip) in {folder}")
    return build_catalog(source, target, workers=workers, progress=False, log=log)


def _is_archive(path: Path) -> bool:
    from ..stac.search import _is_container

    return _is_container(path)


# -------------------------------------------------------------------------------------------- search
def search(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
           bbox: Sequence[float] | None = None, datetime: Any = None, collections: str | Sequence[str] | None = None,
           frame: Any = None, max_cloud: float | None = None, distance: float | None = None) -> list[pystac.Item]:
    """Items of ``source`` that match, sorted by date then id, hrefs absolute.

    ``source``: a catalog (folder, ``catalog.json``, its ``items.parquet``, an Imalys ``.csv``), a
    folder of archives or a wildcard/list of archive files (read on the fly), or an http(s) STAC
    API URL. ``bbox`` (west, south, east, north, degrees) or ``frame`` (a vector file, a
    :class:`~imalys_stac.cube.grid.Frame` or a shapely geometry in WGS84): items whose footprint
    meets its rectangle. ``datetime``: ``"2022-05-01/2022-09-30"`` (open ends ``..``), one day,
    the Imalys ``"20220501-20220930"``, a ``(first, last)`` pair, or a list of those (any of them).
    ``collections``: ids; ``max_cloud``: ``eo:cloud_cover`` at most this (percent); ``distance``:
    tile centre at most this many tile radii from the frame's centre (as ``import distance``).
    """
    from ..stac import Query
    from ..stac import search as search_items

    if bbox is not None and frame is not None:
        raise InputError("search: give bbox or frame, not both")
    region = _frame(frame)
    if isinstance(collections, str):
        collections = [c.strip() for c in collections.split(",") if c.strip()]
    query = Query(bbox=tuple(float(v) for v in bbox) if bbox is not None else None,
                  geometry=region.wgs84() if region is not None else None, periods=_periods(datetime),
                  distance=distance, collections=list(collections) if collections else None,
                  max_cloud=None if max_cloud is None else float(max_cloud))
    if isinstance(source, (str, os.PathLike)) and "://" not in os.fspath(source):
        folder = Path(os.path.expanduser(os.fspath(source)))
        if folder.is_dir() and not (folder / "catalog.json").exists():
            archives = [p for p in sorted(folder.iterdir()) if p.is_file() and _is_archive(p)]
            if not archives:
                raise InputError(f"{folder} holds neither a STAC catalog (catalog.json) nor archives (.tar, .zip)")
            source = archives
    return search_items(source, query, log=log)


def _periods(value: Any) -> tuple[tuple[date, date], ...]:
    """``datetime`` of :func:`search` → inclusive (first, last) dates."""
    if value is None:
        return ()
    if isinstance(value, (list, set)) or (isinstance(value, tuple) and not _is_pair(value)):
        return tuple(p for v in value for p in _periods(v))
    if isinstance(value, tuple):
        first, last = (_day(value[0], date.min), _day(value[1], date.max))
    elif isinstance(value, (date, datetime)):
        first = last = _day(value, date.min)
    else:
        text = str(value).strip()
        if "/" in text:
            a, b = text.split("/", 1)
            first, last = _day(a, date.min), _day(b, date.max)
        elif len(text) == 17 and text[8] == "-" and text.replace("-", "").isdigit():  # Imalys YYYYMMDD-YYYYMMDD
            first, last = _day(text[:8], date.min), _day(text[9:], date.max)
        else:
            first = last = _day(text, date.min)
    if first > last:
        raise InputError(f"datetime {value!r}: the first date is after the last")
    return ((first, last),)


def _is_pair(value: tuple) -> bool:
    return len(value) == 2 and all(v is None or isinstance(v, (str, date)) and not _is_range(v) for v in value)


def _is_range(value: Any) -> bool:
    return isinstance(value, str) and "/" in value


def _day(value: Any, open_end: date) -> date:
    if value is None or (isinstance(value, str) and value.strip() in ("", "..")):
        return open_end
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if len(text) == 10:
            return date.fromisoformat(text)
        return _day(datetime.fromisoformat(text.replace("Z", "+00:00")), open_end)
    except ValueError:
        raise InputError(f"datetime {value!r} is not a date; accepted: 2022-05-15, 20220515, "
                         "2022-05-01/2022-09-30 (.. for an open end) or 20220501-20220930") from None


def _frame(frame: Any) -> Frame | None:
    """A Frame from a vector file, a Frame, a shapely geometry (WGS84) or a (w, s, e, n) box in degrees."""
    if frame is None:
        return None
    from ..cube.grid import Frame

    if isinstance(frame, Frame):
        return frame
    if isinstance(frame, (str, os.PathLike)):
        path = Path(os.path.expanduser(os.fspath(frame)))
        if not path.is_file():
            raise InputError(f"the frame {path} is not a file", hint="give a vector file GDAL/OGR reads (.gpkg, .shp, .geojson)")
        return Frame.read(path)
    if hasattr(frame, "geom_type"):
        return Frame(Path("<geometry>"), frame, "EPSG:4326")
    if isinstance(frame, Sequence) and len(frame) == 4:
        from shapely.geometry import box

        return Frame(Path("<bbox>"), box(*map(float, frame)), "EPSG:4326")
    raise InputError(f"frame {frame!r}: accepted are a vector file, a shapely geometry in WGS84 or (west, south, east, north)")


# ---------------------------------------------------------------------------------------------- load
def load(items: Iterable[pystac.Item], *, bands: Sequence[str] | None = None, frame: Any = None,
         crs: int | str | None = None, resolution: float | None = None, rule: str = "flags",
         quality: float | None = None, cover: float | None = None, mask: bool = True,
         factor: float | str | None = "auto", offset: float | None = None,
         chunks: int | None = None) -> xr.DataArray:
    """The calibrated, masked cube of ``items``: a lazy float32 DataArray (time, band, y, x).

    Exactly what ``import`` + ``compile`` compute: tiles of one sensor, orbit and day are merged
    into one image (a pixel is taken from the first tile usable there); pixels the quality band
    calls fill, or disturbed under ``rule`` (``"flags"``, or ``"confidence"`` as the original
    Imalys; ``mask=False`` keeps disturbed ones), are NaN; values are ``DN · factor + offset``
    (``factor="auto"``: the items' ``raster:bands`` scale and offset). Each image's clear
    fraction inside the frame's rectangle is measured first (one pass over the quality bands,
    computed now) and becomes the ``quality`` coordinate that ``reduce(cube, "bestof")`` uses;
    images below ``quality`` or ``cover`` (fraction of the frame with data) are left out, with an
    INFO message each. ``bands``: asset keys, common names or Imalys suffixes (``_B4``); default
    the items' reflectance bands. The grid: ``crs`` (EPSG code; default the most common of the
    images), ``resolution`` (its units; default the finest), the frame's rectangle (else the
    union of the images), on the images' own pixel grid when nothing is reprojected; pixels
    outside the frame's polygon are NaN. ``chunks``: block side in pixels (default: sized per cube).
    """
    import dataclasses

    from ..cube.grid import check_grid_size, geometry_mask
    from ..cube.load import load_groups
    from ..cube.plan import PlanError, Recipe, common_grid, measure_coverages, plan_acquisitions
    from ..runtime.client import active_client
    from ..runtime.cluster import apply_gdal_env

    apply_gdal_env()  # GDAL's cache and HTTP settings, as a chain run has them (values already set win)
    items = list(items)
    if not items:
        raise InputError("load: no items (the search found nothing?)")
    if rule not in ("flags", "confidence"):
        raise InputError(f"rule {rule!r}: accepted are 'flags' and 'confidence'")
    for name, value in (("quality", quality), ("cover", cover)):
        if value is not None and not 0 <= float(value) <= 1:
            raise InputError(f"{name} = {value}: must be a fraction between 0 and 1 (e.g. 0.7)")
    region = _frame(frame)
    recipe = Recipe(bands=tuple(bands or ()), factor=factor, offset=offset, rule=rule, mask=mask)
    try:
        acquisitions = plan_acquisitions(items, recipe, region)
    except PlanError as exc:
        raise InputError(f"load: {exc} ({exc.parameter})") from exc
    counts = measure_coverages(acquisitions, rule, chunks, in_process=active_client() is None)
    kept = []
    for acq, cov in zip(acquisitions, counts):
        why = cov.rejection(cover=cover, quality=quality)
        if why is None:
            kept.append((acq, round(cov.quality, 6)))  # as import stores it: bestof sees the same numbers
        else:
            log.info("load: left out %s: %s", acq.group.name, why if why == "no data" else
                     f"{why} {getattr(cov, why):.6g} below {quality if why == 'quality' else cover}")
    if not kept:
        raise InputError(f"load: none of the {len(acquisitions)} image(s) is left (quality {quality}, cover {cover})",
                         hint="lower quality or cover, or widen the search")
    grids = [a.grid for a, _ in kept]
    grid = common_grid(grids, [a.group.resampling == "nearest" for a, _ in kept], epsg=_epsg(crs),
                       pixel=resolution, frame=region)
    check_grid_size(grid)
    groups = []
    for a, q in kept:
        g = dataclasses.replace(a.group, quality=q)
        if (a.grid.epsg, a.grid.res_xy, a.grid.anchor) != (grid.epsg, grid.res_xy, grid.anchor):
            g = dataclasses.replace(g, resampling="bilinear")  # reprojected or shifted: interpolate, QA stays nearest
        groups.append(g)
    mask_plane = geometry_mask(region.geometry_in(grid.epsg), grid) if region is not None else None
    cube = load_groups(groups, grid, chunksize=chunks, region=mask_plane)
    cube.name = "reflectance" if all(g.calibration.factors != (1.0,) * len(g.keys) for g in groups) else None
    return cube


def _epsg(crs: int | str | None) -> int | None:
    if crs is None:
        return None
    if isinstance(crs, int):
        return crs
    from pyproj import CRS

    try:
        epsg = CRS.from_user_input(crs).to_epsg()
    except Exception as exc:
        raise InputError(f"crs {crs!r} is not a coordinate system: {exc}") from None
    if epsg is None:
        raise InputError(f"crs {crs!r} has no EPSG code; give one, e.g. 32632")
    return epsg


# -------------------------------------------------------------------------------------------- reduce
def reduce(cube: xr.DataArray, method: str = "bestof", *, threshold: float = 0.5, preserve: str | None = "bands",
           red: int | None = None, nir: int | None = None, blue: int | None = None,
           count: bool = False, source: bool = False, flat: bool = False) -> xr.DataArray:
    """Reduce a (time, band, y, x) cube over time, per pixel: a lazy (band, y, x) DataArray.

    ``method``: ``bestof`` (uses the cube's ``quality`` coordinate), ``median``, ``mean``,
    ``medoid``, ``variance``, ``brightness``, ``difference``, ``ndvi``, ``nirv``, ``evi``,
    ``count`` (see docs/chains.md, ``reduce``). ``preserve="bands"`` (the default here) reduces
    each band on its own; ``preserve=None`` is the original Imalys without ``preserve = bands``:
    all bands of all dates become one layer stack and one band. ``red``/``nir``/``blue``: 1-based
    band numbers for the indices; ``count``/``source`` add those bands; ``flat`` averages the
    result bands into one. The result's attrs carry ``start_datetime``/``end_datetime`` of the
    cube, which :func:`to_cog` writes into the item.
    """
    import numpy as np

    from ..commands.reduce import layers_as_time
    from ..composite import reduce_stack
    from ..registry import REDUCERS

    name = str(method).strip().lower()
    if name not in REDUCERS:
        raise InputError(f"reduce: unknown method {method!r}; accepted: {', '.join(REDUCERS)}")
    if preserve not in ("bands", None):
        raise InputError(f"reduce: preserve = {preserve!r}; accepted: 'bands' or None")
    work = cube if (preserve == "bands" or not REDUCERS[name].per_band) else layers_as_time(cube)
    quality = work.coords["quality"].values if "quality" in work.coords else None
    if name == "bestof" and quality is None:
        raise InputError("reduce: bestof needs the images' quality: a cube from load() has it (the `quality` coordinate)")
    try:
        out = reduce_stack(work, name, quality=quality, threshold=threshold, red=red, nir=nir, blue=blue,
                           count=count, source=source, flat=flat)
    except ValueError as exc:
        raise InputError(f"reduce: {exc}") from exc
    if "time" in cube.coords and cube.sizes.get("time"):
        times = np.sort(cube["time"].values)
        if np.issubdtype(times.dtype, np.datetime64):
            out.attrs["start_datetime"] = str(np.datetime_as_string(times[0], unit="s")) + "Z"
            out.attrs["end_datetime"] = str(np.datetime_as_string(times[-1], unit="s")) + "Z"
    return out


# -------------------------------------------------------------------------------------------- to_cog
def to_cog(dataarray: xr.DataArray, path: str | os.PathLike[str], *, overwrite: bool = False,
           datetime: Any = None, **options: Any) -> pystac.Item:
    """Write a (band, y, x) DataArray (lazy or not, with a CRS) as a Cloud Optimized GeoTIFF at
    ``path`` and its STAC item beside it (``x.json`` for ``x.tif``); return that item.

    The COG is streamed block by block, checked (structure and overviews) under a temporary name
    and only then renamed; float data keeps NaN as nodata and the band names. A file that
    imalys-stac did not write is not replaced unless ``overwrite=True``. ``datetime``: the item's
    date (default the ``start_datetime``/``end_datetime`` :func:`reduce` leaves in the attrs,
    else now). ``options``: those of :func:`imalys_stac.write.write_cog` (``compress``,
    ``blocksize``, ``overviews``, ``resampling``, ``tags``).
    """
    from ..write import write_cog
    from ..write.atomic import write_json_atomic

    target = Path(os.path.expanduser(os.fspath(path))).absolute()
    if target.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"to_cog: {target.name} does not end in .tif or .tiff")
    item_path = target.with_name(target.stem + ".json")
    if not overwrite:
        for existing in (target, item_path):
            if existing.exists() and not _ours(item_path, target):
                raise InputError(f"{existing} exists and was not written by imalys-stac",
                                 hint="choose another path, or pass overwrite=True to replace it")
    if dataarray.rio.crs is None:
        raise InputError("to_cog: the array has no CRS; set one with .rio.write_crs(...)")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_cog(dataarray, target, **options)
    item = _cog_item(target, dataarray, datetime)
    # one single-band VRT per band beside the file, as `export` gives: loaders that refuse
    # multi-band assets (stackstac) open the bands one by one
    from ..products import export_view

    export_view(item, target, written=target)
    write_json_atomic(item_path, item)
    from ..stac import read_item

    return read_item(item_path)


def _ours(item_path: Path, target: Path) -> bool:
    """Whether `target` was written by to_cog or export: the item beside it says so."""
    import json

    from ..commands.export import written_by_us

    if written_by_us(target):
        return True
    try:
        data = json.loads(item_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and _WRITER in data.get("properties", {})
            and data.get("assets", {}).get("data", {}).get("href") == f"./{target.name}")


def _cog_item(target: Path, arr: xr.DataArray, when: Any) -> dict:
    """The STAC item of a COG written by to_cog: footprint, dates, projection and the bands read
    back from the file (``eo:bands``/``raster:bands``)."""
    import rasterio

    from .. import __version__
    from ..cube.grid import Grid
    from ..gdalnames import gdal_name
    from ..products import EO_EXT, PROJ_EXT, RASTER_EXT, band_fields

    with rasterio.open(gdal_name(target)) as ds:
        epsg = ds.crs.to_epsg() if ds.crs is not None else None
        if epsg is None:
            raise InputError(f"to_cog: the CRS of {target.name} has no EPSG code; reproject to one first")
        b = ds.bounds
        grid = Grid(epsg, (b.left, b.bottom, b.right, b.top), abs(ds.transform.a),
                    None if abs(ds.transform.a) == abs(ds.transform.e) else abs(ds.transform.e))
    poly = grid.wgs84_polygon()
    props: dict[str, Any] = {**grid.to_stac(), _WRITER: f"imalys-stac {__version__}", "title": target.name}
    start, end = arr.attrs.get("start_datetime"), arr.attrs.get("end_datetime")
    if when is not None:
        props["datetime"] = _iso(when)
    elif start and end:
        props.update(start_datetime=start, end_datetime=end, datetime=start if start == end else None)
        if props["datetime"] is None:
            s, e = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
            props["datetime"] = _iso(s + (e - s) / 2)
    else:
        props["datetime"] = _iso(datetime.now(timezone.utc))
    from shapely.geometry import mapping

    asset = {"href": f"./{target.name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
             "roles": ["data"], **band_fields(target)}
    return {"type": "Feature", "stac_version": "1.0.0", "stac_extensions": [PROJ_EXT, EO_EXT, RASTER_EXT],
            "id": target.stem, "geometry": mapping(poly), "bbox": list(poly.bounds), "properties": props,
            "links": [], "assets": {"data": asset}}


def _iso(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
