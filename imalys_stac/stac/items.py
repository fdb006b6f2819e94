"""STAC items from provider archives (one item per archive, assets read in place).

The item is written as a plain dict with explicit extension versions, then handed to pystac:
projection v1.2.0 is the one schema that accepts both ``proj:epsg`` (the only field stackstac
0.5 reads, stackstac issue 262) and ``proj:code`` (what newer readers want).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pystac
from pyproj import Transformer

from ..archives import SceneMetadata, open_archive
from ..archives import qa
from ..archives.bands import METADATA_MEMBERS
from ..archives.landsat import Grid
from ..archives.sentinel2 import Sentinel2Metadata, scl_classes  # Sentinel-2 L2A zips

STAC_VERSION = "1.1.0"
EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "landsat": "https://stac-extensions.github.io/landsat/v2.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    # Sentinel-2 items
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "grid": "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "mgrs": "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "s2": "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json",
    "sci": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
}
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
JPEG, PNG, JP2 = "image/jpeg", "image/png", "image/jp2"
#: DOIs of the Landsat Collection 2 Level-2 science products, by sensor (as stactools-landsat)
LANDSAT_DOI = {"LC08": "10.5066/P9OGBGM6", "LC09": "10.5066/P9OGBGM6", "LE07": "10.5066/P9C7I13B",
               "LT05": "10.5066/P9IAXOVV", "LT04": "10.5066/P9IAXOVV"}
DESCRIPTION = {
    "landsat": "Landsat Collection 2 Level-2",
    "sentinel-2": "Sentinel-2 Level-2A bottom-of-atmosphere reflectance (Sen2Cor), one MGRS tile",
}
LANDSAT_COLLECTION = "landsat-c2-l2"
#: members beside the bands that become assets: suffix -> (key, media type, title, roles)
LANDSAT_EXTRA = {
    "thumb_small.jpeg": ("thumbnail", "image/jpeg", "Thumbnail image (USGS browse)", ("thumbnail",)),
    "thumb_large.jpeg": ("reduced_resolution_browse", "image/jpeg", "Reduced resolution browse image (USGS)", ("overview",)),
}
S2_EXTRA = {
    "TCI": ("visual", "image/jp2", "True color image", ("visual",)),
    "AOT": ("aot", "image/jp2", "Aerosol optical thickness (AOT)", ("data",)),
    "WVP": ("wvp", "image/jp2", "Water vapour (WVP)", ("data",)),
    "PVI": ("preview", "image/jp2", "True color preview (PVI)", ("overview",)),
}
GEOTIFF = "image/tiff; application=geotiff"


def collection_id_for(meta: SceneMetadata) -> str:
    """Collection an archive's item belongs to (one per product family)."""
    return getattr(meta, "collection", LANDSAT_COLLECTION)  # Sentinel2Metadata: "sentinel-2-l2a"


def qa_pixel_bitfields(landsat8: bool = True) -> list[dict[str, Any]]:
    """``classification:bitfields`` for QA_PIXEL, every flag bit and confidence pair (qa.py names)."""
    fields: list[dict[str, Any]] = []
    for offset, (name, desc) in sorted(qa.FLAG_BITS.items()):
        if not landsat8 and offset == qa.CIRRUS:
            continue
        fields.append({
            "name": name, "description": desc, "offset": offset, "length": 1,
            "classes": [{"name": f"not_{name}", "value": 0, "description": f"{desc}: no"},
                        {"name": name, "value": 1, "description": f"{desc}: yes"}],
        })
    for offset, (name, desc) in sorted(qa.CONFIDENCE_PAIRS.items()):
        if not landsat8 and offset == qa.CIRRUS_CONFIDENCE:
            continue
        fields.append({
            "name": name, "description": desc, "offset": offset, "length": 2,
            "classes": [{"name": level, "value": v, "description": f"{desc}: {level}"}
                        for v, level in enumerate(qa.CONFIDENCE_NAMES)],
        })
    return fields


def _proj_fields(grid: Grid) -> dict[str, Any]:
    return {
        "proj:shape": list(grid.shape),
        "proj:transform": [float(v) for v in grid.transform],
    }


def _spatial_resolution(grid: Grid) -> float:
    a, b, _, d, e, _ = grid.transform
    return round(float(((abs(a) + abs(b)) + (abs(d) + abs(e))) / 2), 6)


