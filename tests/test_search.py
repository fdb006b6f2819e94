"""Search semantics over a catalog, its index, a .csv, archives on the fly, and a real STAC API."""
from __future__ import annotations

import importlib
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import shapely
from shapely.geometry import Polygon, box

from imalys_stac.stac import Query, build_catalog, search
from imalys_stac.stac.search import match_rows, tile_distance
from tests.realdata import PRODUCT_ID, tar_real_scene, tar_real_variant
from tests.stac_api import serve_collection

search_mod = importlib.import_module("imalys_stac.stac.search")

INSIDE = (-75.1, 1.4, -75.0, 1.5)  # inside the real swath
OUTSIDE_SWATH = (-76.08, 2.40, -76.0, 2.48)  # inside its bbox, outside the rotated footprint
FAR = (10.0, 50.0, 10.1, 50.1)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    arch = root / "archives"
    tar_real_scene(arch)
    tar_real_variant(arch, acquired="20200117", cloud=12.5)
    tar_real_variant(arch, sensor="LT05", path=9, row=59, acquired="19990615", cloud=3.0)
    build_catalog(str(arch / "*.tar"), root / "bonds.csv", progress=False)
    return root


def _row(cx, cy, hw, hh, when=datetime(2020, 1, 1, tzinfo=timezone.utc), rid="x", cloud=10.0):
    return {"id": rid, "collection": "c", "datetime": when, "xmin": cx - hw, "xmax": cx + hw,
            "ymin": cy - hh, "ymax": cy + hh, "eo_cloud_cover": cloud,
            "geometry": shapely.to_wkb(box(cx - hw, cy - hh, cx + hw, cy + hh))}


def test_distance_in_tile_radii():
    # at the equator a degree is a degree both ways: radius of a 2x2 degree tile is 1
    frame = box(-0.01, -0.01, 0.01, 0.01)
    rows = [_row(d, 0, 1, 1, rid=f"{d}") for d in (0.5, 0.99, 1.01, 2.0)]
    kept = match_rows(rows, Query(bbox=frame.bounds, distance=1.0))
    assert [r["id"] for r in kept] == ["0.5", "0.99"]
    assert [r["id"] for r in match_rows(rows, Query(bbox=frame.bounds, distance=2.0))] == ["0.5", "0.99", "1.01", "2.0"]
    # at 60° N a degree of longitude is half as long: 2 lon degrees = 1 tile radius (hw 2, hh 1)
    r = _row(2.0, 60.0, 2.0, 1.0)
    assert tile_distance(r, box(-0.001, 59.999, 0.001, 60.001)) == pytest.approx(1.0, rel=1e-3)


def test_frame_periods_cloud_filters():
    rows = [
        _row(0, 0, 1, 1, datetime(2022, 5, 1, 10, tzinfo=timezone.utc), "a", 5.0),
        _row(0, 0, 1, 1, datetime(2022, 5, 31, 23, tzinfo=timezone.utc), "b", 50.0),
        _row(0, 0, 1, 1, datetime(2022, 6, 1, 0, tzinfo=timezone.utc), "c", 5.0),
        _row(5, 5, 1, 1, datetime(2022, 5, 10, tzinfo=timezone.utc), "d", 5.0),
    ]
    may = [(date(2022, 5, 1), date(2022, 5, 31))]
    assert [r["id"] for r in match_rows(rows, Query(periods=may))] == ["a", "d", "b"]
    assert [r["id"] for r in match_rows(rows, Query(periods=may, bbox=(0.5, 0.5, 0.6, 0.6)))] == ["a", "b"]
    assert [r["id"] for r in match_rows(rows, Query(max_cloud=10))] == ["a", "d", "c"]
    two = may + [(date(2022, 6, 1), date(2022, 6, 1))]
    assert len(match_rows(rows, Query(periods=two, bbox=(-0.5, -0.5, 0.5, 0.5)))) == 3
    # a frame given as any geometry counts as its rectangle
    tri = Polygon([(1.5, 1.5), (4.5, 1.5), (1.5, 4.5)])  # does not touch d's box, its rectangle does
    assert not tri.intersects(box(4, 4, 6, 6))
    assert [r["id"] for r in match_rows(rows, Query(geometry=tri))] == ["d"]


def test_query_errors():
    with pytest.raises(ValueError, match="distance needs a frame"):
        Query(distance=1.0)
    with pytest.raises(ValueError, match="west, south, east, north"):
        Query(bbox=(10, 50, 9, 51))
    with pytest.raises(ValueError, match="first <= last"):
        Query(periods=[(date(2022, 2, 1), date(2022, 1, 1))])


