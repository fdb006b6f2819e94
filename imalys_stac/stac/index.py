"""The search index beside ``catalog.json``: one GeoParquet row per item.

Search over tens of thousands of items reads this one file instead of parsing every item JSON;
only the matching items' JSON files are opened afterwards. The geometry column is WKB with
GeoParquet 1.0 metadata (CRS84), so GIS tools and geopandas read the file as a layer too.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely.geometry import shape

INDEX_NAME = "items.parquet"

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("collection", pa.string()),
    ("datetime", pa.timestamp("us", tz="UTC")),
    ("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64()),
    ("eo_cloud_cover", pa.float64()),
    ("platform", pa.string()),
    ("instruments", pa.string()),  # comma separated
    ("wrs_path", pa.string()),
    ("wrs_row", pa.string()),
    ("epsg", pa.int32()),
    ("gsd", pa.float64()),
    ("href", pa.string()),  # item JSON, relative to the catalog folder
    ("archive", pa.string()),
    ("geometry", pa.binary()),
])


def parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def row_from_item(d: dict[str, Any], href: str = "") -> dict[str, Any]:
    """The index row of one item dict (STAC JSON)."""
    p = d["properties"]
    west, south, east, north = d["bbox"][:4] if len(d["bbox"]) == 4 else (
        d["bbox"][0], d["bbox"][1], d["bbox"][3], d["bbox"][4])
    geom = shape(d["geometry"])
    if west > east:  # crosses the antimeridian: the row's box spans the split parts' bounds
        west, south, east, north = geom.bounds
    epsg = p.get("proj:epsg")
    if epsg is None and str(p.get("proj:code", "")).upper().startswith("EPSG:"):
        epsg = int(str(p["proj:code"]).split(":")[1])
    return {
        "id": d["id"],
        "collection": d.get("collection") or "",
        "datetime": parse_datetime(p["datetime"]),
        "xmin": float(west), "ymin": float(south), "xmax": float(east), "ymax": float(north),
        "eo_cloud_cover": p.get("eo:cloud_cover"),
        "platform": p.get("platform"),
        "instruments": ",".join(p.get("instruments") or []),
        "wrs_path": p.get("landsat:wrs_path"),
        "wrs_row": p.get("landsat:wrs_row"),
        "epsg": epsg,
        "gsd": p.get("gsd"),
        "href": href,
        "archive": p.get("imalys:archive"),
        "geometry": shapely.to_wkb(geom),
    }


def write_index(rows: Iterable[dict[str, Any]], path: Path) -> None:
    rows = list(rows)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon", "MultiPolygon"]}},
    }
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(table, path, compression="zstd")


def read_index(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"{path}: not a readable search index ({exc})") from None
    missing = set(SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: search index lacks columns {sorted(missing)}; rebuild the catalog")
    return table