def item_dict(meta: SceneMetadata) -> dict[str, Any]:
    """The item of one archive as a STAC 1.1 dict (no links)."""
    # the item grid is the reflectance grid; assets on another grid carry their own
    # the finest reflectance band: SR_B* (all 30 m, the first one), or B02 at 10 m (Sentinel-2)
    ref_suffix = min((b for b in meta.bands if "reflectance" in b.roles), key=lambda b: b.gsd).suffix
    s2 = isinstance(meta, Sentinel2Metadata)
    ref = meta.grids[ref_suffix]
    landsat8 = meta.sensor in ("LC08", "LC09")
    assets: dict[str, Any] = {}
    for band in meta.bands:
        grid = meta.grids[band.suffix]
        rb: dict[str, Any] = {"data_type": grid.dtype, "spatial_resolution": _spatial_resolution(grid)}
        nodata = band.nodata if band.nodata is not None else grid.nodata
        if nodata is not None:
            rb["nodata"] = nodata
        if band.scale is not None:
            rb["scale"] = band.scale
            rb["offset"] = band.offset if band.offset is not None else 0.0
        if band.unit:
            rb["unit"] = band.unit
        elif band.suffix in ("QA_PIXEL", "QA_RADSAT", "SR_QA_AEROSOL"):
            rb["unit"] = "bit index"
        eo: dict[str, Any] = {"name": band.suffix}
        if band.common_name:
            eo["common_name"] = band.common_name
        if band.wavelength is not None:
            eo["center_wavelength"] = band.wavelength
        if band.fwhm is not None:
            eo["full_width_half_max"] = band.fwhm
        asset: dict[str, Any] = {
            "href": meta.href(band.suffix),
            "type": meta.media_type(band.suffix) if s2 else (COG if grid.cog else GEOTIFF),
            "title": band.title,
            "roles": list(band.roles),
            "gsd": band.gsd,
            "raster:bands": [rb],
        }
        if band.common_name or band.wavelength is not None:
            asset["eo:bands"] = [eo]
        if band.suffix == "QA_PIXEL":
            asset["classification:bitfields"] = qa_pixel_bitfields(landsat8)
        if s2 and band.suffix == "SCL":
            asset["classification:classes"] = scl_classes()
        if s2:  # assets at 10, 20 and 60 m: every raster asset carries its own grid
            asset.update({"proj:epsg": meta.epsg, "proj:code": f"EPSG:{meta.epsg}"})
        if s2 or grid.shape != ref.shape or tuple(grid.transform) != tuple(ref.transform):
            asset.update(_proj_fields(grid))
            asset["proj:bbox"] = list(grid.bbox)
        assets[band.key] = asset
    for suffix, (key, media, title) in getattr(meta, "metadata_members", METADATA_MEMBERS).items():
        if suffix in meta.members:
            assets[key] = {"href": meta.href(suffix), "type": media, "title": title, "roles": ["metadata"]}
    for suffix, (key, media, title, roles) in (S2_EXTRA if s2 else LANDSAT_EXTRA).items():
        if suffix in meta.members:
            assets[key] = {"href": meta.href(suffix), "type": media, "title": title, "roles": list(roles)}
            if s2:
                assets[key].update(_s2_extra_fields(meta, suffix, ref))

    if s2:
        props, extensions = _s2_properties(meta, ref)
        return _item(meta, props, extensions, assets)
    props: dict[str, Any] = {
        "datetime": meta.datetime.isoformat().replace("+00:00", "Z"),
        "platform": meta.platform,
        "instruments": list(meta.instruments),
        "constellation": "landsat",
        "eo:cloud_cover": meta.cloud_cover,
        "landsat:wrs_type": "2",
        "landsat:wrs_path": f"{meta.path:03d}",
        "landsat:wrs_row": f"{meta.row:03d}",
        "landsat:collection_category": meta.collection_category,
        "landsat:collection_number": meta.collection_number,
        "landsat:correction": meta.correction,
        "landsat:cloud_cover_land": meta.cloud_cover_land if meta.cloud_cover_land is not None else meta.cloud_cover,
        "proj:epsg": meta.epsg,
        "proj:code": f"EPSG:{meta.epsg}",
        "proj:bbox": list(ref.bbox),
        **_proj_fields(ref),
        "gsd": 30.0,
    }
    if meta.scene_id:
        props["landsat:scene_id"] = meta.scene_id
    if meta.processed is not None:
        props["landsat:product_generated"] = meta.processed.isoformat().replace("+00:00", "Z")
    if meta.sun_azimuth is not None:
        props["view:sun_azimuth"] = meta.sun_azimuth
    if meta.sun_elevation is not None:
        props["view:sun_elevation"] = meta.sun_elevation
    # as stactools-landsat: the roll angle when the scene was taken off nadir (Landsat 8-9), else 0
    attrs = meta.mtl.get("LANDSAT_METADATA_FILE", {}).get("IMAGE_ATTRIBUTES") or {}
    roll = _float(attrs.get("ROLL_ANGLE"))
    props["view:off_nadir"] = abs(roll) if roll is not None and str(attrs.get("NADIR_OFFNADIR")).strip('"') == "OFFNADIR" else 0
    props["grid:code"] = f"WRS2-{meta.path:03d}{meta.row:03d}"
    props["description"] = DESCRIPTION["landsat"]
    doi = LANDSAT_DOI.get(meta.sensor)
    if doi:
        props["sci:doi"] = doi
    props["imalys:archive"] = str(meta.archive)

    extensions = [EXT["eo"], EXT["proj"], EXT["raster"], EXT["classification"], EXT["grid"]]
    if doi:
        extensions.append(EXT["sci"])
    if any(k.startswith("view:") for k in props):
        extensions.append(EXT["view"])
    if meta.scene_id:  # the landsat schema requires it; without it the fields stay, undeclared
        extensions.append(EXT["landsat"])
    return _item(meta, props, extensions, assets)


