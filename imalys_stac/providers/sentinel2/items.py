"""Item fields of a Sentinel-2 L2A zip (as stactools-sentinel2 writes them for ESA's products)."""
from __future__ import annotations

import re
from typing import Any

from ...archives.container import MemberGrid
from ...product_records import ARCHIVE
from ..base import ItemFields
from ..common import EXT, asset_template, iso, proj_fields, raster_asset, reference_grid
from .archive import JP2, S2_BANDS, S2_METADATA_MEMBERS, SCL_BAND, Sentinel2Metadata, scl_classes

DESCRIPTION = "Sentinel-2 Level-2A bottom-of-atmosphere reflectance (Sen2Cor), one MGRS tile"
#: rasters beside the bands that become assets: member key -> (key, media type, title, roles)
S2_EXTRA = {
    "TCI": ("visual", "image/jp2", "True color image", ("visual",)),
    "AOT": ("aot", "image/jp2", "Aerosol optical thickness (AOT)", ("data",)),
    "WVP": ("wvp", "image/jp2", "Water vapour (WVP)", ("data",)),
    "PVI": ("preview", "image/jp2", "True color preview (PVI)", ("overview",)),
}


def _extra_fields(meta: Sentinel2Metadata, suffix: str, ref: MemberGrid) -> dict[str, Any]:
    """Grid and band fields of the TCI/AOT/WVP rasters and the preview, as stactools-sentinel2
    writes them: their grid is the tile's at their resolution (taken from the item's grid)."""
    m = re.search(r"_(\d+)m\.\w+$", meta.members[suffix])
    res = int(m.group(1)) if m else 320  # PVI: 320 m
    a, _, x0, _, e, y0 = ref.transform
    rows = int(round(ref.shape[0] * abs(e) / res)) if m else int(ref.shape[0] * abs(e) // res)
    cols = int(round(ref.shape[1] * abs(a) / res)) if m else int(ref.shape[1] * abs(a) // res)
    grid = MemberGrid((rows, cols), (float(res), 0.0, x0, 0.0, -float(res), y0), meta.epsg, "uint16", 0)
    out: dict[str, Any] = {"gsd": float(res), **proj_fields(grid), "proj:bbox": list(grid.bbox)}
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


def item_fields(meta: Sentinel2Metadata) -> ItemFields:
    """Properties, assets and extensions of one Sentinel-2 L2A product (the item grid is 10 m;
    assets at 10, 20 and 60 m: every raster asset carries its own grid)."""
    ref = reference_grid(meta)
    assets: dict[str, Any] = {}
    for band in meta.bands:
        grid = meta.grids[band.suffix]
        asset = raster_asset(meta, band, meta.media_type(band.suffix))
        if band.suffix == "SCL":
            asset["classification:classes"] = scl_classes()
        asset.update({"proj:epsg": meta.epsg, "proj:code": f"EPSG:{meta.epsg}"})
        asset.update(proj_fields(grid))
        asset["proj:bbox"] = list(grid.bbox)
        assets[band.key] = asset
    for suffix, (key, media, title) in S2_METADATA_MEMBERS.items():
        if suffix in meta.members:
            assets[key] = {"href": meta.href(suffix), "type": media, "title": title, "roles": ["metadata"]}
    for suffix, (key, media, title, roles) in S2_EXTRA.items():
        if suffix in meta.members:
            assets[key] = {"href": meta.href(suffix), "type": media, "title": title, "roles": list(roles)}
            assets[key].update(_extra_fields(meta, suffix, ref))

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
        **proj_fields(ref),
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
    props["description"] = DESCRIPTION
    props[ARCHIVE] = str(meta.archive)
    extensions = [EXT["eo"], EXT["proj"], EXT["raster"], EXT["classification"], EXT["grid"], EXT["mgrs"], EXT["s2"]]
    if any(k.startswith("view:") for k in props):
        extensions.append(EXT["view"])
    if any(k.startswith("sat:") for k in props):
        extensions.append(EXT["sat"])
    return ItemFields(props, assets, extensions)


def item_assets() -> dict[str, Any]:
    """``item_assets`` of the collection, from the band table."""
    out: dict[str, Any] = {}
    for b in (*S2_BANDS, SCL_BAND):
        out.setdefault(b.key, asset_template(b, JP2))
    for key, media, title in S2_METADATA_MEMBERS.values():
        out[key] = {"type": media, "title": title, "roles": ["metadata"]}
    return out
