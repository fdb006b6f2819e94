"""The search index beside ``catalog.json``: the catalog's items as stac-geoparquet.

``items.parquet`` is real stac-geoparquet (written with the ``stac_geoparquet`` library, read by
it, by ``rustac``, DuckDB, geopandas and GDAL as a layer): one row per item, every item field
(properties as top-level columns, links and assets with hrefs relative to the item file exactly
as in the item JSON). Search over tens of thousands of items reads a few columns of this one
file instead of parsing every item JSON; only the matching items' JSON files are opened after.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape

from ..errors import InputError
from ..gdalnames import gdal_name
from ..product_records import ARCHIVE

INDEX_NAME = "items.parquet"
#: the columns search and the catalog read back (missing optional ones read as None)
COLUMNS = ("id", "collection", "datetime", "bbox", "geometry", "eo:cloud_cover", "platform", "instruments",
           "grid:code", "proj:epsg", "proj:code", "gsd", ARCHIVE)
REQUIRED = ("id", "collection", "datetime", "bbox", "geometry")
CHUNK = 4096


def parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def item_href(collection: str, item_id: str) -> str:
    """Where an item's JSON lives, relative to the catalog folder."""
    return f"{collection}/{item_id}/{item_id}.json"


def _epsg(p: dict[str, Any]) -> int | None:
    epsg = p.get("proj:epsg")
    if epsg is None and str(p.get("proj:code") or "").upper().startswith("EPSG:"):
        epsg = int(str(p["proj:code"]).split(":")[1])
    return epsg


def _row(iid: str, collection: str, when: datetime, bbox: tuple, geometry: Any, p: dict[str, Any],
         href: str) -> dict[str, Any]:
    west, south, east, north = bbox
    geom = geometry if not isinstance(geometry, (bytes, bytearray)) else shapely.from_wkb(geometry)
    if west > east:  # crosses the antimeridian: the row's box spans the split parts' bounds
        west, south, east, north = geom.bounds
    instruments = p.get("instruments") or []
    return {
        "id": iid,
        "collection": collection or "",
        "datetime": when,
        "xmin": float(west), "ymin": float(south), "xmax": float(east), "ymax": float(north),
        "eo_cloud_cover": p.get("eo:cloud_cover"),
        "platform": p.get("platform"),
        "instruments": ",".join(instruments) if not isinstance(instruments, str) else instruments,
        "grid_code": p.get("grid:code"),  # the provider's tile (WRS2-193026, MGRS-32UPU)
        "epsg": _epsg(p),
        "gsd": p.get("gsd"),
        "href": href,
        "archive": p.get(ARCHIVE),
        "geometry": shapely.to_wkb(geom),
    }


def row_from_item(d: dict[str, Any], href: str = "") -> dict[str, Any]:
    """The search row of one item dict (STAC JSON)."""
    p = d["properties"]
    b = d["bbox"]
    bbox = tuple(b[:4]) if len(b) == 4 else (b[0], b[1], b[3], b[4])
    return _row(d["id"], d.get("collection") or "", parse_datetime(p["datetime"]), bbox, shape(d["geometry"]), p, href)


def write_index(item_files: Iterable[Path], path: Path, scratch: Path | None = None) -> None:
    """Write the item JSON files as stac-geoparquet at ``path``, streaming (memory bounded by one
    chunk of items: the chunks go to ``scratch`` while their schemas are unified)."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    tmp = Path(tempfile.mkdtemp(prefix=".index-", dir=scratch or path.parent))
    try:
        items = (json.loads(Path(f).read_text(encoding="utf-8")) for f in item_files)
        first = next(items, None)
        if first is None:
            _empty(path)
            return
        reader = parse_stac_items_to_arrow(_chain(first, items), chunk_size=CHUNK, schema="ChunksToDisk", tmpdir=Path(gdal_name(tmp)))
        to_parquet(reader, gdal_name(path), compression="zstd")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _chain(first: Any, rest: Iterable[Any]) -> Iterable[Any]:
    yield first
    yield from rest


def _empty(path: Path) -> None:
    """A catalog without items: an empty table with the stac-geoparquet core columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("type", pa.string()), ("stac_version", pa.string()), ("stac_extensions", pa.list_(pa.string())),
        ("id", pa.string()), ("collection", pa.string()), ("geometry", pa.binary()),
        ("bbox", pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64())])),
        ("datetime", pa.timestamp("us", tz="UTC")),
    ])
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": []}}}
    table = pa.Table.from_pylist([], schema=schema).replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(table, gdal_name(path), compression="zstd")