def footprint(poly) -> tuple[dict[str, Any], list[float], dict[str, float]]:
    """(GeoJSON geometry, bbox, proj:centroid) of a WGS84 footprint. A footprint that crosses
    the antimeridian (its longitudes jump by more than 180°) is split there into a MultiPolygon
    with the ``antimeridian`` library, its bbox has west > east (GeoJSON RFC 7946 §5.2)."""
    from shapely.geometry import mapping

    geom = mapping(poly)
    lons = [x for x, _ in poly.exterior.coords]
    if max(lons) - min(lons) > 180:
        import antimeridian

        fixed = antimeridian.fix_polygon(poly, fix_winding=True)
        geom = mapping(fixed)
        bbox = list(antimeridian.bbox(fixed))
        c = antimeridian.centroid(fixed)
    else:
        bbox = list(poly.bounds)
        c = poly.centroid
    centroid = {"lat": round(float(c.y), 5), "lon": round(float(c.x), 5)}
    return _as_lists(geom), bbox, centroid


def _item(meta: SceneMetadata, props: dict[str, Any], extensions: list[str], assets: dict[str, Any]) -> dict[str, Any]:
    geometry, bbox, centroid = footprint(meta.footprint)
    props["proj:centroid"] = centroid
    links = []
    if props.get("sci:doi"):
        links.append({"rel": "cite-as", "href": f"https://doi.org/{props['sci:doi']}", "type": "text/html",
                      "title": "Product DOI"})
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": meta.product_id,
        "collection": collection_id_for(meta),
        "geometry": geometry,
        "bbox": bbox,
        "properties": props,
        "links": links,
        "assets": assets,
    }


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


