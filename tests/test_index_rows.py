"""The search index's rows (`stac.index.read_index`, read with pyarrow alone) are the rows of the
item JSON files (`row_from_item`): same ids, footprints and acquisition instants, time-zone aware
in UTC — also where the index holds them as plain timestamps on the way (no pandas involved)."""
from __future__ import annotations

import json
from datetime import timedelta

import shapely

from imalys_stac.stac import build_catalog
from imalys_stac.stac.index import INDEX_NAME, read_index, row_from_item


def test_index_rows_are_the_item_rows(synthetic_archives, tmp_path):
    build_catalog(str(synthetic_archives.folder / "*.tar"), tmp_path / "cat", progress=False)
    rows = read_index(tmp_path / "cat" / INDEX_NAME)
    assert len(rows) == len(synthetic_archives.archives)
    for row in rows:
        item = json.loads((tmp_path / "cat" / row["href"]).read_text(encoding="utf-8"))
        want = row_from_item(item, row["href"])
        assert row["datetime"] == want["datetime"] and row["datetime"].utcoffset() == timedelta(0)
        assert row["datetime"].isoformat() == want["datetime"].isoformat()
        assert shapely.from_wkb(row["geometry"]).equals_exact(shapely.from_wkb(want["geometry"]), 0)
        for key in ("id", "collection", "xmin", "ymin", "xmax", "ymax", "eo_cloud_cover", "platform", "grid_code",
                    "epsg"):
            assert row[key] == want[key], key


def test_a_small_catalog_is_searched_from_its_item_files_with_the_index_rows(synthetic_archives, tmp_path, monkeypatch):
    """Below SMALL_CATALOG items search reads the item files instead of importing pyarrow; the rows
    are the index's rows, every key, archive paths relative to the catalog folder included."""
    from imalys_stac.stac import index

    build_catalog(str(synthetic_archives.folder / "*.tar"), tmp_path / "cat", progress=False)
    from_index = {r["id"]: r for r in read_index(tmp_path / "cat" / INDEX_NAME)}
    from_items = {r["id"]: r for r in index.small_catalog_rows(tmp_path / "cat")}
    assert from_items.keys() == from_index.keys()
    for iid, row in from_items.items():
        want = from_index[iid]
        assert row.keys() == want.keys()
        for key, value in row.items():
            if key == "geometry":
                assert shapely.from_wkb(value).equals_exact(shapely.from_wkb(want[key]), 0)
            else:
                assert value == want[key], key
    monkeypatch.setattr(index, "SMALL_CATALOG", len(from_index) - 1)
    assert index.small_catalog_rows(tmp_path / "cat") is None  # larger: the index decides


def test_only_the_items_the_catalog_links_are_rows(synthetic_archives, tmp_path):
    """Other folders in the catalog folder (a working directory kept beside it, a copy of an item)
    are not the catalog's items: the rows are the index's."""
    import shutil

    from imalys_stac.stac import index

    build_catalog(str(synthetic_archives.folder / "*.tar"), tmp_path / "cat", progress=False)
    collection = next(p for p in (tmp_path / "cat").iterdir() if p.is_dir())
    item_dir = next(p for p in collection.iterdir() if p.is_dir())
    shutil.copytree(item_dir, collection / "stray")
    (collection / "stray" / f"{item_dir.name}.json").rename(collection / "stray" / "stray.json")
    shutil.copytree(collection, tmp_path / "cat" / "wd")
    rows = index.small_catalog_rows(tmp_path / "cat")
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in read_index(tmp_path / "cat" / INDEX_NAME))
