"""The static STAC catalog of an archive collection: incremental, parallel, crash-safe.

Layout (self-contained, relative links)::

    <target>/catalog.json
    <target>/items.parquet                      search index (see index.py)
    <target>/.imalys-catalog.json               state: archive path, size, mtime -> item; files written
    <target>/<collection>/collection.json
    <target>/<collection>/<item id>/<item id>.json

The catalog owns only the files it wrote (listed in its state file): archives and any other file
may live in the target folder (the tutorial catalogs an archive folder in place) and are never
replaced or deleted. Updates are staged in ``.imalys-catalog.tmp-<pid>/`` inside the target,
committed by renaming a journal into place, then moved in; a lock file serialises runs.

A ``.csv`` target additionally gets the Imalys table (``bonds.csv``, ``.csvt``, ``.prj``) and the
catalog goes to the folder of the same name (``bonds/catalog.json``).
"""
from __future__ import annotations

import concurrent.futures as cf
import glob
import json
import logging
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..archives import ArchiveError
from ..errors import InputError
from ..product_records import ARCHIVE
from ..registry import open_archive
from ..templates import collection_template
from ..write.atomic import atomic_path
from .hrefs import local_path, relative_href
from .index import INDEX_NAME, read_index, row_from_item, write_index
from .items import EXT, STAC_VERSION, item_dict
from .thumbnails import thumbnail_png

STATE_NAME = ".imalys-catalog.json"
STATE_VERSION = 2  # 2: the files the catalog wrote are listed (it deletes no other)
CATALOG_ID = "imalys-archives"
WGS84_WKT = (
    'GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
    'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]'
)
CSV_HEADER = "WKT,id,width,height,filename"
CSVT = "WKT,Integer64(10),Real(24.15),Real(24.15),String(250)"
#: above this many archives to read, worker processes beat threads (tarfile parsing holds the GIL)
PROCESS_THRESHOLD = 256

log_default = logging.getLogger("imalys_stac.catalog")


@dataclass
class CatalogReport:
    """What a catalog run did."""

    added: list[str] = field(default_factory=list)  # item ids
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (archive path, reason)
    unchanged: int = 0
    catalog_path: Path | None = None  # .../catalog.json
    csv_path: Path | None = None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        return (f"catalog {self.catalog_path}: {len(self.added)} added, {len(self.updated)} updated, "
                f"{len(self.removed)} removed, {len(self.skipped)} skipped, {self.unchanged} unchanged")


