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
