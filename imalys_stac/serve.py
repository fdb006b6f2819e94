"""`imalys-stac serve [DIR]`: show a catalog in STAC Browser, read it with pystac-client and GDAL.

Serves an archive catalog, a working directory or a results folder as static files over HTTP,
with CORS headers (STAC Browser runs in another origin) and HTTP Range requests (GDAL
``/vsicurl/`` reads COGs by byte range). An archive member is a plain file below the archive's
URL: ``…/LC08_…_T1.tar/LC08_…_SR_B4.TIF`` is the byte range of that member in the tar (a tar
member is stored contiguously), ``…/S2A_….zip/S2A_….SAFE/…/B02_10m.jp2`` the stored or inflated
zip member. That is the same relative form the catalog's items use (see ``stac/hrefs.py``), so
every asset href of a served item is fetchable.

What is served is a closed set (see ``served_set``): the folder named on the command line, plus
what imalys-stac's *own* documents in it reference and that is itself imalys-stac's own: an
archive catalog written by ``catalog`` (with the archives its state file lists, file by file), a
working directory made by a chain (our marker and catalog id). Foreign STAC documents are served
as files but their links are never followed, and no folder is served because it holds a served
one. Below a served folder every path segment is checked: no hidden name, no symlink that leads
out, no NUL, no encoded separator or step up (400). The URL tree mirrors the file system below the
common parent of the set; that parent itself is not served (``/`` is a page linking the catalog).
Absolute local paths and ``/vsitar/`` hrefs in a served document (working-directory products
point at the archive items they were computed from) are rewritten to their URLs on the way out;
files are never changed. A file is opened once per request and what was opened is streamed, so a
chain renaming a new product over it gives the reader the old or the new file, whole.

``--api`` also starts a STAC API (``rustac serve``, in-memory backend) over the same items, with
asset hrefs pointing at this server, behind a front on the API's port (``serve_api``) that makes
GET searches page and refuses the parameters the backend would ignore.
"""
from __future__ import annotations

import html
import io
import json
import logging
import mimetypes
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, BinaryIO
from urllib.parse import quote, unquote_to_bytes, urlsplit

from .errors import ImalysError
from .product_records import KIND, PROVENANCE
from .stac.catalog import STATE_NAME
from .stac.hrefs import is_archive_name, local_path, split_vsi
from .workdir import MARKER, has_workdir_catalog

log = logging.getLogger("imalys_stac.serve")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
STAC_BROWSER = "https://radiantearth.github.io/stac-browser/#/external/"
CHUNK = 1 << 20
MEDIA = {
    ".json": "application/json", ".geojson": "application/geo+json", ".tif": "image/tiff", ".tiff": "image/tiff",
    ".jp2": "image/jp2", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".xml": "application/xml", ".txt": "text/plain; charset=utf-8", ".parquet": "application/vnd.apache.parquet",
    ".safe": "application/xml", ".vrt": "application/xml", ".csv": "text/csv",
}


class ServeError(ImalysError):
    """A folder that cannot be served (the message says why)."""


class BadRequest(ImalysError):
    """A request the server refuses with 400 (the message says why)."""


# ------------------------------------------------------------------------------- what is served
# The served set is closed: the folder the user named, plus what imalys-stac's own documents in
# it reference and that is itself imalys-stac's own (an archive catalog it wrote, a working
# directory it made, the archives such a catalog lists). A foreign STAC document's links are
# never followed, and no folder is served because it merely holds a served one.
@dataclass(frozen=True)
class Root:
    """One member of the served set: a folder (served below, hidden names excepted) or a single
    archive file (served with its members)."""

    path: Path  # as documents and URLs name it
    real: Path  # where it really is: nothing below a folder root may lead elsewhere
    is_file: bool = False


def _catalog_root_of(item_file: Path) -> Path | None:
    """The folder of the catalog.json an item file belongs to (up to three levels up)."""
    for parent in list(item_file.parents)[:3]:
        if (parent / "catalog.json").is_file():
            return parent
    return None


def is_own_archive_catalog(folder: Path) -> bool:
    """An archive catalog written by `catalog`: its state file sits beside catalog.json."""
    return (folder / "catalog.json").is_file() and (folder / STATE_NAME).is_file()