# ---------------------------------------------------------------------------------------- inputs
def expand_archives(pattern_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Absolute archive paths from a wildcard pattern, a path, or a list of either (sorted, unique)."""
    items = [pattern_or_paths] if isinstance(pattern_or_paths, (str, os.PathLike)) else list(pattern_or_paths)
    found: set[Path] = set()
    for p in items:
        text = os.path.expanduser(os.fspath(p))
        if glob.has_magic(text):
            found.update(Path(m).resolve() for m in glob.glob(text) if Path(m).is_file())
        else:
            found.add(Path(text).resolve())
    return sorted(found)


def catalog_location(target: str | os.PathLike) -> tuple[Path, Path | None]:
    """(catalog folder, csv path or None) for a ``catalog`` target."""
    t = Path(os.path.expanduser(os.fspath(target))).resolve()
    if t.suffix.lower() == ".csv":
        return t.with_suffix(""), t
    if t.name == "catalog.json":
        return t.parent, None
    if t.suffix.lower() == ".json":
        raise InputError(f"catalog target {target}: a .json target must be named catalog.json; "
                         "accepted: a folder, .../catalog.json or a .csv table")
    return t, None


# ---------------------------------------------------------------------------------------- reading
def _read_one(path: str) -> tuple[str, dict[str, Any] | None, str | None]:
    """Worker: item dict of one archive, or the reason it was skipped (picklable result). An
    archive without a browse image of its own gets a generated thumbnail (its PNG bytes travel in
    the dict under ``_thumbnail_png`` and are written beside the item)."""
    try:
        d = item_dict(open_archive(path))
        if "thumbnail" not in d["assets"]:
            _add_thumbnail(d)
        return path, d, None
    except ArchiveError as exc:
        return path, None, str(exc).split(": ", 1)[-1] if str(exc).startswith(path) else str(exc)
    except Exception as exc:  # a bad archive never aborts the catalog
        return path, None, f"{exc.__class__.__name__}: {exc}"


def _read_all(paths: list[str], workers: int | None, progress: bool,
              sink: Callable[[tuple[str, dict | None, str | None]], None] | None = None,
              ) -> list[tuple[str, dict | None, str | None]]:
    """Read ``paths`` in parallel. With ``sink`` each result is handed to it as it arrives and
    nothing is kept (memory flat in the number of archives); without, the results are returned."""
    if not paths:
        return []
    workers = workers or min(8, os.cpu_count() or 1)
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(paths), desc="catalog", unit="archive", disable=not show)
    out: list[tuple[str, dict | None, str | None]] = []
    take = sink or out.append
    try:
        if workers <= 1:
            for p in paths:
                take(_read_one(p))
                bar.update()
        else:
            if len(paths) >= PROCESS_THRESHOLD:
                # spawn: a forked child of a process with GDAL/Dask threads can deadlock
                pool: cf.Executor = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                # a few archives per task: less pickling and IPC, results still arrive steadily
                chunk = max(1, min(16, len(paths) // (workers * 8)))
            else:
                pool, chunk = cf.ThreadPoolExecutor(workers), 1
            with pool:
                try:
                    if chunk == 1:
                        for fut in cf.as_completed([pool.submit(_read_one, p) for p in paths]):
                            take(fut.result())
                            bar.update()
                    else:
                        batches = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
                        for batch in cf.as_completed([pool.submit(_read_some, b) for b in batches]):
                            for r in batch.result():
                                take(r)
                            bar.update(len(batch.result()))
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return out


THUMBNAIL_SUFFIX = ".thumbnail.png"


def _add_thumbnail(d: dict[str, Any]) -> None:
    try:
        png = thumbnail_png(d)
    except Exception:  # noqa: BLE001  a thumbnail that cannot be drawn is left out, never fails the catalog
        return
    if png:
        d["assets"]["thumbnail"] = {"href": f"./{d['id']}{THUMBNAIL_SUFFIX}", "type": "image/png",
                                    "title": "Thumbnail (natural colour, generated)", "roles": ["thumbnail"]}
        d["_thumbnail_png"] = png


def _read_some(paths: list[str]) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """Worker: ``_read_one`` over a batch of archives."""
    return [_read_one(p) for p in paths]


# ---------------------------------------------------------------------------------------- state
def _read_state(folder: Path) -> dict[str, Any] | None:
    """The state file as written by any version, or None (none, or not ours)."""
    f = folder / STATE_NAME
    if not f.is_file():
        return None
    try:
        state = json.loads(f.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return state if isinstance(state, dict) and "version" in state else None


def _load_state(folder: Path) -> dict[str, Any] | None:
    """The state with absolute archive paths as keys (stored relative to the catalog folder, so a
    catalog moved together with its archives stays up to date)."""
    state = _read_state(folder)
    if state is None or state.get("version") != STATE_VERSION:
        return None  # older layout: rebuild everything
    for part in ("archives", "skipped"):
        state[part] = {os.path.normpath(os.path.join(folder, k)): v for k, v in state.get(part, {}).items()}
    return state


def _relative_keys(entries: dict[str, Any], folder: Path) -> dict[str, Any]:
    return {os.path.relpath(k, folder): v for k, v in entries.items()}


def _stat(p: Path) -> tuple[int, int] | None:
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


# ---------------------------------------------------------------------------------------- documents
def _template(collection_id: str) -> dict[str, Any]:
    template = collection_template(collection_id)
    if template is not None:
        return template
    return {  # a collection without a template of its own
        "type": "Collection", "stac_version": STAC_VERSION, "id": collection_id,
        "description": f"{collection_id} archives catalogued by imalys-stac", "license": "other",
        "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                "temporal": {"interval": [[None, None]]}},
    }


def item_assets_for(collection_id: str) -> dict[str, Any]:
    """``item_assets`` of a collection, from its provider's band tables ({} for a collection no
    provider owns)."""
    from ..registry import provider_for_collection

    provider = provider_for_collection(collection_id)
    return provider.item_assets() if provider is not None else {}


def _iso(dt) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def collection_dict(collection_id: str, rows: list[dict[str, Any]], item_hrefs: list[str]) -> dict[str, Any]:
    """A collection document with extent and summaries from its index rows."""
    c = deepcopy(_template(collection_id))
    c["stac_version"] = STAC_VERSION
    exts = set(c.get("stac_extensions") or [])
    exts.update({EXT["eo"], EXT["proj"], EXT["raster"]})  # those the summaries and item_assets use
    c["stac_extensions"] = sorted(exts)
    if rows:
        c["extent"] = {
            "spatial": {"bbox": [[min(r["xmin"] for r in rows), min(r["ymin"] for r in rows),
                                  max(r["xmax"] for r in rows), max(r["ymax"] for r in rows)]]},
            "temporal": {"interval": [[_iso(min(r["datetime"] for r in rows)),
                                       _iso(max(r["datetime"] for r in rows))]]},
        }
        clouds = [r["eo_cloud_cover"] for r in rows if r["eo_cloud_cover"] is not None]
        summaries = dict(c.get("summaries") or {})
        summaries["platform"] = sorted({r["platform"] for r in rows if r["platform"]})
        summaries["instruments"] = sorted({i for r in rows for i in (r["instruments"] or "").split(",") if i})
        summaries["proj:epsg"] = sorted({int(r["epsg"]) for r in rows if r["epsg"]})
        summaries["gsd"] = sorted({float(r["gsd"]) for r in rows if r["gsd"]})
        if clouds:
            summaries["eo:cloud_cover"] = {"minimum": min(clouds), "maximum": max(clouds)}
        c["summaries"] = summaries
    c["item_assets"] = item_assets_for(collection_id)
    links = [l for l in c.get("links", []) if l.get("rel") not in {"root", "parent", "self", "item"}]
    links = [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
             {"rel": "parent", "href": "../catalog.json", "type": "application/json"}] + links
    links += [{"rel": "item", "href": f"./{h}", "type": "application/geo+json"} for h in item_hrefs]
    c["links"] = links
    return c


def catalog_dict(collection_ids: list[str]) -> dict[str, Any]:
    return {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": CATALOG_ID,
        "title": "Imalys archive catalog",
        "description": "Provider archives catalogued in place by imalys-stac: each asset is a member of an archive, addressed relative to its item (`…/<archive>.tar/<member>`); `imalys-stac serve` serves them as files.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
        + [{"rel": "child", "href": f"./{c}/collection.json", "type": "application/json"} for c in collection_ids],
    }


def portable_item(d: dict[str, Any], item_dir: str | os.PathLike) -> dict[str, Any]:
    """The item as written into a catalog at ``item_dir``: archive members and the archive path
    relative to the item file (see :mod:`.hrefs`), so archives and catalog move together."""
    d = dict(d)
    d["assets"] = {k: dict(a, href=relative_href(a["href"], item_dir)) for k, a in d["assets"].items()}
    props = d["properties"]
    if props.get(ARCHIVE):
        d["properties"] = dict(props, **{ARCHIVE: relative_href(props[ARCHIVE], item_dir)})
    return d


def _item_links(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d["links"] = [
        {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
    ] + [l for l in d.get("links", []) if l.get("rel") not in ("root", "parent", "collection", "self")]
    return d


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")


def _csv_rows(rows: list[dict[str, Any]], folder: Path) -> list[str]:
    """Table rows; archive paths absolute (the index holds them relative to the catalog folder)."""
    out = [CSV_HEADER]
    named = [(local_path(r["archive"], folder) if r["archive"] else "", r) for r in rows]
    for i, (archive, r) in enumerate(sorted(named, key=lambda ar: (ar[0], ar[1]["id"])), 1):
        cx, cy = (r["xmin"] + r["xmax"]) / 2, (r["ymin"] + r["ymax"]) / 2
        hw, hh = (r["xmax"] - r["xmin"]) / 2, (r["ymax"] - r["ymin"]) / 2
        out.append(f'"POINT ({cx:.8f} {cy:.8f})",{i},{hw:.15f},{hh:.15f},{archive}')
    return out


def write_csv(rows: list[dict[str, Any]], csv_path: Path, folder: Path) -> None:
    """Imalys table + ``.csvt`` + ``.prj``, each written to a temp name and renamed."""
    for path, text in ((csv_path, "\n".join(_csv_rows(rows, folder)) + "\n"),
                       (csv_path.with_suffix(".csvt"), CSVT + "\n"),
                       (csv_path.with_suffix(".prj"), WGS84_WKT + "\n")):
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------- build
#: hidden names inside the target: staging folders of running updates, the commit journal, the lock
STAGING_PREFIX = ".imalys-catalog.tmp-"
JOURNAL_NAME = ".imalys-catalog.journal.json"
LOCK_NAME = ".imalys-catalog.lock"


def _check_target(folder: Path, state: dict[str, Any] | None) -> None:
    """Refuse a target whose ``catalog.json`` or index another tool wrote (the catalog never
    replaces a file it did not write). Any other file may live in the target: archives included."""
    if state is not None:
        return
    for name in ("catalog.json", INDEX_NAME):
        if (folder / name).exists():
            raise InputError(
                f"catalog target {folder} holds a {name} that imalys-stac did not write (no {STATE_NAME} "
                "beside it); the catalog never replaces files it did not write: move that file away or "
                "choose another target folder")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_pid(name: str, prefix: str) -> int | None:
    """The pid in ``<prefix><pid>`` (or ``<prefix><pid>.<anything>``), else None."""
    if not name.startswith(prefix):
        return None
    digits = name[len(prefix):].split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


class _Lock:
    """An exclusive lock on the catalog folder (one catalog run at a time); the kernel releases it
    when the process dies, so a killed run never blocks the next one."""

    def __init__(self, folder: Path, log: logging.Logger) -> None:
        self.path, self.log = folder / LOCK_NAME, log
        self.fh: Any = None

    def __enter__(self) -> _Lock:
        import fcntl

        self.fh = open(self.path, "a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.log.warning("catalog %s: another catalog run is updating it; waiting for it to finish",
                             self.path.parent)
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.fh.close()


def _recover(folder: Path, csv_path: Path | None, log: logging.Logger) -> None:
    """Under the lock: finish an update a crash interrupted and remove temporaries of dead runs.

    A journal means that update was committed: its moves and deletions are replayed (each step is
    idempotent), so the catalog becomes the complete new one. Staging folders inside the target
    belong to runs that died before committing (no other run holds the lock): removed. Leftovers of
    earlier versions (which swapped the whole folder) and of the ``.csv`` writer are removed when
    their process is gone.
    """
    journal = folder / JOURNAL_NAME
    if journal.is_file():
        try:
            plan = json.loads(journal.read_text(encoding="utf-8"))
        except ValueError:
            plan = None  # renamed into place complete: never half-written by us
        if isinstance(plan, dict) and {"staging", "moves", "delete"} <= set(plan):
            log.warning("catalog %s: completing the update an interrupted run had committed", folder)
            _apply(folder, folder / plan["staging"], plan)
        journal.unlink(missing_ok=True)
    for p in folder.glob(f"{STAGING_PREFIX}*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    for p in folder.glob(f".{JOURNAL_NAME}.tmp-*"):
        p.unlink(missing_ok=True)
    for p in folder.glob(f".{STATE_NAME}.tmp-*"):
        p.unlink(missing_ok=True)
    old_prefix = f".{folder.name}.tmp-"  # earlier versions staged the whole catalog beside the target
    for p in folder.parent.glob(f"{old_prefix}*"):
        pid = _temp_pid(p.name, old_prefix)
        if pid is not None and p.is_dir() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
    backup = folder.with_name(f".{folder.name}.old")
    if backup.is_dir() and (backup / STATE_NAME).is_file():
        shutil.rmtree(backup, ignore_errors=True)  # earlier version: the replaced catalog
    if csv_path is not None:
        for path in (csv_path, csv_path.with_suffix(".csvt"), csv_path.with_suffix(".prj")):
            prefix = f".{path.name}.tmp-"
            for p in path.parent.glob(f"{prefix}*"):
                pid = _temp_pid(p.name, prefix)
                if pid is not None and not _pid_alive(pid):
                    p.unlink(missing_ok=True)


def _owned_files(state: dict[str, Any] | None) -> set[str]:
    """Paths (relative to the catalog folder) of the files catalog runs wrote there."""
    if not state:
        return set()
    if "files" in state:
        return set(state["files"])
    # version 1 (whose folder was the catalog's alone): its files follow from its entries
    out = {"catalog.json", INDEX_NAME, STATE_NAME}
    for e in state.get("archives", {}).values():
        out.add(e["href"])
        out.add(f"{e['collection']}/collection.json")
        if e.get("thumbnail"):
            out.add(e["thumbnail"])
    return out


def _apply(folder: Path, staging: Path, plan: dict[str, Any]) -> None:
    """Move the staged files into place in the journal's order (items, collections, index,
    catalog, state last), then delete the files the new catalog no longer holds and their folders
    when nothing else is left in them."""
    for rel in plan["moves"]:
        src, dst = staging / rel, folder / rel
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    for rel in plan["delete"]:
        gone = folder / rel
        gone.unlink(missing_ok=True)
        parent = gone.parent
        while parent != folder and folder in parent.parents:
            try:
                parent.rmdir()  # only when empty: a user's file keeps its folder
            except OSError:
                break
            parent = parent.parent
    shutil.rmtree(staging, ignore_errors=True)


def build_catalog(
    pattern_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    target: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
    log: logging.Logger | None = None,
) -> CatalogReport:
    """Catalog archives into a static STAC catalog at ``target`` (see module doc).

    Incremental (only new or changed archives are read), parallel, and crash-safe: new files are
    staged in a hidden folder inside the target and moved into place once a journal listing them
    (the commit point) is written. A crash before the journal leaves the catalog as it was; the
    next run completes a committed one. Only files the catalog wrote itself (listed in its state
    file) are ever replaced or deleted: archives and other files may live in the target folder.
    """
    log = log or log_default
    folder, csv_path = catalog_location(target)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"catalog target {folder} is a file; accepted: a folder, .../catalog.json or a .csv")
    backup = folder.with_name(f".{folder.name}.old")
    if not folder.exists() and backup.is_dir() and (backup / STATE_NAME).is_file():
        os.replace(backup, folder)  # an earlier version crashed between its two renames
    folder.mkdir(parents=True, exist_ok=True)
    with _Lock(folder, log):
        _recover(folder, csv_path, log)
        return _build(pattern_or_paths, folder, csv_path, workers, progress, log)


def _build(pattern_or_paths: Any, folder: Path, csv_path: Path | None, workers: int | None,
           progress: bool, log: logging.Logger) -> CatalogReport:
    raw_state = _read_state(folder)
    _check_target(folder, raw_state)
    owned = _owned_files(raw_state)
    archives = expand_archives(pattern_or_paths)
    report = CatalogReport(catalog_path=folder / "catalog.json", csv_path=csv_path)
    old = _load_state(folder) or {"version": STATE_VERSION, "archives": {}, "skipped": {}}
    old_archives: dict[str, Any] = old.get("archives", {})
    old_skipped: dict[str, Any] = old.get("skipped", {})

    keep: dict[str, Any] = {}  # path -> state entry (unchanged)
    todo: list[str] = []
    new_skipped: dict[str, Any] = {}
    for p in archives:
        key = str(p)
        st = _stat(p)
        if st is None:
            report.skipped.append((key, "no such file"))
            log.warning("catalog: skipped %s: no such file", key)
            continue
        prev = old_archives.get(key)
        if prev and (prev["size"], prev["mtime_ns"]) == st:
            keep[key] = prev
            continue
        prev_skip = old_skipped.get(key)
        if prev_skip and (prev_skip["size"], prev_skip["mtime_ns"]) == st:
            # a known bad archive, unchanged: report it again without re-reading it
            report.skipped.append((key, prev_skip["reason"]))
            new_skipped[key] = prev_skip
            continue
        todo.append(key)

    if not todo and not (set(old_archives) - set(keep)) and (folder / "catalog.json").is_file() \
            and new_skipped == old_skipped:
        report.unchanged = len(keep)
        report.skipped.sort()
        if csv_path is not None and not csv_path.is_file():
            write_csv(list(_old_rows(folder, keep).values()), csv_path, folder)
        log.info("%s (nothing changed)", report.summary())
        return report

    staging = _Staging(folder, keep)
    try:
        _read_all(todo, workers, progress, staging.add)
        for path, reason in staging.rejected():
            report.skipped.append((path, reason or "unreadable"))
            size, mtime = _stat(Path(path)) or (0, 0)
            new_skipped[path] = {"size": size, "mtime_ns": mtime, "reason": reason}
            log.warning("catalog: skipped %s: %s", path, reason)
        for path, e in sorted(staging.fresh.items()):
            (report.updated if path in old_archives else report.added).append(e["id"])
        report.skipped.sort()
        current = set(keep) | set(staging.fresh)
        for path, entry in old_archives.items():
            if path not in current:
                report.removed.append(entry["id"])
        report.unchanged = len(keep)

        if not report.changed and (folder / "catalog.json").is_file() and new_skipped == old_skipped:
            staging.discard()
            if csv_path is not None and not csv_path.is_file():
                write_csv(list(_old_rows(folder, keep).values()), csv_path, folder)
            log.info("%s (nothing changed)", report.summary())
            return report
        rows = _write_catalog(folder, keep, staging, new_skipped, owned)
    except BaseException:
        staging.discard()
        raise
    if csv_path is not None:
        write_csv(rows, csv_path, folder)
    log.info(report.summary())
    return report


class _Staging:
    """The hidden staging folder inside the target, filled as read results arrive.

    Each new or updated item's JSON is written at once; only its index row and state entry stay in
    memory. Duplicate product ids are settled as a sorted pass over the archive paths would: an id
    already held by an unchanged item wins, else the smallest archive path.
    """

    def __init__(self, folder: Path, keep: dict[str, Any]) -> None:
        self.folder = folder
        self.tmp = folder / f"{STAGING_PREFIX}{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.keep_ids = {e["id"]: k for k, e in keep.items()}
        self.fresh: dict[str, dict[str, Any]] = {}  # archive path -> state entry
        self.rows: dict[str, dict[str, Any]] = {}  # item id -> index row (fresh items)
        self.owner: dict[str, str] = {}  # item id -> archive path (fresh items)
        self.skipped: dict[str, str | None] = {}  # archive path -> reason (unreadable)
        self.duplicates: dict[str, str] = {}  # archive path -> id it duplicates

    def add(self, result: tuple[str, dict[str, Any] | None, str | None]) -> None:
        path, d, reason = result
        if d is None:
            self.skipped[path] = reason
            return
        iid = d["id"]
        if iid in self.keep_ids and self.keep_ids[iid] != path:
            self.duplicates[path] = iid
            return
        other = self.owner.get(iid)
        if other is not None:
            if other < path:
                self.duplicates[path] = iid
                return
            old = self.fresh.pop(other)  # this one sorts first: it takes the id
            self.duplicates[other] = iid
            (self.tmp / old["href"]).unlink(missing_ok=True)
            if old.get("thumbnail"):
                (self.tmp / old["thumbnail"]).unlink(missing_ok=True)
        href = _item_href(d)
        png = d.pop("_thumbnail_png", None)
        thumb = None
        if png is not None:
            thumb = f"{href.rsplit('/', 1)[0]}/{iid}{THUMBNAIL_SUFFIX}"
            (self.tmp / thumb).parent.mkdir(parents=True, exist_ok=True)
            (self.tmp / thumb).write_bytes(png)
        _write_json(self.tmp / href, _item_links(portable_item(d, (self.folder / href).parent)))
        row = row_from_item(d, href)
        if row["archive"]:
            row["archive"] = os.path.relpath(row["archive"], self.folder)
        self.rows[iid] = row
        self.owner[iid] = path
        size, mtime = _stat(Path(path)) or (0, 0)
        self.fresh[path] = {"size": size, "mtime_ns": mtime, "id": iid, "collection": d["collection"], "href": href}
        if thumb is not None:
            self.fresh[path]["thumbnail"] = thumb

    def rejected(self) -> list[tuple[str, str | None]]:
        """(archive path, reason) of every result not catalogued, in path order."""
        out: list[tuple[str, str | None]] = list(self.skipped.items())
        for p, iid in self.duplicates.items():
            holder = self.keep_ids.get(iid) or self.owner[iid]
            out.append((p, f"duplicate product id {iid} (also in {holder})"))
        return sorted(out, key=lambda r: r[0])

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _old_rows(folder: Path, keep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Index rows of unchanged items, from the old index (or their JSON if it is unreadable)."""
    ids = {e["id"] for e in keep.values()}
    rows: dict[str, dict[str, Any]] = {}
    idx = folder / INDEX_NAME
    if idx.is_file() and ids:
        try:
            for r in read_index(idx).to_pylist():
                if r["id"] in ids:
                    rows[r["id"]] = r
        except ValueError:
            rows = {}
    for e in keep.values():
        if e["id"] not in rows:
            d = json.loads((folder / e["href"]).read_text(encoding="utf-8"))
            row = row_from_item(d, e["href"])
            if row["archive"]:  # relative to the item file there, to the catalog folder here
                row["archive"] = os.path.relpath(local_path(row["archive"], (folder / e["href"]).parent), folder)
            rows[e["id"]] = row
    return rows


