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

from ..providers.base import SceneMetadata
from ..providers.common import COG, EXT, GEOTIFF, JP2, JPEG, PNG, STAC_VERSION  # noqa: F401 (re-exported)
from ..registry import open_archive


def _provider(meta: SceneMetadata):
    from ..registry import provider

    return provider(meta.provider_name)


def collection_id_for(meta: SceneMetadata) -> str:
    """Collection an archive's item belongs to (its provider's first collection)."""
    return _provider(meta).collections[0]


def item_dict(meta: SceneMetadata) -> dict[str, Any]:
    """The item of one archive as a STAC 1.1 dict (no links): the provider's properties, assets
    and extensions, with id, collection, footprint geometry, bbox and centroid."""
    fields = _provider(meta).item_fields(meta)
    return _item(meta, fields.properties, fields.extensions, fields.assets)


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
    import numpy as np
    import shapely
    from shapely.geometry import shape

    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    return shapely.transform(shape(item.geometry), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
