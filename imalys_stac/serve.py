"""`imalys-stac serve [DIR]`: show a catalog in STAC Browser, read it with pystac-client and GDAL.

Serves an archive catalog, a working directory or a results folder as static files over HTTP,
with CORS headers (STAC Browser runs in another origin) and HTTP Range requests (GDAL
``/vsicurl/`` reads COGs by byte range). An archive member is a plain file below the archive's
URL: ``…/LC08_…_T1.tar/LC08_…_SR_B4.TIF`` is the byte range of that member in the tar (a tar
member is stored contiguously), ``…/S2A_….zip/S2A_….SAFE/…/B02_10m.jp2`` the stored or inflated
zip member. That is the same relative form the catalog's items use (see ``stac/hrefs.py``), so
every asset href of a served item is fetchable.

The URL tree mirrors the file system below the deepest folder that holds DIR and everything its
documents point at (archives beside the catalog, the archive catalog a working directory imported
from); only those folders are served. Absolute local paths and ``/vsitar/`` hrefs in a served
document (working-directory products point at the archive items they were computed from) are
rewritten to their URLs on the way out; files are never changed.

``--api`` also starts a STAC API (``rustac serve``, in-memory backend) over the same items,
with asset hrefs pointing at this server.
"""
from __future__ import annotations

import json
import logging
import mimetypes
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Iterable
from urllib.parse import quote, unquote, urlsplit

from .stac.catalog import STATE_NAME
from .stac.hrefs import is_archive_name, local_path, split_vsi

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


class ServeError(Exception):
    """A folder that cannot be served (the message says why)."""


# ------------------------------------------------------------------------------- what is served
def _catalog_root_of(item_file: Path) -> Path | None:
    """The folder of the catalog.json an item file belongs to (up to three levels up)."""
    for parent in list(item_file.parents)[:3]:
        if (parent / "catalog.json").is_file():
            return parent
    return None


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
    if "://" in href:
        return None
    vsi = split_vsi(href)
    if vsi is not None:
        return Path(vsi[1])
    if href.startswith("/vsi"):
        return None
    path = Path(local_path(href, doc_dir))
    for parent in [path, *path.parents]:
        if is_archive_name(parent.name) and parent.is_file():
            return parent
    return path


def _documents(folder: Path) -> Iterable[Path]:
    """The JSON documents of a working directory or results folder (not of an archive catalog)."""
    yield from folder.glob("*.json")
    yield from folder.glob("*/*.json")