def is_own_working_directory(folder: Path) -> bool:
    """A working directory made by a chain: our marker and our catalog id."""
    return (folder / MARKER).is_file() and has_workdir_catalog(folder)


def _hrefs(doc: Any) -> Iterable[str]:
    """Every link and asset href of a STAC document (features of a FeatureCollection included)."""
    if not isinstance(doc, dict):
        return
    for link in doc.get("links") or []:
        if isinstance(link, dict) and isinstance(link.get("href"), str):
            yield link["href"]
    for asset in (doc.get("assets") or {}).values():
        if isinstance(asset, dict) and isinstance(asset.get("href"), str):
            yield asset["href"]
    for f in doc.get("features") or []:
        yield from _hrefs(f)


def _target(href: str, doc_dir: Path) -> Path | None:
    """The local file an href points at (the archive for members), or None for URLs."""
    if "://" in href or "\0" in href:
        return None
    vsi = split_vsi(href)
    if vsi is not None:
        return Path(os.path.normpath(vsi[1]))
    if href.startswith("/vsi"):
        return None
    path = Path(local_path(href, doc_dir))
    for parent in [path, *path.parents]:
        if is_archive_name(parent.name) and parent.is_file():
            return parent
    return path


def _own_documents(folder: Path) -> Iterable[tuple[Path, Any]]:
    """The documents imalys-stac wrote in a folder: product items of a working directory and
    exported items (they carry our properties), and the sources.json beside a product item."""
    for doc_path in sorted([*folder.glob("*.json"), *folder.glob("*/*.json")]):
        if any(part.startswith(".") for part in doc_path.relative_to(folder).parts):
            continue
        try:
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
        if not isinstance(doc, dict):
            continue
        props = doc.get("properties")
        if doc.get("type") == "Feature" and isinstance(props, dict) and (KIND in props or PROVENANCE in props):
            yield doc_path, doc
        elif doc.get("type") == "FeatureCollection" and doc_path.name == "sources.json":
            item = doc_path.parent / f"{doc_path.parent.name}.json"
            try:
                props = json.loads(item.read_text(encoding="utf-8")).get("properties") or {}
            except (ValueError, OSError, AttributeError):
                continue
            if KIND in props:
                yield doc_path, doc


def _archives_of(catalog: Path) -> list[Path]:
    """The archive files an archive catalog lists in its state file (those that exist)."""
    try:
        keys = list(json.loads((catalog / STATE_NAME).read_text(encoding="utf-8")).get("archives", {}))
    except (OSError, ValueError, AttributeError):
        return []
    out = []
    for k in keys:
        p = Path(os.path.normpath(catalog / k)) if isinstance(k, str) and "\0" not in k else None
        if p is not None and is_archive_name(p.name) and p.is_file():
            out.append(p)
    return out


def served_set(folder: Path) -> list[Root]:
    """The closed set served for ``folder`` (see the comment above :class:`Root`)."""
    folder = folder.resolve()
    roots: dict[Path, Root] = {}
    queue = [folder]
    seen: set[Path] = set()
    while queue:
        d = queue.pop()
        if d in seen:
            continue
        seen.add(d)
        roots[d] = Root(d, d.resolve())
        if is_own_archive_catalog(d):
            for archive in _archives_of(d):
                roots.setdefault(archive, Root(archive, archive.resolve(), is_file=True))
            continue
        for doc_path, doc in _own_documents(d):
            for href in _hrefs(doc):
                t = _target(href, doc_path.parent)
                if t is None:
                    continue
                if is_archive_name(t.name) and t.is_file():
                    roots.setdefault(t, Root(t, t.resolve(), is_file=True))
                elif t.suffix.lower() == ".json" and t.is_file():
                    cat = _catalog_root_of(t)
                    if cat is not None and (is_own_archive_catalog(cat) or is_own_working_directory(cat)):
                        queue.append(cat)
    # a root inside a folder root is served by it already
    folders = [r for r in roots.values() if not r.is_file]
    return sorted((r for r in roots.values()
                   if not any(f.path != r.path and f.path in r.path.parents for f in folders)),
                  key=lambda r: str(r.path))