def _naive_utc(table: Any, pa: Any) -> tuple[Any, bool]:
    """The table with its UTC ``datetime`` column as plain timestamps (the same instants), and
    whether it was UTC: pyarrow turns a column with a time zone into Python values through
    pandas' time-zone types, and importing pandas costs more than reading the whole index."""
    i = table.schema.get_field_index("datetime")
    kind = table.schema.field(i).type
    # nanoseconds become pandas Timestamps in Python: those stay as they are
    if not pa.types.is_timestamp(kind) or kind.tz not in ("UTC", "+00:00", "Z") or kind.unit == "ns":
        return table, False
    plain = pa.timestamp(kind.unit)  # a view of the same numbers (a cast would import pyarrow.compute)
    column = pa.chunked_array([chunk.view(plain) for chunk in table.column(i).chunks], type=plain)
    return table.set_column(i, "datetime", column), True


class Rows(list):
    """Search rows (a list; ``to_pylist`` kept for callers written against a pyarrow table)."""

    def to_pylist(self) -> list[dict[str, Any]]:
        return list(self)


#: a catalog of at most this many items is searched from its item files: reading them costs less
#: than importing pyarrow to read its index (~0.3 s, most of a small import chain's start)
SMALL_CATALOG = 200


def _archive_in_catalog(href: str, archive: str | None) -> str | None:
    """An item's archive path relative to the item file → relative to the catalog folder."""
    if archive and not archive.startswith("/"):
        return os.path.normpath(os.path.join(os.path.dirname(href), archive))
    return archive


def small_catalog_rows(folder: Path) -> Rows | None:
    """The search rows of a catalog folder of at most SMALL_CATALOG items, read from the item JSON
    files its collections link (the items its index holds: `row_from_item`); None for a larger
    catalog or one whose documents cannot be read (the index then decides)."""
    files: list[Path] = []
    try:
        root = json.loads((folder / "catalog.json").read_text(encoding="utf-8"))
        for child in (link for link in root.get("links", []) if link.get("rel") == "child"):
            collection_json = (folder / child["href"]).resolve()
            collection = json.loads(collection_json.read_text(encoding="utf-8"))
            files += [(collection_json.parent / link["href"]).resolve()
                      for link in collection.get("links", []) if link.get("rel") == "item"]
            if len(files) > SMALL_CATALOG:
                return None
        rows = Rows()
        top = folder.resolve()
        for item in files:
            href = item.relative_to(top).as_posix()
            row = row_from_item(json.loads(item.read_text(encoding="utf-8")), href)
            row["archive"] = _archive_in_catalog(href, row["archive"])
            rows.append(row)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows


def read_index(path: Path) -> Rows:
    """The search rows of a stac-geoparquet index (only the columns search needs are read)."""
    import pyarrow as pa  # imported when an index is read (an import of archives never is)
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(gdal_name(path)).names
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise InputError(f"{path}: search index lacks columns {missing}; rebuild the catalog")
        # one file, read as it is: read_table would go through pyarrow.dataset, whose import
        # brings pandas (a third of a second before the first row)
        with pq.ParquetFile(gdal_name(path)) as parquet:
            table = parquet.read(columns=[c for c in COLUMNS if c in names])
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a readable search index ({exc})") from None
    table, utc = _naive_utc(table, pa)
    rows = Rows()
    for r in table.to_pylist():
        if utc and r["datetime"] is not None:
            r["datetime"] = r["datetime"].replace(tzinfo=timezone.utc)
        b = r["bbox"]
        href = item_href(r["collection"], r["id"])
        p = dict(r, **{ARCHIVE: _archive_in_catalog(href, r.get(ARCHIVE))})
        rows.append(_row(r["id"], r["collection"], r["datetime"], (b["xmin"], b["ymin"], b["xmax"], b["ymax"]),
                         r["geometry"], p, href))
    return rows
