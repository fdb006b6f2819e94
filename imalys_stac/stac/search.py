"""Search items with one semantics over every source: a catalog (via its index), an Imalys
``.csv``, a list of archives (items built on the fly), or a STAC API (pystac-client).

Every source is reduced to index rows (see :mod:`.index`) and filtered by :func:`match_rows`, so
``select`` (archives), ``database`` (catalog) and ``stac`` (API) give the same answer.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pystac
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from ..errors import InputError
from ..product_records import ARCHIVE
from .catalog import catalog_location, expand_archives
from .hrefs import absolute_href, local_path
from .index import INDEX_NAME, read_index, row_from_item, small_catalog_rows
from .items import item_from_archive

log_default = logging.getLogger("imalys_stac.search")

Source = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass(frozen=True)
class Query:
    """What to select.

    ``bbox`` (west, south, east, north) or ``geometry`` (shapely) in WGS84 give the frame; its
    rectangle is used (Imalys: "the rectangle around all its points"). Without ``distance`` an
    item matches when its footprint intersects that rectangle; with ``distance`` when the
    distance between the tile centre and the frame centre is at most ``distance`` tile radii
    (tile radius: mean of the tile's half-width and half-height; 1.0 = the tile edge reaches at
    least the frame centre). ``periods``: the acquisition date (UTC) inside any inclusive
    ``(first, last)`` period. ``collections``: collection ids. ``max_cloud``: ``eo:cloud_cover``
    at most this (percent).
    """

    bbox: tuple[float, ...] | None = None  # (west, south, east, north): the length is checked below
    geometry: BaseGeometry | None = None
    periods: Sequence[tuple[date, date]] = field(default_factory=tuple)
    distance: float | None = None
    collections: Sequence[str] | None = None
    max_cloud: float | None = None

    def __post_init__(self) -> None:
        if self.bbox is not None:
            if len(self.bbox) != 4:
                raise InputError(f"bbox {self.bbox!r}: accepted is (west, south, east, north) in degrees")
            w, s, e, n = map(float, self.bbox)
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90 and w <= e):
                raise InputError(f"bbox {self.bbox!r} is not (west, south, east, north) in WGS84 degrees")
        if self.bbox is not None and self.geometry is not None:
            raise InputError("give bbox or geometry, not both")
        for p in self.periods:
            if len(p) != 2 or p[0] > p[1]:
                raise InputError(f"period {p!r}: accepted is (first date, last date) with first <= last")
        if self.distance is not None:
            if self.distance <= 0:
                raise InputError(f"distance {self.distance}: accepted is a positive number of tile radii")
            if self.frame is None:
                raise InputError("distance needs a frame (bbox or geometry) whose centre it is measured from")

    @property
    def frame(self) -> BaseGeometry | None:
        """The frame rectangle in WGS84, or None."""
        if self.bbox is not None:
            return box(*self.bbox)
        if self.geometry is not None:
            return box(*self.geometry.bounds)
        return None


# ------------------------------------------------------------------------------------- filtering
def _date(v: Any) -> date:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date()
    return v


def tile_distance(row: dict[str, Any], frame: BaseGeometry) -> float:
    """Distance between tile centre and frame centre, in tile radii (local equirectangular metric)."""
    fx, fy = (frame.bounds[0] + frame.bounds[2]) / 2, (frame.bounds[1] + frame.bounds[3]) / 2
    tx, ty = (row["xmin"] + row["xmax"]) / 2, (row["ymin"] + row["ymax"]) / 2
    k = math.cos(math.radians((fy + ty) / 2))  # a degree of longitude is shorter than one of latitude
    radius = ((row["xmax"] - row["xmin"]) / 2 * k + (row["ymax"] - row["ymin"]) / 2) / 2
    d = math.hypot((tx - fx) * k, ty - fy)
    return d / radius if radius > 0 else math.inf


def match_rows(rows: Iterable[dict[str, Any]], query: Query) -> list[dict[str, Any]]:
    """Rows matching ``query``, sorted by datetime then id."""
    frame = query.frame
    fb: tuple[float, ...] = frame.bounds if frame is not None else ()  # read only when there is a frame
    out = []
    for r in rows:
        if query.collections is not None and r["collection"] not in query.collections:
            continue
        if query.max_cloud is not None and (r["eo_cloud_cover"] is None or r["eo_cloud_cover"] > query.max_cloud):
            continue
        if query.periods:
            d = _date(r["datetime"])
            if not any(a <= d <= b for a, b in query.periods):
                continue
        if frame is not None:
            if query.distance is not None:
                if tile_distance(r, frame) > query.distance:
                    continue
            else:
                if r["xmax"] < fb[0] or r["xmin"] > fb[2] or r["ymax"] < fb[1] or r["ymin"] > fb[3]:
                    continue  # cheap bbox test before the footprint
                if not shapely.from_wkb(r["geometry"]).intersects(frame):
                    continue
        out.append(r)
    out.sort(key=lambda r: (r["datetime"], r["id"]))
    return out


# ------------------------------------------------------------------------------------- sources
def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def _is_container(path: Path) -> bool:
    """Whether a path (or pattern) names provider containers (their file name endings)."""
    from ..registry import archive_providers

    return any(p.container.name_match(path.name) for p in archive_providers()) or path.suffix.lower() in (".gz", ".tgz")


def _resolve_catalog(source: str | os.PathLike) -> tuple[str, Path]:
    """('index'|'catalog'|'csv-archives', path) of a local source."""
    p = Path(os.path.expanduser(os.fspath(source))).resolve()
    if p.suffix.lower() == ".parquet":
        if not p.is_file():
            raise FileNotFoundError(f"search index {p} not found")
        return "index", p
    if p.suffix.lower() == ".csv":
        folder, _ = catalog_location(p)
        if (folder / "catalog.json").is_file():
            return _resolve_catalog(folder)
        if p.is_file():
            return "csv-archives", p  # an original Imalys table: read its archives on the fly
        raise FileNotFoundError(f"catalog table {p} not found (nor {folder / 'catalog.json'})")
    folder = p.parent if p.name == "catalog.json" or p.suffix.lower() == ".json" else p
    cat = p if p.suffix.lower() == ".json" else p / "catalog.json"
    if not cat.is_file():
        raise FileNotFoundError(f"{source}: no STAC catalog there; accepted: a catalog folder, a catalog.json, "
                                f"its {INDEX_NAME}, an Imalys .csv, an http(s) STAC API URL or a list of archives")
    if (folder / INDEX_NAME).is_file() and cat.name == "catalog.json":
        return "index", folder / INDEX_NAME
    return "catalog", cat


def _csv_archives(csv_path: Path) -> list[Path]:
    import csv

    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "filename" not in reader.fieldnames:
            raise InputError(f"{csv_path}: no 'filename' column; accepted: the Imalys table "
                             "WKT,id,width,height,filename")
        return [Path(r["filename"]) for r in reader if r.get("filename")]


def read_archives(paths: Sequence[Path]) -> list[pystac.Item | Exception]:
    """The item of each archive file, read in parallel (at most 8 threads), in the order of
    `paths`; an archive that cannot be read (an ArchiveError, or an OSError such as a missing or
    unreadable file) gives its error in its place, so the caller decides what it means."""
    from ..archives import ArchiveError

    def one(p: Path) -> pystac.Item | Exception:
        try:
            return item_from_archive(p)
        except (ArchiveError, OSError) as exc:
            return exc

    with cf.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, paths))


def _items_from_archives(paths: list[Path], log: logging.Logger) -> list[pystac.Item]:
    """Items of the archives; one that is not a readable archive is skipped with a warning, a
    file the system cannot read (OSError) is an error."""
    from ..archives import ArchiveError

    items = []
    for result in read_archives(paths):
        if isinstance(result, ArchiveError):
            log.warning("select: skipped %s", result)
        elif isinstance(result, Exception):
            raise result
        else:
            items.append(result)
    return items


def _filter_items(items: list[pystac.Item], query: Query) -> list[pystac.Item]:
    rows = []
    for it in items:
        r = row_from_item(it.to_dict(include_self_link=False, transform_hrefs=False))
        r["_item"] = it
        rows.append(r)
    return [r["_item"] for r in match_rows(rows, query)]


def filter_items(items: list[pystac.Item], query: Query) -> list[pystac.Item]:
    """The items matching `query` (frame, period, distance, collections), in search order."""
    return _filter_items(items, query)


def _api_items(url: str, query: Query, log: logging.Logger) -> list[pystac.Item]:
    from pystac_client import Client

    client = Client.open(url)
    frame = query.frame
    kwargs: dict[str, Any] = {}
    if query.collections:
        kwargs["collections"] = list(query.collections)
    if frame is not None:
        w, s, e, n = frame.bounds
        if query.distance is not None:
            # candidates whose centre may be `distance` radii away: grow the frame by that much
            # of a generous tile radius (1.5° ~ a Landsat scene's half-diagonal)
            pad = 1.5 * query.distance
            k = max(math.cos(math.radians(max(abs(s), abs(n)))), 0.05)
            w, e = max(-180.0, w - pad / k), min(180.0, e + pad / k)
            s, n = max(-90.0, s - pad), min(90.0, n + pad)
        kwargs["bbox"] = [w, s, e, n]
    windows = [None] if not query.periods else [
        f"{a.isoformat()}T00:00:00Z/{b.isoformat()}T23:59:59.999999Z" for a, b in query.periods
    ]
    found: dict[str, pystac.Item] = {}
    for window in windows:
        kw = dict(kwargs)
        if window:
            kw["datetime"] = window
        for d in client.search(**kw).items_as_dicts():
            self_href = next((l["href"] for l in d.get("links", []) if l.get("rel") == "self"), None)
            if self_href:  # relative asset hrefs resolve against the item's URL (STAC)
                from urllib.parse import urljoin

                d["assets"] = {k: dict(a, href=urljoin(self_href, a["href"]))
                               if "href" in a and "://" not in a["href"] and not a["href"].startswith("/") else a
                               for k, a in (d.get("assets") or {}).items()}
            found.setdefault(f"{d.get('collection')}/{d['id']}", item_from_dict(canonical_item(d), self_href))
    log.info("stac %s: %d candidate items", url, len(found))
    return _filter_items(list(found.values()), query)


def canonical_item(d: dict[str, Any]) -> dict[str, Any]:
    """An API item with its asset keys renamed to its provider's own (Planetary Computer's
    ``B04``/``SCL`` → ``red``/``scl``), so it is read with the same rules as an archive's item;
    items no provider owns are returned as they are."""
    from ..providers.base import canonical_assets
    from ..registry import provider_for_item

    provider = provider_for_item(d)
    if provider is None or not provider.api_aliases:
        return d
    return dict(d, assets=canonical_assets(d.get("assets") or {}, provider.api_aliases))


def item_from_dict(d: dict[str, Any], href: str | None = None) -> pystac.Item:
    """A pystac item exactly as stored.

    pystac's default reading *migrates* extensions: it rewrites projection v1.x to v2.0 and drops
    ``proj:epsg``, the only field stackstac 0.5 reads. Every reader here uses this instead.
    """
    item = pystac.Item.from_dict(d, href=href, migrate=False, preserve_dict=False)
    if href:
        item.set_self_href(href)
    return item


def resolve_hrefs(d: dict[str, Any], base_dir: str | os.PathLike) -> dict[str, Any]:
    """The item dict with relative asset hrefs (and ``imalys:archive``) made absolute against
    ``base_dir``: archive members become ``/vsitar/`` (``/vsizip/``) paths (see :mod:`.hrefs`).
    Items leave this module with absolute hrefs only, so readers never see a relative one."""
    d = dict(d)
    d["assets"] = {k: dict(a, href=absolute_href(a["href"], base_dir)) if "href" in a else a
                   for k, a in (d.get("assets") or {}).items()}
    props = d.get("properties") or {}
    archive = props.get(ARCHIVE)
    if archive and not archive.startswith("/") and "://" not in archive:
        d["properties"] = dict(props, **{ARCHIVE: local_path(archive, base_dir)})
    return d


def read_item(path: str | os.PathLike) -> pystac.Item:
    """Read one item JSON file without migration (see :func:`item_from_dict`), hrefs absolute."""
    path = Path(path).resolve()
    d = resolve_hrefs(json.loads(path.read_text(encoding="utf-8")), path.parent)
    return item_from_dict(d, str(path))


def _walk_items(catalog_json: Path) -> list[pystac.Item]:
    """Items below a catalog (child and item links followed, no migration)."""
    out: list[pystac.Item] = []
    seen: set[Path] = set()
    stack = [catalog_json.resolve()]
    while stack:
        doc_path = stack.pop()
        if doc_path in seen:
            continue
        seen.add(doc_path)
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
        for link in doc.get("links", []):
            href = link.get("href", "")
            if link.get("rel") not in ("child", "item") or href.startswith(("http://", "https://")):
                continue
            target = (doc_path.parent / href).resolve()
            if link["rel"] == "child":
                stack.append(target)
            else:
                out.append(read_item(target))
    return out


def _index_items(index: Path, query: Query) -> list[pystac.Item]:
    rows = small_catalog_rows(index.parent)
    if rows is None:
        rows = read_index(index)
    folder = index.parent
    return [read_item(folder / r["href"]) for r in match_rows(rows, query)]


def search(source: Source, query: Query | None = None, log: logging.Logger | None = None) -> list[pystac.Item]:
    """Items of ``source`` matching ``query``, sorted by datetime then id, hrefs absolute.

    ``source``: a catalog folder, its ``catalog.json`` or ``items.parquet``, an Imalys ``.csv``
    (the catalog beside it, or its archives), an http(s) STAC API URL, or a list of archive paths
    (wildcards allowed; items built on the fly exactly as ``catalog`` builds them).
    """
    log = log or log_default
    query = query or Query()
    if _is_url(source):
        return _api_items(str(source), query, log)
    if not isinstance(source, (str, os.PathLike)):
        return _filter_items(_items_from_archives(expand_archives(source), log), query)
    if _is_container(Path(os.fspath(source))):
        return _filter_items(_items_from_archives(expand_archives(source), log), query)
    kind, path = _resolve_catalog(source)
    if kind == "index":
        return _index_items(path, query)
    if kind == "csv-archives":
        return _filter_items(_items_from_archives(_csv_archives(path), log), query)
    return _filter_items(_walk_items(path), query)


def open_items(source: Source) -> list[pystac.Item]:
    """All items of a source, unfiltered (sorted by datetime then id)."""
    return search(source, Query())


def items_by_id(items: Iterable[pystac.Item]) -> dict[str, pystac.Item]:
    return {i.id: i for i in items}


__all__ = ["Query", "canonical_item", "item_from_dict", "match_rows", "open_items", "read_item", "search", "tile_distance"]