def common_root(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p) for p in paths]))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# ------------------------------------------------------------------------------- opened files
@dataclass
class Opened:
    """A file opened once: its length is that of what was opened, and what is streamed is what
    was opened, even if a chain renames a new file over the name meanwhile."""

    fd: int
    size: int
    name: str

    def chunks(self, start: int, length: int) -> Iterator[bytes]:
        """``length`` bytes from ``start`` (pread: no shared file position). The descriptor is
        closed by whoever opened it (`close`), never here."""
        pos = start
        while length > 0:
            data = os.pread(self.fd, min(CHUNK, length), pos)
            if not data:
                break
            pos += len(data)
            length -= len(data)
            yield data

    def read_all(self) -> bytes:
        return b"".join(self.chunks(0, self.size))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _real_of(fd: int, path: Path) -> Path:
    """Where an open file really is (Linux tells it for the descriptor itself)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return Path(os.path.realpath(path))


def open_regular(path: Path) -> tuple[int, os.stat_result] | None:
    """Open a regular file once (never blocking on a FIFO or device): (fd, its stat) or None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


# ------------------------------------------------------------------------------- archive members
@dataclass(frozen=True)
class Member:
    name: str
    size: int
    offset: int | None  # byte offset of the data in the archive file; None: must be inflated


class _FdReader(io.RawIOBase):
    """A seekable file object over an open descriptor that reads with pread (threads share the fd)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size, self.pos = fd, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        data = os.pread(self.fd, len(b), self.pos)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


def _fileobj(fd: int, size: int) -> BinaryIO:
    return io.BufferedReader(_FdReader(fd, size), CHUNK)  # type: ignore[return-value]


_MEMBER_CACHE: dict[tuple[int, int, int, int], dict[str, Member]] = {}
_MEMBER_LOCK = threading.Lock()


def _members(fd: int, st: os.stat_result, zip_archive: bool, compressed: bool) -> dict[str, Member]:
    """The regular-file members of an open archive, with where their bytes are (cached per file
    identity and modification time)."""
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _MEMBER_LOCK:
        hit = _MEMBER_CACHE.get(key)
    if hit is not None:
        return hit
    out: dict[str, Member] = {}
    fh = _fileobj(fd, st.st_size)
    if zip_archive:
        with zipfile.ZipFile(fh) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                offset = None
                if info.compress_type == zipfile.ZIP_STORED:
                    header = os.pread(fd, 30, info.header_offset)
                    name_len = int.from_bytes(header[26:28], "little")
                    extra_len = int.from_bytes(header[28:30], "little")
                    offset = info.header_offset + 30 + name_len + extra_len
                out[info.filename] = Member(info.filename, info.file_size, offset)
    else:
        with tarfile.open(fileobj=fh, mode="r:*") as tar:
            for tinfo in tar:
                if tinfo.isfile():
                    out[tinfo.name] = Member(tinfo.name, tinfo.size, None if compressed else tinfo.offset_data)
    with _MEMBER_LOCK:
        if len(_MEMBER_CACHE) > 64:
            _MEMBER_CACHE.clear()
        _MEMBER_CACHE[key] = out
    return out


@dataclass
class OpenedMember(Opened):
    """An archive member of an archive opened once."""

    archive_name: str = ""
    member: Member | None = None

    def chunks(self, start: int, length: int) -> Iterator[bytes]:
        m = self.member
        assert m is not None
        if m.offset is not None:
            yield from Opened.chunks(self, m.offset + start, length)
            return
        fh = _fileobj(self.fd, os.fstat(self.fd).st_size)
        if self.archive_name.lower().endswith(".zip"):
            with zipfile.ZipFile(fh) as z, z.open(m.name) as src:
                yield from _skip_and_read(src, start, length)
        else:
            with tarfile.open(fileobj=fh, mode="r:*") as tar:
                member = tar.extractfile(m.name)
                if member is not None:
                    yield from _skip_and_read(member, start, length)


def _skip_and_read(fh: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    while start > 0:
        got = fh.read(min(CHUNK, start))
        if not got:
            return
        start -= len(got)
    while length > 0:
        data = fh.read(min(CHUNK, length))
        if not data:
            break
        length -= len(data)
        yield data


def open_member(fd: int, st: os.stat_result, archive: Path, name: str) -> OpenedMember | None:
    """A member of an open archive (the descriptor then belongs to the result), or None."""
    low = archive.name.lower()
    try:
        m = _members(fd, st, low.endswith(".zip"), not low.endswith(".tar")).get(name)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError):
        m = None
    if m is None:
        os.close(fd)
        return None
    return OpenedMember(fd, m.size, posixpath.basename(m.name), archive_name=archive.name, member=m)


# ------------------------------------------------------------------------------- byte ranges
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_MAX_DIGITS = 18  # below 2**63: any longer bound lies beyond any file


def _bound(digits: str) -> int:
    """A Range bound; a bound too long for any file is "past the end" (int() refuses 4300+ digits)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 1 << 63


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive) of a single byte range; None: the whole file; "bad": 416.

    A range of another unit, or several ranges, is ignored (the whole file, as RFC 9110 allows);
    a malformed ``bytes=`` range or one past the end is not satisfiable."""
    if not header:
        return None
    value = header.strip()
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    m = _RANGE.match("bytes=" + spec.strip().replace(" ", ""))
    if not m or (not m.group(1) and not m.group(2)):
        return "bad"
    if not m.group(1):
        n = _bound(m.group(2))
        if n == 0 or size == 0:
            return "bad"
        return max(0, size - n), size - 1
    start = _bound(m.group(1))
    end = _bound(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


# ------------------------------------------------------------------------------- the site
def _url_segments(url_path: str) -> list[str]:
    """The path segments of a request, each decoded on its own: a segment that decodes to a
    separator, a NUL or a step up is a bad request (encoded traversal), not a file name."""
    if "\0" in url_path or "\\" in url_path:
        raise BadRequest("the path holds a NUL byte or a backslash")
    if url_path.startswith("/"):
        path = url_path.split("?", 1)[0].split("#", 1)[0]
    elif url_path.lower().startswith(("http://", "https://")):
        path = urlsplit(url_path).path  # the absolute form a proxy may send
    else:
        raise BadRequest("the request target is not a path")
    parts: list[str] = []
    for seg in path.split("/"):
        if seg == "":
            continue
        raw = unquote_to_bytes(seg)
        if b"\0" in raw or b"/" in raw or b"\\" in raw:
            raise BadRequest("a path segment holds an encoded NUL, slash or backslash")
        name = os.fsdecode(raw)
        if name in (".", ".."):
            raise BadRequest("the path steps up or holds '.' segments")
        parts.append(name)
    return parts


class Site:
    """What one ``serve`` run shows: the URL tree below ``root``, limited to the served set."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ServeError(f"{folder} is not a folder; accepted: an archive catalog, a working directory "
                             "or a results folder")
        self.folder = folder
        self.roots = served_set(folder)
        self.root = common_root([r.path for r in self.roots])
        self.base_url = ""  # set once the server listens (links on the root page)
        self.api_url = ""
        self.virtual_catalog = not (folder / "catalog.json").is_file()
        if self.virtual_catalog and not self._result_items():
            raise ServeError(f"{folder} holds no catalog.json and no STAC item: nothing to serve; accepted: an "
                             "archive catalog, a working directory or a results folder")

    @property
    def folders(self) -> list[Path]:
        return [r.path for r in self.roots if not r.is_file]

    # paths and URLs
    def url_path(self, path: Path) -> str:
        rel = os.path.relpath(path, self.root)
        if rel == ".":
            return "/"
        return "/" + quote(os.fsencode(Path(rel).as_posix()), safe="/")

    @property
    def catalog_path(self) -> str:
        return self.url_path(self.folder / "catalog.json")

    def _root_of(self, path: Path) -> Root | None:
        best = None
        for r in self.roots:
            if (path == r.path if r.is_file else _inside(path, r.path)) or (r.is_file and r.path in path.parents):
                if best is None or len(r.path.parts) > len(best.path.parts):
                    best = r
        return best

    def allowed(self, path: Path) -> bool:
        """Whether ``path`` is in the served set: inside a folder root with no hidden name below
        it and not leading out through a symlink, or a served archive (or a member of one)."""
        path = Path(os.path.normpath(path))
        r = self._root_of(path)
        if r is None:
            return False
        if r.is_file:
            return True
        rel = path.relative_to(r.path).parts
        if any(p.startswith(".") for p in rel):
            return False
        real = Path(os.path.realpath(path))
        return _inside(real, r.real) and not any(p.startswith(".") for p in real.relative_to(r.real).parts)

    def _result_items(self) -> list[Path]:
        out = []
        for p in sorted(self.folder.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                continue
            if isinstance(d, dict) and d.get("type") == "Feature":
                out.append(p)
        return out

    def results_catalog(self) -> dict[str, Any]:
        """A catalog over the exported items of a results folder (it has no catalog.json)."""
        return {
            "type": "Catalog", "stac_version": "1.1.0", "id": "imalys-results",
            "title": f"imalys-stac results in {self.folder.name}",
            "description": "Files exported by imalys-stac chains, with their STAC items (served by imalys-stac serve).",
            "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"},
                      {"rel": "self", "href": "./catalog.json", "type": "application/json"}]
            + [{"rel": "item", "href": f"./{quote(os.fsencode(p.name))}", "type": "application/geo+json", "title": p.stem}
               for p in self._result_items()],
        }

    def rewrite(self, doc: Any, doc_dir: Path) -> Any:
        """Absolute local paths and GDAL paths in a document → their URL paths on this server."""
        def fix(href: str) -> str:
            if "://" in href or not href.startswith("/") or "\0" in href:
                return href
            vsi = split_vsi(href)
            if vsi is not None:
                path = Path(vsi[1])
                return self.url_path(path) + "/" + quote(vsi[2], safe="/") if self.allowed(path) else href
            if href.startswith("/vsi"):
                return href
            path = Path(href)
            return self.url_path(path) if self.allowed(path) else href

        def walk(d: Any) -> Any:
            if isinstance(d, dict):
                out = {}
                for k, v in d.items():
                    if k == "href" and isinstance(v, str):
                        out[k] = fix(v)
                    else:
                        out[k] = walk(v)
                return out
            if isinstance(d, list):
                return [walk(v) for v in d]
            return d

        return walk(doc)

    def resolve(self, url_path: str) -> tuple[str, Any] | None:
        """What a URL path answers, or None (404): ('json', bytes), ('file', Opened),
        ('member', OpenedMember), ('redirect', URL path) or ('index', None) for ``/``.
        Raises BadRequest for a path no file name can have."""
        parts = _url_segments(url_path)
        if not parts:
            return "index", None
        path = self.root.joinpath(*parts)
        r = self._root_of(path)
        if r is None:
            return None
        if path == self.folder / "catalog.json" and self.virtual_catalog:
            return "json", json.dumps(self.results_catalog(), indent=1).encode()
        if r.is_file:
            return self._member_of(r, path)
        rel = path.relative_to(r.path).parts
        if any(p.startswith(".") for p in rel):
            return None  # hidden names anywhere below: locks, state files, scratch folders, .git
        # an archive inside a folder root: the longest prefix that is a regular archive file
        for i in range(len(rel) - 1, 0, -1):
            prefix = r.path.joinpath(*rel[:i])
            if is_archive_name(prefix.name) and prefix.is_file():
                return self._member_of(Root(prefix, r.real / Path(*rel[:i]), is_file=True), path, within=r)
        if path.is_dir():
            real = Path(os.path.realpath(path))
            if self._real_ok(real, r) and (path / "catalog.json").is_file():
                return "redirect", self.url_path(path / "catalog.json")
            return None
        opened = open_regular(path)
        if opened is None:
            return None
        fd, st = opened
        if not self._real_ok(_real_of(fd, path), r):
            os.close(fd)
            return None  # a symlink out of the served folder, or to a hidden name in it
        f = Opened(fd, st.st_size, path.name)
        if path.suffix.lower() in (".json", ".geojson") and st.st_size <= MAX_REWRITE:
            try:
                data = f.read_all()
            finally:
                f.close()
            try:
                doc = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                return "json", data
            fixed = self.rewrite(doc, path.parent)
            return "json", (json.dumps(fixed, indent=1).encode() if fixed != doc else data)
        return "file", f

    @staticmethod
    def _real_ok(real: Path, r: Root) -> bool:
        return _inside(real, r.real) and not any(p.startswith(".") for p in real.relative_to(r.real).parts)

    def _member_of(self, archive_root: Root, path: Path, within: Root | None = None) -> tuple[str, Any] | None:
        archive = archive_root.path
        opened = open_regular(archive)
        if opened is None:
            return None
        fd, st = opened
        if within is not None and not self._real_ok(_real_of(fd, archive), within):
            os.close(fd)
            return None
        if path == archive:
            return "file", Opened(fd, st.st_size, archive.name)
        m = open_member(fd, st, archive, path.relative_to(archive).as_posix())
        return ("member", m) if m is not None else None

    def index_page(self, host: str | None) -> bytes:
        """The page at ``/``: where the catalog is, and the STAC Browser link that opens it."""
        base = self.base_url
        if host and _HOST.match(host) and base:
            base = f"http://{host}"
        cat = base + self.catalog_path
        rows = [("Catalog (STAC JSON)", cat), ("Open in STAC Browser", stac_browser_url(cat))]
        if self.api_url:
            rows.append(("STAC API (pystac-client)", self.api_url))
        links = "\n".join(f'<li>{html.escape(t)}: <a href="{html.escape(u, quote=True)}">{html.escape(u)}</a></li>'
                          for t, u in rows)
        return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>imalys-stac serve</title></head>\n"
                f"<body><h1>imalys-stac serve</h1>\n<p>Serving {html.escape(os.fsdecode(self.folder.name))}.</p>\n"
                f"<ul>\n{links}\n</ul></body></html>\n").encode("utf-8", "replace")