def served_folders(folder: Path) -> list[Path]:
    """``folder`` and every folder its documents point into, followed through the catalogs they
    reach (an archive catalog's archives come from its state file, its items are not read)."""
    seen: list[Path] = []
    queue = [folder.resolve()]
    while queue:
        d = queue.pop()
        if any(d == s or s in d.parents for s in seen):
            continue
        seen.append(d)
        state = d / STATE_NAME
        if state.is_file():
            try:
                keys = list(json.loads(state.read_text(encoding="utf-8")).get("archives", {}))
            except ValueError:
                keys = []
            for parent in sorted({Path(os.path.normpath(d / k)).parent for k in keys}):
                queue.append(parent)
            continue
        for doc_path in _documents(d):
            try:
                doc = json.loads(doc_path.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                continue
            for href in _hrefs(doc):
                t = _target(href, doc_path.parent)
                if t is None or not t.exists():
                    continue
                if t.suffix.lower() == ".json":
                    root = _catalog_root_of(t)
                    queue.append(root if root is not None else t.parent)
                else:
                    queue.append(t.parent)
    # keep the outermost folders only
    return sorted(s for s in seen if not any(o != s and o in s.parents for o in seen))


def common_root(folders: list[Path]) -> Path:
    return Path(os.path.commonpath([str(f) for f in folders]))


# ------------------------------------------------------------------------------- archive members
@dataclass(frozen=True)
class Member:
    archive: Path
    name: str
    size: int
    offset: int | None  # byte offset of the data in the archive file; None: must be inflated


@lru_cache(maxsize=64)
def _members(archive: Path, mtime_ns: int) -> dict[str, Member]:
    """The regular-file members of an archive, with where their bytes are (cached per mtime)."""
    out: dict[str, Member] = {}
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as z, open(archive, "rb") as fh:
            for info in z.infolist():
                if info.is_dir():
                    continue
                offset = None
                if info.compress_type == zipfile.ZIP_STORED:
                    fh.seek(info.header_offset)
                    header = fh.read(30)
                    name_len = int.from_bytes(header[26:28], "little")
                    extra_len = int.from_bytes(header[28:30], "little")
                    offset = info.header_offset + 30 + name_len + extra_len
                out[info.filename] = Member(archive, info.filename, info.file_size, offset)
        return out
    compressed = not archive.name.lower().endswith(".tar")
    with tarfile.open(archive, "r:*") as tar:
        for info in tar:
            if info.isfile():
                out[info.name] = Member(archive, info.name, info.size, None if compressed else info.offset_data)
    return out


def archive_member(archive: Path, name: str) -> Member | None:
    try:
        return _members(archive, archive.stat().st_mtime_ns).get(name)
    except (OSError, tarfile.TarError, zipfile.BadZipFile):
        return None


def _read_member(m: Member, start: int, length: int) -> Iterable[bytes]:
    """``length`` bytes of a member from ``start``, in chunks."""
    if m.offset is not None:
        with open(m.archive, "rb") as fh:
            fh.seek(m.offset + start)
            yield from _chunks(fh, length)
        return
    if m.archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(m.archive) as z, z.open(m.name) as fh:
            _skip(fh, start)
            yield from _chunks(fh, length)
        return
    with tarfile.open(m.archive, "r:*") as tar:
        fh = tar.extractfile(m.name)
        assert fh is not None
        _skip(fh, start)
        yield from _chunks(fh, length)


def _skip(fh: BinaryIO, n: int) -> None:
    while n > 0:
        got = fh.read(min(CHUNK, n))
        if not got:
            break
        n -= len(got)


def _chunks(fh: BinaryIO, length: int) -> Iterable[bytes]:
    while length > 0:
        data = fh.read(min(CHUNK, length))
        if not data:
            break
        length -= len(data)
        yield data


def _file_chunks(path: Path, start: int, length: int) -> Iterable[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        yield from _chunks(fh, length)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive) of a single byte range; None: whole file; "bad": unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # multiple or malformed ranges: the whole file (allowed by RFC 9110)
    if not m.group(1):
        n = int(m.group(2))
        if n == 0:
            return "bad"
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


# ------------------------------------------------------------------------------- the HTTP server
class Site:
    """What one ``serve`` run shows: the URL tree below ``root``, limited to ``folders``."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ServeError(f"{folder} is not a folder; accepted: an archive catalog, a working directory "
                             "or a results folder")
        self.folder = folder
        self.folders = served_folders(folder)
        self.real_folders = [Path(os.path.realpath(f)) for f in self.folders]
        self.root = common_root(self.folders)
        # where the served folders really are: a symlink inside them may not lead elsewhere
        self.real_folders = [f.resolve() for f in self.folders]
        self.virtual_catalog = not (folder / "catalog.json").is_file()
        if self.virtual_catalog and not self._result_items():
            raise ServeError(f"{folder} holds no catalog.json and no STAC item: nothing to serve; accepted: an "
                             "archive catalog, a working directory or a results folder")

    # paths and URLs
    def url_path(self, path: Path) -> str:
        rel = Path(os.path.relpath(path, self.root)).as_posix()
        return "/" + quote(rel, safe="/") if rel != "." else "/"

    @property
    def catalog_path(self) -> str:
        return self.url_path(self.folder / "catalog.json")

    def allowed(self, path: Path) -> bool:
        """Whether ``path`` is inside a served folder, also once its symlinks are followed."""
        if not any(path == f or f in path.parents for f in self.folders):
            return False
        real = Path(os.path.realpath(path))
        return any(real == f or f in real.parents for f in self.real_folders)

    def _result_items(self) -> list[Path]:
        out = []
        for p in sorted(self.folder.glob("*.json")):
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
            + [{"rel": "item", "href": f"./{quote(p.name)}", "type": "application/geo+json", "title": p.stem}
               for p in self._result_items()],
        }

    def rewrite(self, doc: Any, doc_dir: Path) -> Any:
        """Absolute local paths and GDAL paths in a document → their URL paths on this server."""
        def fix(href: str) -> str:
            if "://" in href or not href.startswith("/"):
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
        """('file', Path) / ('member', Member) / ('json', bytes) for a URL path, or None (404)."""
        parts = [p for p in unquote(urlsplit(url_path).path).split("/") if p not in ("", ".")]
        if ".." in parts or (parts and parts[-1].startswith(".")):
            return None  # no way up, and no hidden files (locks, state files of the catalog)
        path = self.root.joinpath(*parts) if parts else self.root
        if not self.allowed(path):
            return None
        if path.exists():
            real = path.resolve()
            if not any(real == f or f in real.parents for f in self.real_folders):
                return None  # a symlink out of the served folders
        if path == self.folder / "catalog.json" and self.virtual_catalog:
            return "json", json.dumps(self.results_catalog(), indent=1).encode()
        if path.is_file():
            if path.suffix.lower() in (".json", ".geojson"):
                try:
                    doc = json.loads(path.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError):
                    return "file", path
                fixed = self.rewrite(doc, path.parent)
                if fixed != doc:
                    return "json", json.dumps(fixed, indent=1).encode()
            return "file", path
        for i in range(len(parts) - 1, 0, -1):
            archive = self.root.joinpath(*parts[:i])
            if is_archive_name(archive.name) and archive.is_file():
                m = archive_member(archive, "/".join(parts[i:]))
                return ("member", m) if m is not None else None
        if path.is_dir() and (path / "catalog.json").is_file():
            return "redirect", self.url_path(path / "catalog.json")
        return None


class Handler(BaseHTTPRequestHandler):
    server_version = "imalys-stac-serve"
    protocol_version = "HTTP/1.1"
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
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _error(self, status: HTTPStatus, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _serve(self, body: bool) -> None:
        try:
            found = self.site.resolve(self.path)
        except OSError:
            found = None
        if found is None:
            return self._error(HTTPStatus.NOT_FOUND, f"not found: {self.path}\n")
        kind, what = found
        if kind == "redirect":
            self.send_response(HTTPStatus.FOUND)
            self._cors()
            self.send_header("Location", what)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "json":
            size, name = len(what), "x.json"
            reader = lambda s, n: iter([what[s:s + n]])  # noqa: E731
        elif kind == "file":
            size, name = what.stat().st_size, what.name
            reader = lambda s, n: _file_chunks(what, s, n)  # noqa: E731
        else:
            size, name = what.size, what.name
            reader = lambda s, n: _read_member(what, s, n)  # noqa: E731
        rng = parse_range(self.headers.get("Range"), size)
        if rng == "bad":
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self._cors()
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = rng if rng else (0, size - 1)
        length = max(0, end - start + 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if rng else HTTPStatus.OK)
        self._cors()
        ext = posixpath.splitext(name.lower())[1]
        self.send_header("Content-Type", MEDIA.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if body and length:
            try:
                for chunk in reader(start, length):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass


def make_server(folder: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> tuple[ThreadingHTTPServer, Site]:
    site = Site(folder)
    handler = type("SiteHandler", (Handler,), {"site": site})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
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
        d = it.to_dict(include_self_link=False, transform_hrefs=False) if hasattr(it, "to_dict") else it
        base = Path(it.get_self_href()).parent if hasattr(it, "get_self_href") else site.folder

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


def start_api(site: Site, static_url: str, host: str, port: int, workdir: Path) -> subprocess.Popen:
    files = api_documents(site, static_url, workdir)
    cmd = [rustac_exe(), "serve", *[str(f) for f in files], "--create-collections", "-a", f"{host}:{port}"]
    if host in ("0.0.0.0", "::", ""):
        # listen everywhere, but name the server (its links) as the printed URLs do
        cmd[-1] = f"127.0.0.1:{port}"
        cmd += ["-b", f"{host or '0.0.0.0'}:{port}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


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
    try:
        cat = url + site.catalog_path
        print(f"serving {site.folder} (URL root {site.root}) at {url}", flush=True)
        print(f"catalog:      {cat}", flush=True)
        print(f"STAC Browser: {STAC_BROWSER}{cat.split('://', 1)[1]}", flush=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        if api:
            _sweep_api_dirs()
            tmp = Path(tempfile.mkdtemp(prefix=f"{API_PREFIX}{os.getpid()}-"))
            a_port = api_port or (httpd.server_address[1] + 1)
            proc = start_api(site, url, host, a_port, tmp)
            api_url = f"{base_url(httpd, host).rsplit(':', 1)[0]}:{a_port}"
            wait_for(api_url, proc)
            print(f"STAC API:     {api_url}  (pystac_client.Client.open({api_url!r}))", flush=True)
        if ready is not None:
            ready.set()
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.shutdown()
        httpd.server_close()
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
