"""Item-building helpers every provider uses (extension schema URLs, raster assets, grid fields).

Generic: nothing here knows a product line.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ..archives.bands import BandInfo
from ..archives.container import MemberGrid
from .base import ItemLike, SceneMetadata, item_parts

STAC_VERSION = "1.1.0"
EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "landsat": "https://stac-extensions.github.io/landsat/v2.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "grid": "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "mgrs": "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "s2": "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json",
    "sci": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
}
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
GEOTIFF = "image/tiff; application=geotiff"
JPEG, PNG, JP2 = "image/jpeg", "image/png", "image/jp2"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def proj_fields(grid: MemberGrid) -> dict[str, Any]:
    return {
        "proj:shape": list(grid.shape),
        "proj:transform": [float(v) for v in grid.transform],
    }


def spatial_resolution(grid: MemberGrid) -> float:
    a, b, _, d, e, _ = grid.transform
    return round(float(((abs(a) + abs(b)) + (abs(d) + abs(e))) / 2), 6)


def reference_grid(meta: SceneMetadata) -> MemberGrid:
    """The item grid: the finest reflectance band's (the first of equally fine ones)."""
    suffix = min((b for b in meta.bands if "reflectance" in b.roles), key=lambda b: b.gsd).suffix
    return meta.grids[suffix]


def raster_asset(meta: SceneMetadata, band: BandInfo, media_type: str, unit: str | None = None) -> dict[str, Any]:
    """The asset of one raster member: href, type, title, roles, gsd, ``raster:bands`` and (for
    bands with a name or wavelength) ``eo:bands``. ``unit``: used when the band has none."""
    grid = meta.grids[band.suffix]
    rb: dict[str, Any] = {"data_type": grid.dtype, "spatial_resolution": spatial_resolution(grid)}
    nodata = band.nodata if band.nodata is not None else grid.nodata
    if nodata is not None:
        rb["nodata"] = nodata
    if band.scale is not None:
        rb["scale"] = band.scale
        rb["offset"] = band.offset if band.offset is not None else 0.0
    if band.unit or unit:
        rb["unit"] = band.unit or unit
    eo: dict[str, Any] = {"name": band.suffix}
    if band.common_name:
        eo["common_name"] = band.common_name
    if band.wavelength is not None:
        eo["center_wavelength"] = band.wavelength
    if band.fwhm is not None:
        eo["full_width_half_max"] = band.fwhm
    asset: dict[str, Any] = {
        "href": meta.href(band.suffix),
        "type": media_type,
        "title": band.title,
        "roles": list(band.roles),
        "gsd": band.gsd,
        "raster:bands": [rb],
    }
    if band.common_name or band.wavelength is not None:
        asset["eo:bands"] = [eo]
    return asset


def asset_template(b: BandInfo, media: str) -> dict[str, Any]:
    """A collection's ``item_assets`` entry of one band."""
    a: dict[str, Any] = {"type": media, "title": b.title, "roles": list(b.roles)}
    if b.common_name:
        a["eo:bands"] = [{"common_name": b.common_name}]
    rb: dict[str, Any] = {}
    if b.nodata is not None:
        rb["nodata"] = b.nodata
    if b.unit:
        rb["unit"] = b.unit
    if rb:
        a["raster:bands"] = [rb]
    return a


def as_float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def owns_item(item: ItemLike, collections: tuple[str, ...], marker: str, platform: str, id_prefixes: tuple[str, ...]) -> bool:
    """Whether an item (archive or STAC API) belongs to a provider: one of its collections, else a
    property only its items carry (`marker`), a platform name beginning with `platform`, or an id
    beginning with one of `id_prefixes`."""
    iid, collection, p, _ = item_parts(item)
    if collection in collections:
        return True
    return marker in p or str(p.get("platform", "")).lower().startswith(platform) or iid.startswith(id_prefixes)