_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
MAX_REWRITE = 64 << 20  # JSON documents up to this size are read, rewritten and sent whole


def stac_browser_url(catalog_url: str) -> str:
    """The STAC Browser link that opens ``catalog_url``. STAC Browser reads ``#/external/<host>/…``
    as https; any other scheme is written as a first path segment ``http:`` (its own
    ``toBrowserPath`` form), so a local http server must be named with it."""
    scheme, rest = catalog_url.split("://", 1)
    return STAC_BROWSER + (rest if scheme == "https" else f"{scheme}:/{rest}")


# ------------------------------------------------------------------------------- the HTTP server
class Handler(BaseHTTPRequestHandler):
    server_version = "imalys-stac-serve"
    default_request_version = "HTTP/1.0"  # a two-word request line gets a status line too (no HTTP/0.9)
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection gives its thread back
    site: Site

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet unless asked
        log.debug("%s " + fmt, self.address_string(), *args)

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range, Content-Type, Accept")
        self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges, Content-Type")

    def do_OPTIONS(self) -> None:  # CORS preflight
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._guarded(body=False)

    def do_GET(self) -> None:
        self._guarded(body=True)

    def _error(self, status: HTTPStatus, text: str) -> None:
        data = text.encode("utf-8", "replace")
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _guarded(self, body: bool) -> None:
        """Every request gets an answer: 400 for a path no file can have, 404 for anything not
        served, 500 (logged) for a fault of this server, never a dropped connection."""
        try:
            found = self.site.resolve(self.path)
        except BadRequest as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"bad request: {exc}\n")
        except (OSError, ValueError, UnicodeError):
            found = None
        except Exception as exc:  # noqa: BLE001 - a bug must not drop the connection
            log.error("serve: internal error for %r: %s (run with debug logging for the traceback)", self.path, exc)
            log.debug("serve: internal error", exc_info=True)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        if found is None:
            return self._error(HTTPStatus.NOT_FOUND, "not found\n")
        try:
            self._answer(found, body)
        finally:
            what = found[1]
            if isinstance(what, Opened):
                what.close()

    def _answer(self, found: tuple[str, Any], body: bool) -> None:
        kind, what = found
        if kind == "redirect":
            self.send_response(HTTPStatus.FOUND)
            self._cors()
            self.send_header("Location", what)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "index":
            accept = (self.headers.get("Accept") or "").lower()
            if "json" in accept and "html" not in accept:  # a STAC client opening the server's root
                return self._answer(("redirect", self.site.catalog_path), body)
            what, kind = self.site.index_page(self.headers.get("Host")), "html"
        if kind in ("json", "html"):
            data: bytes = what
            size, name = len(data), "x.html" if kind == "html" else "x.json"
            reader = lambda s, n: iter([data[s:s + n]])  # noqa: E731
        else:
            size, name, reader = what.size, what.name, what.chunks
        rng = parse_range(self.headers.get("Range"), size)
        if rng == "bad":
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self._cors()
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = rng if isinstance(rng, tuple) else (0, size - 1)
        length = max(0, end - start + 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if rng else HTTPStatus.OK)
        self._cors()
        ext = posixpath.splitext(name.lower())[1]
        media = "text/html; charset=utf-8" if kind == "html" else MEDIA.get(ext) or mimetypes.guess_type(name)[0]
        self.send_header("Content-Type", media or "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not (body and length):
            return
        sent = 0
        try:
            for chunk in reader(start, length):
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if sent < length:
            # the file shrank under us (it cannot, once opened, unless written in place): the
            # length promised is not met, so the connection must end for the client to notice
            self.close_connection = True


class Server(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog that holds a burst of hundreds of connects
    (the default of 5 left them to TCP retries, seconds each)."""

    request_queue_size = 1024
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that vanished mid-answer is not news; anything else is logged, not printed
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        log.debug("serve: error answering %s", client_address, exc_info=True)


def make_server(folder: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> tuple[Server, Site]:
    site = Site(folder)
    handler = type("SiteHandler", (Handler,), {"site": site})
    httpd = Server((host, port), handler)
    site.base_url = base_url(httpd, host)
    return httpd, site


def base_url(httpd: ThreadingHTTPServer, host: str) -> str:
    shown = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{shown}:{httpd.server_address[1]}"


# ------------------------------------------------------------------------------- STAC API
def rustac_exe() -> str:
    exe = Path(sys.executable).with_name("rustac")
    found = str(exe) if exe.exists() else shutil.which("rustac")
    if not found:
        raise ServeError("--api needs rustac (pip install 'rustac>=0.9,<0.10'): its `rustac serve` is the STAC API server")
    return found


def api_documents(site: Site, static_url: str, out: Path) -> list[Path]:
    """Collections and items of the served folder, as files for ``rustac serve``: items with
    absolute asset URLs on the static server (an API's item URL is no base for relative hrefs)."""
    from .stac.search import open_items

    items = open_items(site.folder) if not site.virtual_catalog else [
        _read(p) for p in site._result_items()]
    collections: dict[str, dict[str, Any]] = {}
    features = []
    for it in items:
        d: dict[str, Any] = it.to_dict(include_self_link=False, transform_hrefs=False)
        self_href = it.get_self_href()
        base = Path(self_href).parent if self_href else site.folder

        def url(href: str, base=base) -> str:  # bound now: called within this iteration only
            if "://" in href:
                return href
            vsi = split_vsi(href)
            if vsi is not None:
                return static_url + site.url_path(Path(vsi[1])) + "/" + quote(vsi[2], safe="/")
            return static_url + site.url_path(Path(local_path(href, base)))

        d["assets"] = {k: dict(a, href=url(a["href"])) for k, a in d.get("assets", {}).items()}
        d["links"] = [dict(l, href=url(l["href"])) for l in d.get("links", [])
                      if l.get("rel") not in ("root", "parent", "collection", "self")]
        cid = d.get("collection") or "imalys-products"
        d["collection"] = cid
        features.append(d)
        if cid not in collections:
            collections[cid] = _collection_for(site, cid, base)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for cid, c in collections.items():
        f = out / f"collection-{cid}.json"
        f.write_text(json.dumps(c))
        files.append(f)
    f = out / "items.json"
    f.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    files.append(f)
    return files


def _read(p: Path) -> Any:
    from .stac.search import read_item

    return read_item(p)


def _collection_for(site: Site, cid: str, item_dir: Path) -> dict[str, Any]:
    for cand in (site.folder / cid / "collection.json", item_dir.parent / "collection.json"):
        if cand.is_file():
            c = json.loads(cand.read_text(encoding="utf-8"))
            c["links"] = [l for l in c.get("links", []) if "://" in l.get("href", "")
                          and l.get("rel") not in ("root", "parent", "self", "item", "child")]
            return c
    return {"type": "Collection", "stac_version": "1.1.0", "id": cid,
            "description": f"{cid} served by imalys-stac", "license": "other", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}}


API_PREFIX = "imalys-stac-api-"


def _sweep_api_dirs() -> None:
    """Remove the API documents of `serve` runs that were killed (their pid is gone)."""
    for d in Path(tempfile.gettempdir()).glob(f"{API_PREFIX}*-*"):
        pid = d.name[len(API_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(site: Site, static_url: str, public_url: str, backend_port: int, workdir: Path) -> subprocess.Popen:
    """``rustac serve`` on a loopback port of its own, naming ``public_url`` (the front) in its links."""
    files = api_documents(site, static_url, workdir)
    cmd = [rustac_exe(), "serve", *[str(f) for f in files], "--create-collections", "-a", public_url,
           "-b", f"127.0.0.1:{backend_port}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def make_api_front(host: str, port: int, public_url: str, backend_port: int) -> Server:
    """The API's port (see ``serve_api``): GET searches that page, refused parameters that the
    backend would ignore."""
    from .serve_api import ApiFront

    handler = type("Front", (ApiFront,), {"backend": ("127.0.0.1", backend_port), "public": public_url})
    return Server((host, port), handler)


def _die_with_parent() -> None:
    """In the API server's process: ask Linux to stop it when `serve` dies, even by SIGKILL."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stopped by `serve`'s own clean-up


def wait_for(url: str, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise ServeError(f"the STAC API server exited: {out.strip()[-500:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise ServeError(f"the STAC API server did not answer at {url} within {timeout:.0f} s")


# ------------------------------------------------------------------------------- command line
def run(folder: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api: bool = False,
        api_port: int | None = None, ready: threading.Event | None = None) -> int:
    """Serve until interrupted; print the URLs to paste into STAC Browser."""
    import signal

    def stop(signum, frame):  # SIGTERM (docker stop, Kubernetes) ends like Ctrl-C
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    httpd, site = make_server(folder, host, port)
    url = base_url(httpd, host)
    proc = None
    tmp = None
    front: Server | None = None
    front_running = False
    try:
        cat = url + site.catalog_path
        print(f"serving {site.folder} (URL root {site.root}) at {url}", flush=True)
        print(f"catalog:      {cat}", flush=True)
        print(f"STAC Browser: {stac_browser_url(cat)}", flush=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        if api:
            _sweep_api_dirs()
            tmp = Path(tempfile.mkdtemp(prefix=f"{API_PREFIX}{os.getpid()}-"))
            a_port = api_port if api_port is not None else httpd.server_address[1] + 1
            front = make_api_front(host, a_port, "http://0.0.0.0:0", 0)  # bound first: a busy port fails here
            api_url = f"{url.rsplit(':', 1)[0]}:{front.server_address[1]}"
            backend_port = _free_loopback_port()
            proc = start_api(site, url, api_url, backend_port, tmp)
            front.RequestHandlerClass.backend = ("127.0.0.1", backend_port)  # type: ignore[attr-defined]
            front.RequestHandlerClass.public = api_url  # type: ignore[attr-defined]
            wait_for(f"http://127.0.0.1:{backend_port}", proc)
            threading.Thread(target=front.serve_forever, daemon=True).start()
            front_running = True
            site.api_url = api_url
            print(f"STAC API:     {api_url}  (pystac_client.Client.open({api_url!r}))", flush=True)
        if ready is not None:
            ready.set()
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.shutdown()
        httpd.server_close()
        if front is not None:
            if front_running:
                front.shutdown()
            front.server_close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(args: Any) -> int:
    """The `serve` subcommand (argparse namespace: dir, host, port, api, api_port)."""
    try:
        return run(args.dir, args.host, args.port, args.api, args.api_port)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
