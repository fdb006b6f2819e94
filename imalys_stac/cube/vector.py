"""Frames in the two plainest vector formats, read without geopandas.

A frame is usually one rectangle or outline in an ESRI shapefile or a GeoJSON file. geopandas
reads it through pyogrio, and importing pyogrio imports geopandas, pandas and pyarrow (about
0.4 s of CPU, more than a tutorial's whole import of pixels). This module reads those files
directly when they hold nothing that needs GDAL's interpretation, and gives the same geometries
and coordinate system that geopandas gives (tests/test_frames_plain.py compares both):

* a shapefile (.shp + .shx + .dbf + .prj) of 2-D polygons with one ring each, or null shapes,
  no deleted records, and a .prj that PROJ identifies as an EPSG code with confidence ≥ 90
  (the identification GDAL's shapefile driver makes, so geopandas reports that EPSG code);
* a GeoJSON file of polygons in WGS 84 (no ``crs`` member, as RFC 7946 has it, or the CRS84 one
  GDAL writes), which GDAL reports as EPSG:4326.

Everything else (holes, multi-part shapes, points and lines, measures and Z, other formats, a
.prj only GDAL can interpret, anything unusual) returns None: the caller reads it with geopandas.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

#: the confidence from which GDAL's shapefile driver replaces a .prj by the EPSG definition it matches
EPSG_MATCH_CONFIDENCE = 90

_NULL, _POLYGON = 0, 5
#: the only ``crs`` member a plain GeoJSON frame may have: WGS 84 in lon/lat, as GDAL writes it
_CRS84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}


def read_plain(path: Path) -> tuple[list[BaseGeometry | None], str] | None:
    """(one geometry per feature, None for a null one; the CRS as ``EPSG:<code>``) of a plain
    shapefile or GeoJSON frame, or None when geopandas must read it (see the module doc)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".shp":
            return _shapefile(path)
        if suffix in (".geojson", ".json"):
            return _geojson(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error, shapely.errors.ShapelyError):
        return None  # anything unexpected: GDAL reads it and reports what is wrong
    return None


def _sidecar(path: Path, ending: str) -> Path | None:
    for name in (path.stem + ending, path.stem + ending.upper()):
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def _epsg_of_prj(text: str) -> str | None:
    from pyproj import CRS

    code = CRS.from_user_input(text).to_epsg(min_confidence=EPSG_MATCH_CONFIDENCE)
    return None if code is None else f"EPSG:{code}"


def _shapefile(path: Path) -> tuple[list[BaseGeometry | None], str] | None:
    shx, dbf, prj = _sidecar(path, ".shx"), _sidecar(path, ".dbf"), _sidecar(path, ".prj")
    if shx is None or dbf is None or prj is None:
        return None
    crs = _epsg_of_prj(prj.read_text(encoding="latin-1").strip())
    if crs is None:
        return None
    data, index = path.read_bytes(), shx.read_bytes()
    if len(data) < 100 or struct.unpack(">i", data[:4])[0] != 9994 or struct.unpack("<i", data[32:36])[0] not in (_NULL, _POLYGON):
        return None
    n = (len(index) - 100) // 8
    if n <= 0 or len(index) != 100 + 8 * n or not _dbf_all_live(dbf.read_bytes(), n):
        return None
    geometries: list[BaseGeometry | None] = []
    for i in range(n):
        offset, length = (2 * v for v in struct.unpack(">ii", index[100 + 8 * i:108 + 8 * i]))
        content = data[offset + 8:offset + 8 + length]
        if len(content) != length or length < 4:
            return None
        kind = struct.unpack("<i", content[:4])[0]
        if kind == _NULL:
            geometries.append(None)
            continue
        if kind != _POLYGON:
            return None
        parts, points = struct.unpack("<ii", content[36:44])
        if parts != 1 or points < 4 or len(content) != 48 + 16 * points or struct.unpack("<i", content[44:48])[0] != 0:
            return None
        xy = struct.unpack(f"<{2 * points}d", content[48:])
        ring = list(zip(xy[0::2], xy[1::2]))
        if ring[0] != ring[-1]:
            return None
        geometries.append(shapely.Polygon(ring))
    return geometries, crs


def _dbf_all_live(dbf: bytes, records: int) -> bool:
    """The attribute table has one live (not deleted) record per shape."""
    count, header, size = struct.unpack("<IHH", dbf[4:12])
    if count != records or len(dbf) < header + count * size:
        return False
    return all(dbf[header + i * size] == 0x20 for i in range(count))


def _geojson(path: Path) -> tuple[list[BaseGeometry | None], str] | None:
    doc: Any = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("crs", _CRS84) != _CRS84:
        return None
    if doc.get("type") == "FeatureCollection":
        features = doc["features"]
    elif doc.get("type") == "Feature":
        features = [doc]
    else:
        return None
    geometries: list[BaseGeometry | None] = []
    for f in features:
        if not isinstance(f, dict) or f.get("type") != "Feature" or "crs" in f:
            return None
        g = f.get("geometry")
        if g is None:
            geometries.append(None)
            continue
        if g.get("type") not in ("Polygon", "MultiPolygon") or _has_z(g["coordinates"]):
            return None
        geometries.append(shape(g))
    return geometries, "EPSG:4326"


def _has_z(coords: Any) -> bool:
    if coords and isinstance(coords[0], (int, float)):
        return len(coords) != 2
    return any(_has_z(c) for c in coords)


__all__ = ["EPSG_MATCH_CONFIDENCE", "read_plain"]
