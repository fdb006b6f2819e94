"""Item fields of a Landsat C2 L2 archive (as stactools-landsat writes them for USGS's archives)."""
from __future__ import annotations

from typing import Any

from ...product_records import ARCHIVE
from ..base import ItemFields
from ..common import COG, EXT, GEOTIFF, as_float, asset_template, proj_fields, raster_asset, reference_grid
from . import qa
from .archive import LandsatMetadata
from .bands import METADATA_MEMBERS, SENSORS

COLLECTION = "landsat-c2-l2"
#: DOIs of the Landsat Collection 2 Level-2 science products, by sensor (as stactools-landsat)
LANDSAT_DOI = {"LC08": "10.5066/P9OGBGM6", "LC09": "10.5066/P9OGBGM6", "LE07": "10.5066/P9C7I13B",
               "LT05": "10.5066/P9IAXOVV", "LT04": "10.5066/P9IAXOVV"}
DESCRIPTION = "Landsat Collection 2 Level-2"
#: members beside the bands that become assets: suffix -> (key, media type, title, roles)
LANDSAT_EXTRA = {
    "thumb_small.jpeg": ("thumbnail", "image/jpeg", "Thumbnail image (USGS browse)", ("thumbnail",)),
    "thumb_large.jpeg": ("reduced_resolution_browse", "image/jpeg", "Reduced resolution browse image (USGS)", ("overview",)),
}
#: bit-field rasters: ``raster:bands`` unit "bit index"
_BIT_FIELDS = ("QA_PIXEL", "QA_RADSAT", "SR_QA_AEROSOL")


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


def item_fields(meta: LandsatMetadata) -> ItemFields:
    """Properties, assets and extensions of one Landsat archive's item (the item grid is the
    30 m reflectance grid; assets on another grid carry their own)."""
    ref = reference_grid(meta)
    landsat8 = meta.sensor in ("LC08", "LC09")
    assets: dict[str, Any] = {}
    for band in meta.bands:
        grid = meta.grids[band.suffix]
        asset = raster_asset(meta, band, COG if grid.cog else GEOTIFF,
                             unit="bit index" if band.suffix in _BIT_FIELDS else None)
        if band.suffix == "QA_PIXEL":
            asset["classification:bitfields"] = qa_pixel_bitfields(landsat8)
        if grid.shape != ref.shape or tuple(grid.transform) != tuple(ref.transform):
            asset.update(proj_fields(grid))
            asset["proj:bbox"] = list(grid.bbox)
        assets[band.key] = asset
    for suffix, (key, media, title) in METADATA_MEMBERS.items():
        if suffix in meta.members:
            assets[key] = {"href": meta.href(suffix), "type": media, "title": title, "roles": ["metadata"]}
    for suffix, (key, media, title, roles) in LANDSAT_EXTRA.items():
        if suffix in meta.members:
            assets[key] = {"href": meta.href(suffix), "type": media, "title": title, "roles": list(roles)}

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
        **proj_fields(ref),
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
    roll = as_float(attrs.get("ROLL_ANGLE"))
    props["view:off_nadir"] = abs(roll) if roll is not None and str(attrs.get("NADIR_OFFNADIR")).strip('"') == "OFFNADIR" else 0
    props["grid:code"] = f"WRS2-{meta.path:03d}{meta.row:03d}"
    props["description"] = DESCRIPTION
    doi = LANDSAT_DOI.get(meta.sensor)
    if doi:
        props["sci:doi"] = doi
    props[ARCHIVE] = str(meta.archive)

    extensions = [EXT["eo"], EXT["proj"], EXT["raster"], EXT["classification"], EXT["grid"]]
    if doi:
        extensions.append(EXT["sci"])
    if any(k.startswith("view:") for k in props):
        extensions.append(EXT["view"])
    if meta.scene_id:  # the landsat schema requires it; without it the fields stay, undeclared
        extensions.append(EXT["landsat"])
    return ItemFields(props, assets, extensions)


def item_assets() -> dict[str, Any]:
    """``item_assets`` of the collection, from the band tables of every sensor family."""
    out: dict[str, Any] = {}
    for _platform, _inst, table in SENSORS.values():
        for b in table:
            out.setdefault(b.key, asset_template(b, GEOTIFF))
    for key, media, title in METADATA_MEMBERS.values():
        out[key] = {"type": media, "title": title, "roles": ["metadata"]}
    return out