# --- Sentinel-2 L2A (archives/sentinel2.py) -------------------------------------------------
def _s2_extra_fields(meta: Sentinel2Metadata, suffix: str, ref: Grid) -> dict[str, Any]:
    """Grid and band fields of the TCI/AOT/WVP rasters and the preview, as stactools-sentinel2
    writes them: their grid is the tile's at their resolution (taken from the item's grid)."""
    import re

    from ..archives.sentinel2 import S2_BANDS

    m = re.search(r"_(\d+)m\.\w+$", meta.members[suffix])
    res = int(m.group(1)) if m else 320  # PVI: 320 m
    a, _, x0, _, e, y0 = ref.transform
    rows = int(round(ref.shape[0] * abs(e) / res)) if m else int(ref.shape[0] * abs(e) // res)
    cols = int(round(ref.shape[1] * abs(a) / res)) if m else int(ref.shape[1] * abs(a) // res)
    grid = Grid((rows, cols), (float(res), 0.0, x0, 0.0, -float(res), y0), meta.epsg, "uint16", 0)
    out: dict[str, Any] = {"gsd": float(res), **_proj_fields(grid), "proj:bbox": list(grid.bbox)}
    if suffix in ("AOT", "WVP"):
        rb = {"data_type": "uint16", "nodata": 0, "offset": 0, "scale": 0.001, "spatial_resolution": float(res)}
        if suffix == "WVP":
            rb["unit"] = "cm"
        out["raster:bands"] = [rb]
    elif suffix == "TCI":
        by = {b.suffix: b for b in S2_BANDS}
        out["eo:bands"] = [{"name": n, "common_name": by[n].common_name, "center_wavelength": by[n].wavelength,
                            "full_width_half_max": by[n].fwhm} for n in ("B04", "B03", "B02")]
        out["raster:bands"] = [{"data_type": "uint8", "nodata": 0, "spatial_resolution": float(res)}] * 3
    return out


def _s2_properties(meta: Sentinel2Metadata, ref: Grid) -> tuple[dict[str, Any], list[str]]:
    """Item properties and extensions of a Sentinel-2 L2A product (the item grid is 10 m)."""
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    tile = meta.mgrs_tile
    props: dict[str, Any] = {
        "datetime": iso(meta.datetime),
        "platform": meta.platform,
        "instruments": list(meta.instruments),
        "constellation": "sentinel-2",
        "eo:cloud_cover": meta.cloud_cover,
        "proj:epsg": meta.epsg,
        "proj:code": f"EPSG:{meta.epsg}",
        "proj:bbox": list(ref.bbox),
        **_proj_fields(ref),
        "gsd": 10.0,
        "grid:code": meta.grid_code,
        "mgrs:utm_zone": int(tile[:2]),
        "mgrs:latitude_band": tile[2],
        "mgrs:grid_square": tile[3:],
        "s2:mgrs_tile": tile,
        "s2:product_uri": f"{meta.product_id}.SAFE",
        "s2:product_type": meta.product_type,
        "s2:processing_baseline": meta.processing_baseline,
    }
    for key, value in (("s2:datatake_id", meta.datatake_id), ("s2:datatake_type", meta.datatake_type),
                       ("s2:datastrip_id", meta.datastrip_id), ("s2:granule_id", meta.granule_id),
                       ("s2:tile_id", meta.tile_id), ("s2:reflectance_conversion_factor", meta.reflectance_conversion)):
        if value is not None:
            props[key] = value
    if meta.generation_time is not None:
        props["s2:generation_time"] = iso(meta.generation_time)
    props.update(sorted(meta.quality.items()))
    sat = {"sat:relative_orbit": meta.relative_orbit, "sat:absolute_orbit": meta.absolute_orbit,
           "sat:orbit_state": meta.orbit_state}
    props.update({k: v for k, v in sat.items() if v is not None})
    view = {"view:sun_azimuth": meta.sun_azimuth, "view:sun_elevation": meta.sun_elevation,
            "view:incidence_angle": meta.view_incidence, "view:azimuth": meta.view_azimuth}
    props.update({k: v for k, v in view.items() if v is not None})
    props["description"] = DESCRIPTION["sentinel-2"]
    props["imalys:archive"] = str(meta.archive)
    extensions = [EXT["eo"], EXT["proj"], EXT["raster"], EXT["classification"], EXT["grid"], EXT["mgrs"], EXT["s2"]]
    if any(k.startswith("view:") for k in props):
        extensions.append(EXT["view"])
    if any(k.startswith("sat:") for k in props):
        extensions.append(EXT["sat"])
    return props, extensions
# --- end Sentinel-2


def _as_lists(obj: Any) -> Any:
    """GeoJSON with lists instead of shapely's tuples (stable JSON round trips)."""
    if isinstance(obj, dict):
        return {k: _as_lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_as_lists(v) for v in obj]
    return obj


def item_from_metadata(meta: SceneMetadata) -> pystac.Item:
    d = item_dict(meta)
    return pystac.Item.from_dict(d, preserve_dict=False, migrate=False)


def item_from_archive(path: str | Path) -> pystac.Item:
    """One STAC item for one archive, assets pointing into it with ``/vsitar/`` (``/vsizip/``).

    Raises :class:`~imalys_stac.archives.ArchiveError` for archives that cannot be read.
    """
    return item_from_metadata(open_archive(path))


def footprint_in_crs(item: pystac.Item, epsg: int):
    """The item's footprint projected to ``epsg`` (helper for tests and cube code)."""
    from shapely.geometry import shape
    from shapely.ops import transform as shp_transform

    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    return shp_transform(tr.transform, shape(item.geometry))
