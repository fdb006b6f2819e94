"""Frames read without geopandas (`cube.vector.read_plain`, plain shapefiles and GeoJSON) are the
frames geopandas reads: the same geometry (exactly) and coordinate system; files that need GDAL's
interpretation are left to geopandas."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from imalys_stac.cube import vector
from imalys_stac.cube.grid import Frame
from imalys_stac.errors import InputError

LONLAT = box(11.02, 51.02, 12.37, 51.96).segmentize(0.05)
UTM = Polygon([(640000, 5650000), (690500, 5651200), (688000, 5702000), (641000, 5700100)])
TILTED = Polygon([(11.1, 51.1), (12.0, 51.2), (11.9, 51.8), (11.3, 51.7)])  # counter-clockwise


def _geopandas(path: Path) -> tuple[shapely.Geometry, str]:
    """The frame as geopandas reads it (the reference: GDAL through pyogrio)."""
    df = gpd.read_file(path)
    return df.geometry.union_all(), df.crs.to_wkt()


def _write(path: Path, geometries, crs, **columns) -> Path:
    gpd.GeoDataFrame({"name": [f"f{i}" for i in range(len(geometries))], **columns}, geometry=list(geometries),
                     crs=crs).to_file(path)
    return path


CASES = {
    "shapefile lon/lat": ("frame.shp", [LONLAT], "EPSG:4326"),
    "shapefile UTM": ("frame.shp", [UTM], "EPSG:32632"),
    "shapefile counter-clockwise": ("frame.shp", [TILTED], "EPSG:4326"),
    "shapefile two features": ("frame.shp", [box(11, 51, 11.5, 51.5), box(11.4, 51.4, 12, 52)], "EPSG:4326"),
    "shapefile ETRS89 / UTM 33": ("frame.shp", [box(400000, 5700000, 420000, 5720000)], "EPSG:25833"),
    "GeoJSON": ("frame.geojson", [LONLAT], "EPSG:4326"),
    "GeoJSON two features": ("frame.geojson", [TILTED, box(12, 51, 12.5, 51.5)], "EPSG:4326"),
    "GeoJSON with a hole": ("frame.geojson", [box(11, 51, 12, 52).difference(box(11.4, 51.4, 11.6, 51.6))], "EPSG:4326"),
    "GeoJSON multipolygon": ("frame.json", [MultiPolygon([box(11, 51, 11.2, 51.2), box(11.5, 51.5, 12, 52)])], "EPSG:4326"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_plain_frames_read_as_geopandas_reads_them(tmp_path, case):
    name, geometries, crs = CASES[case]
    path = _write(tmp_path / name, geometries, crs)
    assert vector.read_plain(path) is not None, "read without geopandas"
    frame = Frame.read(path)
    want_geometry, want_crs = _geopandas(path)
    assert shapely.to_wkb(frame.geometry) == shapely.to_wkb(want_geometry)
    assert frame.epsg_or_wkt == want_crs


@pytest.mark.parametrize("case", ["shapefile with a hole", "shapefile of points", "GeoPackage", "GeoJSON with crs",
                                  "shapefile without .prj", "shapefile with a custom CRS", "GeoJSON of a line"])
def test_other_frames_are_left_to_geopandas(tmp_path, case):
    holed = box(11, 51, 12, 52).difference(box(11.4, 51.4, 11.6, 51.6))
    if case == "shapefile with a hole":
        path = _write(tmp_path / "frame.shp", [holed], "EPSG:4326")
    elif case == "shapefile of points":
        path = _write(tmp_path / "frame.shp", [Point(11, 51).buffer(0.1).exterior.centroid], "EPSG:4326")
    elif case == "GeoPackage":
        path = _write(tmp_path / "frame.gpkg", [LONLAT], "EPSG:4326")
    elif case == "GeoJSON with crs":
        path = _write(tmp_path / "frame.geojson", [UTM], "EPSG:32632")
        assert "32632" in json.dumps(json.loads(path.read_text())["crs"])
    elif case == "shapefile without .prj":
        path = _write(tmp_path / "frame.shp", [LONLAT], "EPSG:4326")
        path.with_suffix(".prj").unlink()
    elif case == "shapefile with a custom CRS":
        path = _write(tmp_path / "frame.shp", [UTM], "+proj=tmerc +lat_0=0 +lon_0=10.3 +k=0.9996 +x_0=500000 +y_0=0 "
                                                     "+ellps=GRS80 +units=m +no_defs")
    else:
        path = tmp_path / "frame.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[11, 51], [12, 52]]}}]}))
    assert vector.read_plain(path) is None
    if case == "shapefile without .prj":
        with pytest.raises(InputError, match="has no coordinate system"):
            Frame.read(path)
        return
    frame = Frame.read(path)  # through geopandas, as before
    want_geometry, want_crs = _geopandas(path)
    assert shapely.to_wkb(frame.geometry) == shapely.to_wkb(want_geometry) and frame.epsg_or_wkt == want_crs


def test_geojson_without_a_crs_member_is_wgs84(tmp_path):
    path = _write(tmp_path / "frame.geojson", [TILTED], "EPSG:4326")
    doc = json.loads(path.read_text())
    del doc["crs"]  # RFC 7946
    path.write_text(json.dumps(doc))
    assert vector.read_plain(path) is not None
    frame = Frame.read(path)
    assert (shapely.to_wkb(frame.geometry), frame.epsg_or_wkt) == (shapely.to_wkb(_geopandas(path)[0]), _geopandas(path)[1])


def test_a_deleted_record_or_a_null_shape_as_geopandas_sees_it(tmp_path):
    path = _write(tmp_path / "frame.shp", [LONLAT, None], "EPSG:4326")
    frame = Frame.read(path)  # the null shape is skipped, as geopandas skips it
    assert vector.read_plain(path) is not None
    assert shapely.to_wkb(frame.geometry) == shapely.to_wkb(_geopandas(path)[0])
    dbf = path.with_suffix(".dbf")
    data = bytearray(dbf.read_bytes())
    header, size = int.from_bytes(data[8:10], "little"), int.from_bytes(data[10:12], "little")
    data[header + size] = ord("*")  # the second record deleted: GDAL skips it
    dbf.write_bytes(bytes(data))
    assert vector.read_plain(path) is None
    only_nulls = _write(tmp_path / "nulls.shp", [None], "EPSG:4326")
    with pytest.raises(InputError, match="holds no geometry"):
        Frame.read(only_nulls)
