"""Product items of the working directory: what each kind records, and how a product becomes a
cube again.

- import product: a recipe, not pixels — the source items (archive members read in place), bands,
  calibration, QA rule and grid of one acquisition, with its quality fraction. Computed when a
  later step needs the pixels.
- compile product: a list of import products and one common grid (plus an optional frame).
- reduce product: a Cloud Optimized GeoTIFF computed from a compile (or import) product.
Every product item links `derived_from` its inputs, so provenance can be walked back to the archives.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pystac
from shapely import wkt as shapely_wkt
from shapely.geometry import mapping

from . import __version__
from .cube.bands import Calibration
from .cube.grid import Grid, geometry_mask
from .cube.load import SceneGroup, load_groups
from .cube.stored import stored_cube, stored_stack_path
from .gdalnames import gdal_name, vrt_bytes
from .product_records import (
    COMMAND,
    FILL_ONLY,
    INPUTS,
    KIND,
    VERSION,
    WRITTEN_IN,
    CompileRecord,
    CompositeRecord,
    ImportRecord,
    RecordError,
    record_of,
)
from .text import markdown_escape
from .workdir import WorkDir, WorkdirError

if TYPE_CHECKING:  # the cube is made by cube.load (xarray is imported there, when a cube is read)
    import xarray as xr

PROJ_EXT = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"
SOURCES_FILE = "sources.json"



def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


TITLES = {
    "import": "imported image of {date}",
    "compile": "stack of {n} images, {span}",
    "reduce": "{process} of {source}, {span}",
}


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _base_item(name: str, grid: Grid, dt: datetime | None, props: dict, start=None, end=None) -> pystac.Item:
    """A product item: title from the product name; a period product (compile, reduce) carries
    ``start_datetime``/``end_datetime`` and, as ``datetime``, the middle of the period (STAC
    Browser shows it, and readers that sort or filter by ``datetime`` find the product)."""
    poly = grid.wgs84_polygon()
    props = {k: v for k, v in {**props, **grid.to_stac(), "created": _now(), VERSION: __version__}.items() if v is not None}
    if dt is None:
        props["start_datetime"] = _iso(start)
        props["end_datetime"] = _iso(end)
        dt = start + (end - start) / 2
    props.setdefault("title", name)
    kind = props.get(KIND)
    record = record_of(props) if kind in TITLES else None
    span = (f"{start:%Y-%m-%d} to {end:%Y-%m-%d}" if start is not None else f"{dt:%Y-%m-%d}")
    # STAC descriptions are CommonMark: product names and dates are escaped to show as written
    props.setdefault("description", markdown_escape(f"imalys-stac {kind} product {name}: " + TITLES.get(str(kind), "{span}").format(
        date=f"{dt:%Y-%m-%d}", n=getattr(record, "layers", None), span=span,
        process=getattr(record, "process", None), source=(getattr(record, "inputs", None) or ["?"])[0])))
    item = pystac.Item(
        id=name,
        geometry=mapping(poly),
        bbox=list(poly.bounds),
        datetime=dt,
        properties=props,
        stac_extensions=[PROJ_EXT],
    )
    return item


EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
RASTER_ENDINGS = (".tif", ".tiff", ".vrt", ".img", ".bsq", ".nc")
#: GDAL's VRT has no registered media type; this is the one in use for it. Loaders that pick
#: assets by media type (stackstac's default) skip it: name the band assets to read them.
VRT_MEDIA_TYPE = "application/x-gdal-vrt"


def _band_table() -> dict[str, Any]:
    """Asset key, member suffix or common name → BandInfo (every provider's table, registry order)."""
    from .registry import providers

    out: dict[str, Any] = {}
    for provider in providers():
        for name, b in provider.band_table().items():
            out.setdefault(name, b)
    return out


def band_fields(path: str | Path) -> dict:
    """``eo:bands`` and ``raster:bands`` of a raster file, read from the file itself: band names
    (the band descriptions the writers set), common names and wavelengths from the band tables,
    data type, nodata and resolution — so stackstac and odc-stac learn the bands from STAC."""
    import math

    import rasterio

    table = _band_table()
    eo, rb = [], []
    with rasterio.open(gdal_name(path)) as ds:
        res = round(float(abs(ds.res[0])), 6)
        for i in range(ds.count):
            name = ds.descriptions[i] or f"band{i + 1}"
            e: dict = {"name": name}
            info = table.get(name)
            if info is not None and getattr(info, "common_name", None):
                e["common_name"] = info.common_name
                if info.wavelength is not None:
                    e["center_wavelength"] = info.wavelength
            eo.append(e)
            r: dict = {"data_type": ds.dtypes[i], "spatial_resolution": res}
            nd = ds.nodatavals[i]
            if nd is not None:
                r["nodata"] = "nan" if isinstance(nd, float) and math.isnan(nd) else nd
            if info is not None and "reflectance" in getattr(info, "roles", ()):
                r["unit"] = "1"  # calibrated surface reflectance: a fraction
            elif info is not None and getattr(info, "unit", None):
                r["unit"] = info.unit
            if (ds.scales[i], ds.offsets[i]) != (1.0, 0.0):  # scaled integers: how readers calibrate them
                r.update(scale=ds.scales[i], offset=ds.offsets[i])
            rb.append(r)
    return {"eo:bands": eo, "raster:bands": rb}


def describe_assets(item: pystac.Item, folder: Path | None = None) -> None:
    """Add ``eo:bands``/``raster:bands`` to every raster data asset of a product, read from its
    file (an absolute href, or one relative to ``folder``)."""
    described = False
    for asset in item.assets.values():
        path = _local_raster(asset, folder)
        if path is None:
            continue
        try:
            asset.extra_fields.update(band_fields(path))
        except Exception:  # a file GDAL cannot open stays undescribed, never fails the save
            continue
        described = True
    if described:
        for ext in (EO_EXT, RASTER_EXT):
            if ext not in item.stac_extensions:
                item.stac_extensions.append(ext)


def _local_raster(asset: pystac.Asset, folder: Path | None) -> Path | None:
    """The local file of a raster data asset (None: not data, not a raster, remote or missing)."""
    href = asset.href
    if "data" not in (asset.roles or []) or not href.lower().endswith(RASTER_ENDINGS) or "://" in href:
        return None
    if Path(href).is_absolute():
        path = Path(href)
    elif folder is not None:
        path = (Path(folder) / href).resolve()
    else:
        return None
    return path if path.exists() else None


def add_band_assets(item: pystac.Item, files: dict[str, Path]) -> dict[str, Path]:
    """One single-band VRT asset per band of every multi-band raster data asset (written beside
    its file, which it names relatively): stackstac reads one band per asset and refuses an asset
    whose ``raster:bands`` has several. Returns the new files (asset key → path) to store with
    the product. Keys: see :func:`band_asset_key`."""
    from .cube.vrt import band_vrt

    new: dict[str, Path] = {}
    for key in list(item.assets):
        asset = item.assets[key]
        path = _local_raster(asset, None)
        eo, rb = asset.extra_fields.get("eo:bands") or [], asset.extra_fields.get("raster:bands") or []
        if path is None or len(rb) < 2 or len(eo) != len(rb):
            continue
        for i, (e, r) in enumerate(zip(eo, rb), start=1):
            name = str(e.get("name") or f"band{i}")
            band_key = band_asset_key(name, item.assets.keys() | new.keys(), key)
            vrt = path.with_name(f"{path.stem}.{_file_part(name)}.vrt")
            vrt.write_bytes(vrt_bytes(band_vrt(path, i, relative_to=vrt.parent)))
            item.add_asset(band_key, pystac.Asset(
                href=str(vrt), media_type=VRT_MEDIA_TYPE, roles=["data"],
                title=f"{name}: band {i} of {path.name} (a GDAL VRT)",
                # raster:bands only: an eo:bands name here would make the band's name ambiguous for
                # odc-stac (two assets claiming it), which then drops it as a name of the file's band
                extra_fields={"raster:bands": [r]}))
            new[band_key] = vrt
    return new


def band_asset_key(band: str, taken, of: str) -> str:
    """The key of a band's single-band asset: ``<band>.vrt``. Not the band's bare name: odc-stac
    drops a band name (``eo:bands`` name or common name) as an alias of the multi-band asset's band
    when an asset has that key, and its users select bands by those names (``bands=["red"]``).
    Prefixed with the multi-band asset's key if taken."""
    key = f"{band}.vrt"
    return key if key not in taken else f"{of}.{key}"


def _file_part(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def store(workdir: WorkDir, item: pystac.Item, files: dict[str, Path] | None = None) -> Path:
    """Store a product in the working directory with what loaders need to read it: the bands of
    its raster files (``eo:bands``/``raster:bands``, read from the files before they move) and one
    single-band asset per band of a multi-band file. The storage itself is ``WorkDir.save``."""
    files = dict(files or {})
    describe_assets(item)
    files.update(add_band_assets(item, files))
    return workdir.save(item, files=files)


def exported_band_fields(item: pystac.Item, target: Path) -> dict:
    """``eo:bands``/``raster:bands`` of an exported raster file, read from the file when it is
    there (as written: the bands, their type and nodata), else those of the product's data asset."""
    from .registry import FORMATS

    fmt = FORMATS.get(Path(target).suffix.lower())
    if fmt is None or not fmt.band_fields:  # a PNG, a Zarr store: no bands of the product's as bands
        return {}
    if Path(target).is_file():
        try:
            return band_fields(target)
        except Exception:  # a file GDAL cannot open (netCDF without its driver…) keeps the product's
            pass
    if "data" not in item.assets:
        return {}
    extra = item.assets["data"].extra_fields
    return {k: extra[k] for k in ("eo:bands", "raster:bands") if k in extra}


def export_view(data: dict, target: Path, written: Path | None = None) -> None:
    """What STAC Browser and loaders see of an exported file's item: titled by the file's name;
    a PNG export is its own thumbnail (the roles of its format entry); a multi-band GeoTIFF gets one single-band VRT per band in
    a folder beside it, ``<name>.bands/`` (written next to `written`, the file in its scratch
    folder, and moved with it), as products do (see :func:`add_band_assets`). (The product's quicklook is not linked: a later
    chain may replace the product of that name, and the picture would no longer show this file.)"""
    data["properties"]["title"] = Path(target).name
    if written is None or Path(target).suffix.lower() not in (".tif", ".tiff"):
        return
    from .cube.vrt import band_vrt

    asset = data["assets"]["data"]
    eo, rb = asset.get("eo:bands") or [], asset.get("raster:bands") or []
    if len(rb) < 2 or len(eo) != len(rb):
        return
    # one folder beside the file (`x.bands/`), replaced with it; a folder of that name holding
    # anything but our VRTs is the user's: then no views
    folder_name = f"{Path(target).stem}.bands"
    existing = Path(target).with_name(folder_name)
    if existing.exists() and (not existing.is_dir() or any(p.suffix != ".vrt" for p in existing.iterdir())):
        return
    views = Path(written).with_name(folder_name)
    views.mkdir(exist_ok=True)
    for i, (e, r) in enumerate(zip(eo, rb), start=1):
        name = str(e.get("name") or f"band{i}")
        key = band_asset_key(name, data["assets"].keys(), "data")
        vrt = views / f"{_file_part(name)}.vrt"
        vrt.write_bytes(vrt_bytes(band_vrt(written, i, relative_to=vrt.parent)))
        data["assets"][key] = {"href": f"./{folder_name}/{vrt.name}", "type": VRT_MEDIA_TYPE, "roles": ["data"],
                               "title": f"{name}: band {i} of {Path(target).name} (a GDAL VRT)",
                               "raster:bands": [r]}  # no eo:bands: see add_band_assets
    for ext in (EO_EXT, RASTER_EXT):
        if ext not in data["stac_extensions"]:
            data["stac_extensions"].append(ext)


def export_links(workdir: WorkDir, item: pystac.Item, item_file: Path) -> list[dict]:
    """Links of an exported file's item: ``derived_from`` the product in the working directory
    (relative, so results and working directory can move together), and that product's own
    sources as ``via`` hints are left to the product item itself."""
    product = workdir.item_path(item.id)
    href = os.path.relpath(product, Path(item_file).parent)
    return [{"rel": "derived_from", "href": Path(href).as_posix(), "type": "application/json",
             "title": f"{item.id} in the working directory {workdir.path}"}]


# -- import products ----------------------------------------------------------------------------
def import_record(group: SceneGroup, *, cover: float, frame: str | None, frame_geometry: str | None = None,
                  frame_crs: str | None = None) -> ImportRecord:
    """The recipe of an acquisition as stored in its import product."""
    first = group.items[0].properties
    instruments = first.get("instruments")
    return ImportRecord(
        sources=tuple(it.id for it in group.items), bands=tuple(group.keys),
        factor=tuple(group.calibration.factors), offset=tuple(group.calibration.offsets),
        calibration=group.calibration.source, mask=group.rule or FILL_ONLY,
        resampling=group.resampling, quality=group.quality, cover=cover, frame=frame, frame_geometry=frame_geometry, frame_crs=frame_crs,
        region_wkt=group.region_wkt, region_epsg=group.region_epsg, platform=first.get("platform"),
        instruments=tuple(instruments) if instruments is not None else None, constellation=first.get("constellation"),
    )


def import_item(group: SceneGroup, grid: Grid, *, cover: float, frame: str | None, sources_file: Path,
                folder: Path | None = None, frame_geometry: str | None = None,
                frame_crs: str | None = None) -> pystac.Item:
    """The STAC item of an import product; its source items go to `sources_file` (a
    FeatureCollection) so the recipe is self-contained. `folder` is where the product will be
    stored: the source items' hrefs and the ``derived_from`` links are written relative to it, so
    a working directory moves together with its archive folder."""
    first = group.items[0]
    props = import_record(group, cover=cover, frame=frame, frame_geometry=frame_geometry,
                          frame_crs=frame_crs).to_properties()
    from .registry import provider_for_item

    provider = provider_for_item(first)
    for key in (provider.product_properties if provider is not None else ()):
        if key in first.properties:
            props[key] = first.properties[key]
    item = _base_item(group.name, grid, group.datetime, props)
    base = Path(folder) if folder is not None else Path(sources_file).parent
    fc = {"type": "FeatureCollection", WRITTEN_IN: str(base.absolute()),
          "features": [_portable_source(it, base) for it in group.items]}
    sources_file.write_text(json.dumps(fc, indent=1))
    item.add_asset(
        "sources",
        pystac.Asset(href=str(sources_file), media_type="application/geo+json", roles=["metadata"],
                     title="Source archive items (their assets are members of the archives, read in place)"),
    )
    for it in group.items:
        href = it.get_self_href()
        if href and not href.startswith("/vsi") and "://" not in href:
            href = Path(os.path.relpath(href, base)).as_posix()
        if href and not href.startswith("/vsi"):
            item.add_link(pystac.Link("derived_from", href, media_type="application/json", title=it.id))
    return item


def _portable_source(it: pystac.Item, base: Path) -> dict:
    """A source item as the product stores it: asset hrefs (archive members) relative to the
    product folder, as an archive catalog writes them (see ``stac.hrefs``)."""
    from .stac.hrefs import portable_hrefs

    return portable_hrefs(it.to_dict(include_self_link=False, transform_hrefs=False), base)


def _archives_found(d: dict) -> bool:
    """Whether every relative archive member of a resolved source item was found (it became a
    ``/vsitar/``/``/vsizip/`` path; a member of a missing archive stays a plain path)."""
    from .stac.hrefs import is_archive_name

    return all(a["href"].startswith("/vsi") or "://" in a["href"] or not any(
        is_archive_name(part) for part in Path(a["href"]).parts) for a in (d.get("assets") or {}).values())


def group_from_item(item: pystac.Item) -> SceneGroup:
    """Turn an import product back into the SceneGroup that loads its pixels."""
    try:
        rec = ImportRecord.from_item(item)
    except RecordError:
        raise WorkdirError(f"{item.id} is a {item.properties.get(KIND)} product, not an imported image") from None
    href = Path(item.assets["sources"].get_absolute_href() or item.assets["sources"].href)
    fc = json.loads(href.read_text())
    from .stac import item_from_dict
    from .stac.search import resolve_hrefs

    # Member hrefs are relative to the product folder, so a working directory copied together with
    # its archive folder reads the copy; one moved alone finds the archives where they were when
    # the product was written. (Absolute hrefs, of products written before, are kept as they are.)
    sources = []
    for f in fc["features"]:
        d = resolve_hrefs(f, href.parent)
        if fc.get(WRITTEN_IN) and not _archives_found(d):
            d = resolve_hrefs(f, fc[WRITTEN_IN])
        sources.append(item_from_dict(d))
    return SceneGroup(
        name=item.id,
        items=sources,
        keys=list(rec.bands),
        calibration=Calibration(rec.factor, rec.offset, rec.calibration),
        rule=rec.rule,
        resampling=rec.resampling,
        quality=rec.quality,
        region_wkt=rec.region_wkt,
        region_epsg=rec.region_epsg,
    )


# -- compile products ---------------------------------------------------------------------------
def compile_item(name: str, inputs: Sequence[pystac.Item], grid: Grid, frame_wkt: str | None, frame_path: str | None) -> pystac.Item:
    times = [it.datetime for it in inputs if it.datetime is not None]  # import products have one
    bands = ImportRecord.from_item(inputs[0]).bands
    props = CompileRecord(inputs=tuple(it.id for it in inputs), bands=bands, frame=frame_path,
                          frame_wkt=frame_wkt).to_properties()
    item = _base_item(name, grid, None, props, start=min(times), end=max(times))
    for it in inputs:
        item.add_link(pystac.Link("derived_from", f"../{it.id}/{it.id}.json", media_type="application/json", title=it.id))
    return item


def cube_of(workdir: WorkDir, item: pystac.Item, chunksize: int | None = None,
            window: tuple[int, int, int, int] | None = None, grid: Grid | None = None) -> xr.DataArray:
    """(time, band, y, x) cube of an import or compile product, lazily; `window` = (row0, row1,
    col0, col1): only that part of its grid, each pixel as in the whole (see load_groups).
    `grid`: another grid over the product's area instead of its own (a coarser one for a
    quicklook, so that no pixel is computed at full resolution)."""
    kind = item.properties.get(KIND)
    own_grid = Grid.from_stac(item.properties)
    if grid is not None and window is not None:
        raise ValueError("cube_of: give a window of the product's grid or another grid, not both")
    grid = grid or own_grid
    if kind == "import":
        return load_groups([group_from_item(item)], grid, chunksize=chunksize, window=window)
    if kind == "compile":
        rec = CompileRecord.from_item(item)
        groups = []
        for n in rec.inputs:
            source = workdir.load(n)
            g = group_from_item(source)
            own = Grid.from_stac(source.properties)
            if (own.epsg, own.res_xy, own.anchor) != (own_grid.epsg, own_grid.res_xy, own_grid.anchor):
                # compile reprojects or shifts this image: interpolate reflectance (QA stays nearest)
                g = dataclasses.replace(g, resampling="bilinear")
            groups.append(g)
        stored = stored_stack_path(item)
        if stored is not None and grid is own_grid:  # `compile format = int16`: the stack's pixels are stored
            return stored_cube(stored, groups, rec.bands or groups[0].keys, grid, chunksize=chunksize, window=window)
        region = None
        if rec.frame_wkt:
            region = geometry_mask(shapely_wkt.loads(rec.frame_wkt),
                                   grid if window is None else grid.window(*window))
        return load_groups(groups, grid, chunksize=chunksize, region=region, window=window)
    raise WorkdirError(f"{item.id} is a {kind} product; expected an imported image or a compiled stack")


def derived_item(name: str, record: CompositeRecord, source: pystac.Item, grid: Grid, extra: dict) -> pystac.Item:
    """Item for a computed (pixel) product derived from `source`: the record's properties, then
    `extra` ones (the command and fingerprint)."""
    dt = source.datetime
    start = end = None
    if source.properties.get("start_datetime") and source.properties.get("end_datetime"):
        dt = None  # a period (a compiled stack): the product covers the same period
        start = datetime.fromisoformat(source.properties["start_datetime"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(source.properties["end_datetime"].replace("Z", "+00:00"))
    item = _base_item(name, grid, dt, {**record.to_properties(), **extra}, start=start, end=end)
    item.add_link(pystac.Link("derived_from", f"../{source.id}/{source.id}.json", media_type="application/json", title=source.id))
    return item


def collapse_warning(process: str, source: pystac.Item, preserve: str | None, per_band: bool) -> str | None:
    """What to tell the user when `reduce` would fold every band of every date into one band: a
    per-band process without ``preserve = bands`` reduces the whole layer stack, as the original
    does (None when nothing collapses: bands preserved, one band in all, or a process that
    combines the bands itself, such as an index)."""
    if preserve == "bands" or not per_band:
        return None
    record = record_of(source)
    bands = list(getattr(record, "bands", None) or [])
    layers = int(getattr(record, "layers", None) or 1)
    if len(bands) * layers <= 1:
        return None
    return (f"reduce: {process} of {source.id} without `preserve = bands` reduces all {len(bands) * layers} layers "
            f"({len(bands)} band(s) × {layers} date(s)) to ONE band, as the original Imalys does; add "
            f"`preserve = bands` to get one {process} per band ({', '.join(bands)})")


def inputs_of(item: pystac.Item) -> list[str]:
    return list(item.properties.get(INPUTS) or [l.title for l in item.links if l.rel == "derived_from" and l.title])


def lineage(workdir: WorkDir, item: pystac.Item) -> list[dict]:
    """The products `item` was computed from (itself first, then its inputs, depth first), each
    with the command that made it: the chain-spanning provenance of an exported file."""
    out: list[dict] = []
    seen: set[str] = set()

    def walk(it: pystac.Item) -> None:
        if it.id in seen:
            return
        seen.add(it.id)
        out.append({"product": it.id, "kind": it.properties.get(KIND), "command": it.properties.get(COMMAND)})
        if it.properties.get(KIND) == "import":
            return
        for n in inputs_of(it):
            if workdir.exists(n):
                walk(workdir.load(n))

    walk(item)
    return out


def archive_sources(workdir: WorkDir, item: pystac.Item) -> list[str]:
    """Ids of the archive items a product was computed from, walking derived products back."""
    kind = item.properties.get(KIND)
    if kind == "import":
        return list(ImportRecord.from_item(item).sources)
    out: list[str] = []
    for n in inputs_of(item):
        if workdir.exists(n):
            for s in archive_sources(workdir, workdir.load(n)):
                if s not in out:
                    out.append(s)
    return out