def test_catalog_search_uses_footprint_and_periods(collection):
    cat = collection / "bonds"
    assert [i.id for i in search(cat, Query(bbox=INSIDE))] == [
        "LT05_L2SP_009059_19990615_20200825_02_T1", PRODUCT_ID, "LC08_L2SP_008059_20200117_20200825_02_T1"]
    assert search(cat, Query(bbox=OUTSIDE_SWATH)) == []
    assert search(cat, Query(bbox=FAR)) == []
    got = search(cat, Query(bbox=INSIDE, periods=[(date(2019, 11, 1), date(2019, 12, 31))]))
    assert [i.id for i in got] == [PRODUCT_ID]
    assert [i.id for i in search(cat, Query(max_cloud=20))] == [
        "LT05_L2SP_009059_19990615_20200825_02_T1", "LC08_L2SP_008059_20200117_20200825_02_T1"]
    assert [i.id for i in search(cat, Query(collections=["other"]))] == []
    got = search(cat, Query(bbox=(-75.05, 1.44, -75.04, 1.45), distance=0.1))
    assert len(got) == 3  # the frame is at the tile centre
    assert search(cat, Query(bbox=(-73.0, 1.44, -72.9, 1.45), distance=1.0)) == []
    item = got[0]
    assert Path(item.get_self_href()).is_absolute() and item.properties["proj:epsg"] in (32618,)


def test_index_is_used(collection, monkeypatch):
    cat = collection / "bonds"
    q = Query(bbox=INSIDE, periods=[(date(2019, 1, 1), date(2020, 12, 31))])
    via_index = [i.to_dict() for i in search(cat, q)]

    def no_walk(*a, **k):
        raise AssertionError("catalog walked although the index exists")

    monkeypatch.setattr(search_mod, "_walk_items", no_walk)
    assert [i.to_dict() for i in search(cat / "catalog.json", q)] == via_index
    assert [i.to_dict() for i in search(cat / "items.parquet", q)] == via_index
    monkeypatch.undo()
    # without the index the walk gives the same answer
    copy = collection / "noindex"
    shutil.copytree(cat, copy)
    (copy / "items.parquet").unlink()
    walked = [i.to_dict() for i in search(copy, q)]
    assert [d["id"] for d in walked] == [d["id"] for d in via_index]


def _comparable(item):
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    d.pop("links")
    thumb = d["assets"].get("thumbnail", {})
    if thumb.get("href", "").endswith(".thumbnail.png"):  # drawn by `catalog` only
        d["assets"].pop("thumbnail")
    return d


def test_select_equals_database(collection):
    q = Query(bbox=INSIDE, periods=[(date(2019, 1, 1), date(2020, 12, 31))])
    from_archives = search(sorted((collection / "archives").glob("*.tar")), q)
    from_glob = search([str(collection / "archives" / "*.tar")], q)
    from_db = search(collection / "bonds.csv", q)
    assert [_comparable(i) for i in from_archives] == [_comparable(i) for i in from_db]
    assert [i.id for i in from_glob] == [i.id for i in from_db]


def test_plain_imalys_csv_reads_archives(collection, tmp_path):
    csv = tmp_path / "old.csv"  # an original Imalys table, no STAC catalog beside it
    shutil.copy(collection / "bonds.csv", csv)
    got = search(csv, Query(bbox=INSIDE))
    assert len(got) == 3


@pytest.fixture(scope="module")
def stac_api(collection):
    with serve_collection(collection / "bonds" / "landsat-c2-l2") as url:
        yield url


@pytest.mark.parametrize("query", [
    Query(),
    Query(bbox=INSIDE),
    Query(bbox=OUTSIDE_SWATH),
    Query(bbox=INSIDE, periods=[(date(2019, 11, 1), date(2019, 12, 31)), (date(1999, 1, 1), date(1999, 12, 31))]),
    Query(bbox=(-75.05, 1.44, -75.04, 1.45), distance=0.1, max_cloud=50),
    Query(collections=["landsat-c2-l2"], max_cloud=20),
])
def test_stac_api_same_as_local(collection, stac_api, query):
    local = search(collection / "bonds", query)
    remote = search(stac_api, query)
    assert [i.id for i in remote] == [i.id for i in local]
    for a, b in zip(remote, local):
        assert a.properties["proj:epsg"] == b.properties["proj:epsg"]
        assert a.assets["red"].href == b.assets["red"].href