def _item_href(d: dict[str, Any]) -> str:
    return f"{d['collection']}/{d['id']}/{d['id']}.json"


def _write_catalog(folder: Path, keep: dict[str, Any], staging: _Staging,
                   skipped: dict[str, Any], owned: set[str]) -> list[dict[str, Any]]:
    """Complete the staged files (collections, catalog, index, state), commit them with a journal
    and move them into place; return the index rows. The caller discards the staging folder on
    failure before the commit."""
    tmp = staging.tmp
    rows = _old_rows(folder, keep)
    state: dict[str, Any] = {"version": STATE_VERSION, "archives": {}, "skipped": skipped, "files": []}
    for path, e in keep.items():
        state["archives"][path] = e
    rows.update(staging.rows)
    state["archives"].update(staging.fresh)
    ordered = sorted(rows.values(), key=lambda r: (r["datetime"], r["id"]))
    by_collection: dict[str, list[dict[str, Any]]] = {}
    for r in ordered:
        by_collection.setdefault(r["collection"], []).append(r)
    collection_files = []
    for cid, crow in by_collection.items():
        hrefs = [r["href"].split("/", 1)[1] for r in crow]
        _write_json(tmp / cid / "collection.json", collection_dict(cid, crow, hrefs))
        collection_files.append(f"{cid}/collection.json")
    _write_json(tmp / "catalog.json", catalog_dict(sorted(by_collection)))
    fresh_ids = set(staging.rows)
    write_index(((tmp if r["id"] in fresh_ids else folder) / r["href"] for r in ordered), tmp / INDEX_NAME, scratch=tmp)

    item_files = sorted([e["href"] for e in staging.fresh.values()]
                        + [e["thumbnail"] for e in staging.fresh.values() if e.get("thumbnail")])
    files = {e["href"] for e in state["archives"].values()} | set(collection_files) \
        | {e["thumbnail"] for e in state["archives"].values() if e.get("thumbnail")} \
        | {"catalog.json", INDEX_NAME, STATE_NAME}
    foreign = sorted(f for f in files - owned if (folder / f).exists() and f not in ("catalog.json", INDEX_NAME))
    if foreign:
        raise InputError(f"catalog target {folder} holds {foreign[0]}"
                         + (f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else "")
                         + f" that imalys-stac did not write (not in its {STATE_NAME}); the catalog never "
                         "replaces files it did not write: move it away or choose another target folder")
    state["files"] = sorted(files)
    state["archives"] = _relative_keys(state["archives"], folder)
    state["skipped"] = _relative_keys(state["skipped"], folder)
    _write_json(tmp / STATE_NAME, state)
    plan = {
        "staging": tmp.name,
        # new items are invisible until their collection lists them; the state goes last
        "moves": item_files + sorted(collection_files) + [INDEX_NAME, "catalog.json", STATE_NAME],
        "delete": sorted(owned - files - {LOCK_NAME}),
    }
    journal = folder / JOURNAL_NAME
    part = folder / f".{JOURNAL_NAME}.tmp-{os.getpid()}"
    _write_json(part, plan)
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, journal)  # the commit point
    _apply(folder, tmp, plan)
    journal.unlink(missing_ok=True)
    return ordered
